// _summary and _elements: return a subset of each resource (R4 search.html#summary,
// #elements), marked SUBSETTED as the spec requires. Used by read, vread and search.
import type { Resource } from '@medplum/fhirtypes';
import { mandatoryElementsOf, summaryElementsOf } from './definitions.ts';
import { badRequest } from './outcome.ts';

export type SummaryMode = 'true' | 'false' | 'text' | 'data' | 'count';

const SUBSETTED = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' };
const ALWAYS = ['resourceType', 'id', 'meta'];

export function parseSummary(value: string | undefined): SummaryMode | undefined {
  if (value === undefined) return undefined;
  if (['true', 'false', 'text', 'data', 'count'].includes(value)) return value as SummaryMode;
  throw badRequest(`_summary must be one of true, false, text, data, count; got "${value}"`, ['_summary']);
}

/** Element-name matcher for a top-level key of a resource, with choice types (value[x]). */
function keyMatches(names: Set<string>, key: string): boolean {
  if (names.has(key)) return true;
  // valueQuantity matches "value" (the choice element)
  for (const n of names) if (key.startsWith(n) && /^[A-Z]/.test(key.slice(n.length))) return true;
  return false;
}

function markSubsetted(r: Record<string, unknown>): void {
  const meta = { ...((r.meta as Record<string, unknown>) ?? {}) };
  const tags = Array.isArray(meta.tag) ? [...meta.tag] : [];
  if (!tags.some((t) => t.code === SUBSETTED.code && t.system === SUBSETTED.system)) tags.push(SUBSETTED);
  meta.tag = tags;
  r.meta = meta;
}

/** Applies _summary / _elements; returns the resource unchanged when neither applies. */
export function subsetResource(resource: Resource, summary?: SummaryMode, elements?: string[]): Resource {
  if ((!summary || summary === 'false') && !elements?.length) return resource;
  const src = resource as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  let keep: (key: string) => boolean;
  if (summary === 'text') {
    const mandatory = mandatoryElementsOf(resource.resourceType);
    keep = (k) => ALWAYS.includes(k) || k === 'text' || keyMatches(mandatory, k);
  } else if (summary === 'data') {
    keep = (k) => k !== 'text';
  } else if (summary === 'true' || summary === 'count') {
    const names = summaryElementsOf(resource.resourceType);
    keep = (k) => ALWAYS.includes(k) || keyMatches(names, k);
  } else {
    const wanted = new Set((elements ?? []).map((e) => e.trim().replace(/^[A-Z][A-Za-z]+\./, '')).filter(Boolean));
    const mandatory = mandatoryElementsOf(resource.resourceType);
    keep = (k) => ALWAYS.includes(k) || keyMatches(wanted, k) || keyMatches(mandatory, k);
  }
  for (const [k, v] of Object.entries(src)) if (keep(k)) out[k] = v;
  markSubsetted(out);
  return out as unknown as Resource;
}

/** subsetResource on stored JSON text: parses only when _summary / _elements apply. */
export function subsetJson(json: string, summary?: SummaryMode, elements?: string[]): string {
  if ((!summary || summary === 'false' || summary === 'count') && !elements?.length) return json;
  return JSON.stringify(subsetResource(JSON.parse(json) as Resource, summary === 'count' ? undefined : summary, elements));
}
