// Searches without _sort whose matches come from one index driver are paged in that index's
// order, the first page read straight off the index instead of gathering and sorting every match:
// - "Observation?code=system|code&date=..." from the token + date pair rows of one exact coding
//   (index-rows.ts INDEX_PAIRS), which hold each resource at most once, so they are also counted
//   without DISTINCT: in date order;
// - a string prefix ("Patient?name=smit", nothing else): in the order of the matched value, each
//   resource once, under the smallest of its values that match.
// These tests check what a client sees of that: the right ids and totals, every match exactly
// once across the pages (forwards and backwards, and while matches are added and deleted between
// pages), the order, and the same answers where the rows are not unique (a coding repeated under
// another system, a patient matching by two names) or a total or another condition is asked for.
import type { Observation, Patient, Resource } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { FhirError } from '../../../server/fhir/outcome.ts';
import { INDEX_PAIRS, fewValues, findPair, singleValued } from '../../../server/fhir/search/index-rows.ts';
import { loadedDb, ids, run, searchSql, type BundleJson } from './helpers.ts';

const LOINC = 'http://loinc.org';
const GLUCOSE = `${LOINC}|2339-0`;
const N = 47;

/** Day k of 2024 (k from 0), at a time that differs per k so no two share an instant. */
const dayOf = (k: number) => new Date(Date.UTC(2024, 0, 1 + k, k % 24, k % 60)).toISOString();

function glucose(id: string, when: string | { start: string; end: string }, extra: Partial<Observation> = {}): Observation {
  return {
    resourceType: 'Observation',
    id,
    status: 'final',
    code: { coding: [{ system: LOINC, code: '2339-0' }] },
    subject: { reference: 'Patient/p1' },
    ...(typeof when === 'string' ? { effectiveDateTime: when } : { effectivePeriod: when }),
    ...extra,
  };
}

// Days shuffled so that id order and date order differ.
const days = Array.from({ length: N }, (_, i) => (i * 17) % N);
// Patients for the string order. Matching "smit", smallest value first: s7 "smit"; s1, s2, s4
// "smith" (s4's given name Smitty matches too, but later); s3 "smithers"; s5 "smitty" (given
// name; its full name "smitty jones" comes after). s6 (Smyth) does not match.
const person = (id: string, family: string, given: string, gender: Patient['gender'] = 'female'): Patient => ({ resourceType: 'Patient', id, gender, name: [{ family, given: [given] }] });
const people: Patient[] = [
  person('s1', 'Smith', 'Anna'),
  person('s2', 'Smith', 'Bob', 'male'),
  person('s3', 'Smithers', 'Carl', 'male'),
  person('s4', 'Smith', 'Smitty'),
  person('s5', 'Jones', 'Smitty', 'male'),
  person('s6', 'Smyth', 'Dora'),
  person('s7', 'Smit', 'Eve'),
];
const SMIT_ORDER = ['s7', 's1', 's2', 's4', 's3', 's5'];

const fixtures: Resource[] = [
  { resourceType: 'Patient', id: 'p1' },
  ...people,
  ...days.map((d, i) => glucose(`g${String(i).padStart(2, '0')}`, dayOf(d * 3))),
  // a Period: its high end (the end of 2024-02-16) decides where "ge" scans it
  glucose('gp', { start: '2023-12-01', end: '2024-02-16' }),
  // the same code under a second system: one resource, two codings with code 2339-0
  glucose('g2', dayOf(200), { code: { coding: [{ system: LOINC, code: '2339-0' }, { system: 'urn:lab:local', code: '2339-0' }] } }),
  // another code, and a glucose without a date: never matches a date condition
  { ...glucose('hb', dayOf(10)), code: { coding: [{ system: LOINC, code: '718-7' }] } },
  { resourceType: 'Observation', id: 'nodate', status: 'final', code: { coding: [{ system: LOINC, code: '2339-0' }] } },
];

/** The high end of an Observation's date (what a "ge" search scans and orders by), comparable as text. */
const highOf = (o: Observation): string => o.effectiveDateTime ?? (o.effectivePeriod?.end ? `${o.effectivePeriod.end}T23:59:59.999Z` : '');
type Entry = NonNullable<BundleJson['entry']>[number];
const high = (e: Entry): string => highOf(e.resource as unknown as Observation);

/** What a date-ge search on glucose must find, worked out from the fixtures. */
function expectedGe(from: string): Observation[] {
  return fixtures
    .filter((r): r is Observation => r.resourceType === 'Observation' && r.code?.coding?.[0].code === '2339-0')
    .filter((o) => highOf(o) >= from);
}
const idsGe = (from: string): string[] => expectedGe(from).map((o) => o.id as string);

const t = loadedDb(fixtures);

