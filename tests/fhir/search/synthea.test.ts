// Realistic queries over Synthea bundles, checked against answers computed independently here
// by walking the bundle JSON.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Bundle, Encounter, MedicationRequest, Observation, Patient, Resource } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDb, ids, run, type TestDb } from './helpers.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const corpus = path.resolve(repoRoot, '..', 'shared', 'corpus', 'synthea-r4', 'smart-on-fhir');

const FILES = ['Agustin_Fonseca_cb5696d9-a0de-4f49-94f9-433f96a28eb0.json', 'Alberto_Atencio_fc712d1f-5a2e-4407-9c55-a2a2bad623c2.json'];

/** urn:uuid:X references -> Type/X, ids = X. */
function loadBundle(file: string): Resource[] {
  const bundle = JSON.parse(readFileSync(path.join(corpus, file), 'utf8')) as Bundle;
  const typeOf = new Map<string, string>();
  for (const e of bundle.entry ?? []) typeOf.set(e.fullUrl as string, (e.resource as Resource).resourceType);
  const text = JSON.stringify(bundle).replace(/"reference":"(urn:uuid:[0-9a-f-]+)"/g, (m, urn: string) =>
    typeOf.has(urn) ? `"reference":"${typeOf.get(urn)}/${urn.slice(9)}"` : m,
  );
  const rewritten = JSON.parse(text) as Bundle;
  const out = (rewritten.entry ?? []).map((e) => ({ ...(e.resource as Resource), id: (e.fullUrl as string).replace('urn:uuid:', '') }));
  // These Synthea bundles carry medications inline (medicationCodeableConcept); to exercise
  // _include=MedicationRequest:medication, every other MedicationRequest gets its medication as
  // a Medication resource and a medicationReference instead.
  const meds = new Map<string, Resource>();
  out.forEach((r, i) => {
    if (r.resourceType !== 'MedicationRequest' || i % 2) return;
    const mr = r as MedicationRequest;
    const code = mr.medicationCodeableConcept?.coding?.[0]?.code;
    if (!code) return;
    const id = `med-${code}`;
    meds.set(id, { resourceType: 'Medication', id, code: mr.medicationCodeableConcept } as Resource);
    delete mr.medicationCodeableConcept;
    mr.medicationReference = { reference: `Medication/${id}` };
  });
  return [...out, ...meds.values()];
}

let t: TestDb;
let all: Resource[] = [];
const of = <T extends Resource>(type: string) => all.filter((r) => r.resourceType === type) as T[];

beforeAll(async () => {
  t = await freshDb();
  for (const f of FILES) all.push(...loadBundle(f));
  const failures: string[] = [];
  for (const r of all) {
    try {
      await t.repo.update(r);
    } catch (e) {
      failures.push(`${r.resourceType}/${r.id}: ${(e as Error).message}`);
    }
  }
  // Keep only what was stored (the validator may refuse some old Synthea content).
    const bad = new Set(failures.map((f) => f.split(':')[0]));
  all = all.filter((r) => !bad.has(`${r.resourceType}/${r.id}`));
  expect(all.length).toBeGreaterThan(100);
}, 120_000);

afterAll(async () => {
  await t?.drop();
});

const sorted = (a: string[]) => [...a].sort();
const refId = (ref?: string) => ref?.split('/')[1];

describe('Synthea queries', () => {
  // 8867-4 (heart rate) is the example; these bundles have none, so the same query shape
  // also runs with codes they do have (body weight, body height).
  it.each(['8867-4', '29463-7', '8302-2'])('Observation?patient=X&code=loinc|%s&date=ge2015&_sort=-date', async (loinc) => {
    let found = 0;
    for (const p of of<Patient>('Patient')) {
      const expected = of<Observation>('Observation')
        .filter((o) => refId(o.subject?.reference) === p.id)
        .filter((o) => o.code?.coding?.some((c) => c.system === 'http://loinc.org' && c.code === loinc))
        .filter((o) => o.effectiveDateTime && Date.parse(o.effectiveDateTime) >= Date.UTC(2015, 0, 1));
      found += expected.length;
      const b = await run(t.db, `Observation?patient=${p.id}&code=http://loinc.org|${loinc}&date=ge2015&_sort=-date&_count=1000`);
      expect(sorted(ids(b))).toEqual(sorted(expected.map((o) => o.id as string)));
      const times = (b.entry ?? []).map((e) => Date.parse((e.resource as unknown as Observation).effectiveDateTime as string));
      expect(times).toEqual([...times].sort((a, c) => c - a));
    }
    if (loinc !== '8867-4') expect(found).toBeGreaterThan(0);
  });

  it('Encounter?subject.name=<family>', async () => {
    for (const p of of<Patient>('Patient')) {
      const family = p.name?.[0]?.family as string;
      const patients = new Set(
        of<Patient>('Patient')
          .filter((x) => x.name?.some((n) => [n.family, ...(n.given ?? [])].some((s) => s?.toLowerCase().startsWith(family.toLowerCase()))))
          .map((x) => x.id),
      );
      const expected = of<Encounter>('Encounter').filter((e) => patients.has(refId(e.subject?.reference)));
      expect(expected.length).toBeGreaterThan(0);
      const b = await run(t.db, `Encounter?subject.name=${encodeURIComponent(family)}&_count=1000`);
      expect(sorted(ids(b))).toEqual(sorted(expected.map((e) => e.id as string)));
      expect(b.total).toBe(expected.length);
    }
  });

  it('Patient?_has:Observation:patient:code=...', async () => {
    const codes = new Set(of<Observation>('Observation').flatMap((o) => (o.code?.coding ?? []).map((c) => `${c.system}|${c.code}`)));
    let checked = 0;
    for (const code of [...codes].slice(0, 15)) {
      const [system, value] = code.split('|');
      const expected = new Set(
        of<Observation>('Observation')
          .filter((o) => o.code?.coding?.some((c) => c.system === system && c.code === value))
          .map((o) => refId(o.subject?.reference)),
      );
      const b = await run(t.db, `Patient?_has:Observation:patient:code=${encodeURIComponent(code)}`);
      expect(sorted(ids(b))).toEqual(sorted([...expected] as string[]));
      checked++;
    }
    expect(checked).toBeGreaterThan(5);
  });

  it('MedicationRequest?_include=MedicationRequest:medication', async () => {
    const mrs = of<MedicationRequest>('MedicationRequest');
    const b = await run(t.db, 'MedicationRequest?_include=MedicationRequest:medication&_count=1000');
    expect(sorted(ids(b))).toEqual(sorted(mrs.map((m) => m.id as string)));
    const meds = new Set(mrs.map((m) => refId(m.medicationReference?.reference)).filter(Boolean));
    expect(meds.size).toBeGreaterThan(0);
    expect(sorted(ids(b, 'include'))).toEqual(sorted([...meds] as string[]));
  });

  it('paging walks every page of a large result exactly once', async () => {
    const expected = of<Observation>('Observation').map((o) => o.id as string);
    const seen: string[] = [];
    let b = await run(t.db, 'Observation?_count=50&_sort=-date,code');
    for (;;) {
      seen.push(...ids(b));
      const next = b.link?.find((l) => l.relation === 'next');
      if (!next) break;
      b = await run(t.db, next.url.replace(/^.*?\/fhir\//, ''));
    }
    expect(seen.length).toBe(expected.length);
    expect(sorted(seen)).toEqual(sorted(expected));
  });
});