/** The search URL of a link, as the query the helper runs. */
const query = (url: string) => url.slice(url.indexOf('/fhir/') + '/fhir/'.length);
const link = (b: BundleJson, rel: string) => b.link?.find((l) => l.relation === rel)?.url;

async function walkForward(q: string): Promise<{ seen: string[]; pages: BundleJson[] }> {
  return walkFrom(await run(t.db, q));
}

/** Follows the next links from a first page already read. */
async function walkFrom(first: BundleJson): Promise<{ seen: string[]; pages: BundleJson[] }> {
  const pages: BundleJson[] = [];
  const seen: string[] = [];
  let b: BundleJson | undefined = first;
  while (b) {
    pages.push(b);
    seen.push(...ids(b));
    expect(pages.length).toBeLessThan(50);
    const next = link(b, 'next');
    b = next ? await run(t.db, query(next)) : undefined;
  }
  return { seen, pages };
}

describe('pair rows of one exact coding', () => {
  it('are declared one per coding for every pair (their other parameter is single-valued)', () => {
    for (const [type, pairs] of Object.entries(INDEX_PAIRS)) {
      for (const [token, other] of pairs) expect(findPair(type, token, other)?.onePerCoding, `${type} ${token}+${other}`).toBe(true);
    }
    expect(singleValued('Observation', 'date')).toBe(true);
    expect(singleValued('Condition', 'onset-date')).toBe(true); // two ofType() of one choice element
    expect(singleValued('Patient', 'general-practitioner')).toBe(false); // repeats
    expect(singleValued('Observation', 'code')).toBe(false); // a token: one row per coding
    expect(singleValued('Encounter', 'participant')).toBe(false);
  });

  it('are counted and paged without DISTINCT, first page in date order off the index', async () => {
    const { sql, bundle: b } = await searchSql(t.db, `Observation?code=${GLUCOSE}&date=ge2024-03-01&_total=accurate&_count=5`);
    expect(sql).toHaveLength(1);
    expect(sql[0]).not.toContain('DISTINCT');
    expect(sql[0]).not.toContain('MATERIALIZED');
    expect(b.total).toBe(idsGe('2024-03-01').length);
    const dates = (b.entry ?? []).map(high);
    expect(dates).toEqual([...dates].sort());
  });

  it.each([
    ['ge2024-03-01', '2024-03-01'],
    ['ge2024-02-10', '2024-02-10'], // takes in the Period ending 2024-02-16
    ['ge2025-01-01', '2025-01-01'], // none
  ])('date=%s: every match once over the pages, in date order, with the total on each page', async (prefixed, from) => {
    const expected = idsGe(from);
    const { seen, pages } = await walkForward(`Observation?code=${GLUCOSE}&date=${prefixed}&_total=accurate&_count=7`);
    expect([...seen].sort()).toEqual([...expected].sort());
    expect(new Set(seen).size).toBe(seen.length);
    for (const p of pages) expect(p.total).toBe(expected.length);
    const dates = pages.flatMap((p) => (p.entry ?? []).map(high));
    expect(dates).toEqual([...dates].sort());
  });

  it('walks back with previous links to the first page', async () => {
    const { pages } = await walkForward(`Observation?code=${GLUCOSE}&date=ge2024-01-15&_count=6`);
    expect(pages.length).toBeGreaterThan(3);
    let b: BundleJson = pages[pages.length - 1];
    const back: string[][] = [ids(b)];
    for (let i = pages.length - 2; i >= 0; i--) {
      b = await run(t.db, query(link(b, 'previous') as string));
      back.unshift(ids(b));
    }
    expect(link(b, 'previous')).toBeUndefined();
    expect(back).toEqual(pages.map((p) => ids(p)));
  });

  it('stays right while matches are added and deleted between pages', async () => {
    const q = `Observation?code=${GLUCOSE}&date=ge2024-02-01&_count=8`;
    const first = await run(t.db, q);
    const page1 = ids(first);
    // Later than everything on page 1: must show up on a later page. Earlier: must not (it
    // belongs before the cursor). A match not seen yet and deleted: must never show up.
    await t.repo.update(glucose('late', '2024-12-30T12:00:00Z'));
    await t.repo.update(glucose('early', '2024-02-02T00:00:00Z'));
    const gone = idsGe('2024-02-01').filter((id) => !page1.includes(id)).pop() as string;
    await t.repo.delete('Observation', gone);
    const { seen } = await walkFrom(first);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toContain('late');
    expect(seen).not.toContain('early');
    expect(seen).not.toContain(gone);
    expect(seen).toHaveLength(idsGe('2024-02-01').length); // every original match but the deleted one, plus 'late'
    await t.repo.delete('Observation', 'late');
    await t.repo.delete('Observation', 'early');
    await t.repo.update(fixtures.find((r) => r.id === gone) as Resource);
  });

  it('count a coding that repeats under another system once, with or without the system', async () => {
    // g2 has 2339-0 under LOINC and under urn:lab:local
    for (const code of [GLUCOSE, '2339-0', 'urn:lab:local|2339-0']) {
      const q = `Observation?code=${code}&date=ge2024-07-01&_total=accurate`;
      const b = await run(t.db, q);
      const expected = code.startsWith('urn:') ? ['g2'] : idsGe('2024-07-01');
      expect([...ids(b)].sort(), q).toEqual([...expected].sort());
      expect(b.total, q).toBe(expected.length);
    }
    const both = await run(t.db, `Observation?code=${GLUCOSE},urn:lab:local|2339-0&date=ge2024-07-01&_total=accurate`);
    expect(both.total).toBe(idsGe('2024-07-01').length);
    expect(new Set(ids(both)).size).toBe(ids(both).length);
  });

  it('refuse a cursor of another search with a 400 naming _cursor', async () => {
    // Without a date the same code is paged by id: its cursor has no date keys.
    const byId = await run(t.db, `Observation?code=${GLUCOSE}&_count=5`);
    const cursor = new URL(link(byId, 'next') as string).searchParams.get('_cursor') as string;
    const err = await run(t.db, `Observation?code=${GLUCOSE}&date=ge2024-03-01&_count=5&_cursor=${cursor}`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FhirError);
    expect((err as FhirError).status).toBe(400);
    expect(JSON.stringify((err as FhirError).outcome)).toContain('_cursor');
  });

  it('keep _sort when one is given', async () => {
    const b = await run(t.db, `Observation?code=${GLUCOSE}&date=ge2024-03-01&_sort=-date&_count=5`);
    const dates = (b.entry ?? []).map(high);
    expect(dates).toEqual([...dates].sort().reverse());
    expect(dates[0]).toBe(expectedGe('2024-03-01').map(highOf).sort().pop());
  });
});

describe('string prefix without _sort', () => {
  it('reads its first page off the prefix index: no DISTINCT, byte order of the value', async () => {
    const { sql } = await searchSql(t.db, 'Patient?name=smit&_count=3');
    expect(sql[0]).toContain('~<~');
    expect(sql[0]).not.toContain('DISTINCT');
  });

  it('lists each match once, under its smallest matching value, over every page and back', async () => {
    const { seen, pages } = await walkForward('Patient?name=smit&_count=2');
    expect(seen).toEqual(SMIT_ORDER);
    expect(pages).toHaveLength(3);
    let b = pages[2];
    const back = [ids(b)];
    for (let i = 1; i >= 0; i--) {
      b = await run(t.db, query(link(b, 'previous') as string));
      back.unshift(ids(b));
    }
    expect(back).toEqual(pages.map((p) => ids(p)));
    expect(link(b, 'previous')).toBeUndefined();
  });

  it('stays right while matches are added between pages', async () => {
    const first = await run(t.db, 'Patient?name=smit&_count=2'); // s7, s1: the cursor is at ("smith", s1)
    await t.repo.update(person('s0', 'Smit', 'Zoe')); // ("smit", s0): before the cursor
    await t.repo.update(person('s9', 'Smitz', 'Zed')); // ("smitz", s9): after everything
    await t.repo.delete('Patient', 's3');
    const { seen } = await walkFrom(first);
    expect(seen).toEqual(['s7', 's1', 's2', 's4', 's5', 's9']);
    await t.repo.delete('Patient', 's0');
    await t.repo.delete('Patient', 's9');
    await t.repo.update(people.find((p) => p.id === 's3') as Resource);
  });

  it('with a token of few values (gender) beside it, is still driven by the name rows', async () => {
    expect(fewValues('Patient', 'gender')).toBe(true);
    expect(fewValues('Patient', 'identifier')).toBe(false);
    expect(fewValues('Observation', 'code')).toBe(false);
    // Every woman would be a candidate if gender drove; the name prefix is far narrower.
    const { sql, bundle } = await searchSql(t.db, 'Patient?gender=female&name=smit');
    expect(sql[0]).toMatch(/DISTINCT d\.id FROM \(SELECT \w+\.resource_id AS id FROM idx_string/);
    expect(ids(bundle)).toEqual(['s1', 's4', 's7']);
  });

  it('keeps the id order where a total or another condition is asked for, with the same matches', async () => {
    const total = await run(t.db, 'Patient?name=smit&_total=accurate&_count=100');
    expect(ids(total)).toEqual([...SMIT_ORDER].sort());
    expect(total.total).toBe(SMIT_ORDER.length);
    const women = await run(t.db, 'Patient?name=smit&gender=female');
    expect(ids(women)).toEqual(['s1', 's4', 's7']);
    const two = await run(t.db, 'Patient?name=smith,jones');
    expect(ids(two)).toEqual(['s1', 's2', 's3', 's4', 's5']);
  });
});
