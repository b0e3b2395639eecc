// Table-driven tests of _text / _content (full-text search), _list, and the pair rows that
// answer "code=X&date=..." and "_has:Observation:patient:code=X" from one index (index-rows.ts
// INDEX_PAIRS): every date prefix, several codings, systems, OR-ed codes, a second date
// condition, modifiers that must not use the pairs, deleted sources and targets, and pair rows
// kept right through updates, deletes and reindexing.
// Expected id sets are worked out by hand (comments give the reasoning).
import type { Resource } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FhirError } from '../../../server/fhir/outcome.ts';
import { reindex } from '../../../server/fhir/search/reindex.ts';
import { search } from '../../../server/fhir/search/search.ts';
import { FHIR_BASE, OPTIONS, freshDb, ids, parseQuery, run, searchSql, type TestDb } from './helpers.ts';

const LOINC = 'http://loinc.org';
const SCT = 'http://snomed.info/sct';
const div = (html: string) => ({ status: 'generated' as const, div: `<div xmlns="http://www.w3.org/1999/xhtml">${html}</div>` });
const vital = [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }];
const hr = { coding: [{ system: LOINC, code: '8867-4', display: 'Heart rate' }] };

const fixtures: Resource[] = [
  { resourceType: 'Patient', id: 'pa', text: div('Maria <b>Garcia</b>, allergic to penicillin'), name: [{ family: 'Garcia', given: ['Maria'] }] },
  { resourceType: 'Patient', id: 'pb', text: div('Mario Garcia-Lopez, diabetic'), name: [{ family: 'Garcia-Lopez', given: ['Mario'] }] },
  { resourceType: 'Patient', id: 'pc', name: [{ family: 'Ng' }], address: [{ city: 'Penicillin Springs' }] },
  {
    resourceType: 'Observation',
    id: 'q1',
    status: 'final',
    category: vital,
    code: { coding: [...hr.coding, { system: 'urn:other', code: 'HR' }] },
    subject: { reference: 'Patient/pa' },
    effectiveDateTime: '2024-03-10T10:00:00Z',
    note: [{ text: 'Patient anxious' }],
  },
  { resourceType: 'Observation', id: 'q2', status: 'final', category: vital, code: hr, subject: { reference: 'Patient/pb' }, effectivePeriod: { start: '2024-02-28', end: '2024-03-02' } },
  { resourceType: 'Observation', id: 'q3', status: 'final', code: { coding: [{ system: LOINC, code: '8480-6' }] }, subject: { reference: 'Patient/pa' }, effectiveDateTime: '2024-03-15' },
  { resourceType: 'Observation', id: 'q4', status: 'final', code: hr, subject: { reference: 'Patient/pb' }, effectiveDateTime: '2023-12-31' },
  { resourceType: 'Observation', id: 'q5', status: 'final', code: hr, subject: { reference: 'Patient/pa' } },
  { resourceType: 'Observation', id: 'q6', status: 'final', code: { text: 'Heart rate' }, effectiveDateTime: '2024-03-10' },
  { resourceType: 'Patient', id: 'pd', name: [{ family: 'Dee' }] },
  { resourceType: 'Observation', id: 'q7', status: 'final', code: { text: 'Pulse' }, subject: { reference: 'Patient/pd' } }, // no coding
  { resourceType: 'Encounter', id: 'e1', status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP' }, period: { start: '2024-01-01', end: '2024-01-05' } },
  { resourceType: 'Encounter', id: 'e2', status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' }, period: { start: '2024-01-03T09:00:00Z', end: '2024-01-03T10:00:00Z' } },
  { resourceType: 'Condition', id: 'c1', subject: { reference: 'Patient/pa' }, code: { coding: [{ system: SCT, code: '44054006' }] }, onsetDateTime: '2019-05-01' },
  { resourceType: 'Condition', id: 'c2', subject: { reference: 'Patient/pb' }, code: { coding: [{ system: SCT, code: '44054006' }] }, onsetDateTime: '2022-05-01' },
  { resourceType: 'Patient', id: 'gone', name: [{ family: 'Gone' }] },
  { resourceType: 'Condition', id: 'c3', subject: { reference: 'Patient/gone' }, code: { coding: [{ system: SCT, code: '44054006' }] } },
  { resourceType: 'Observation', id: 'qg', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient/gone' } },
  { resourceType: 'List', id: 'l1', status: 'current', mode: 'working', entry: [{ item: { reference: 'Patient/pa' } }, { item: { reference: 'Patient/pc' } }, { item: { reference: 'Observation/q1' } }] },
  { resourceType: 'List', id: 'l2', status: 'current', mode: 'working', entry: [{ item: { reference: 'Patient/pb' } }, { item: { reference: 'Patient/gone' } }] },
];

let t: TestDb;

beforeAll(async () => {
  t = await freshDb();
  for (const r of fixtures) await t.repo.update(r);
  await t.repo.delete('Patient', 'gone');
});

afterAll(async () => {
  await t?.drop();
});

const sorted = (a: string[]) => [...a].sort();

async function expectIds(q: string, expected: string[]): Promise<void> {
  const b = await run(t.db, `${q}${q.includes('?') ? '&' : '?'}_total=accurate`);
  expect(sorted(ids(b)), q).toEqual(sorted(expected));
  expect(b.total, q).toBe(expected.length);
  expect(b.entry?.some((e) => e.search.mode === 'outcome') ?? false, q).toBe(false);
}

// q1 2024-03-10T10:00Z, q2 2024-02-28..2024-03-02, q3 2024-03-15 (8480-6), q4 2023-12-31, q5 no
// date, q6 2024-03-10 with only a code text (no coding).
const pairs: [string, string[]][] = [
  [`Observation?code=${LOINC}|8867-4&date=ge2024-03-01`, ['q1', 'q2']], // q2 ends after 03-01: ge overlaps
  ['Observation?code=8867-4&date=2024-03', ['q1']], // q2 starts in February: not inside March
  ['Observation?code=8867-4&date=lt2024-03-01', ['q2', 'q4']],
  ['Observation?code=8867-4&date=le2023-12-31', ['q4']],
  ['Observation?code=8867-4&date=gt2024-03-02', ['q1']],
  ['Observation?code=8867-4&date=sa2024-03-05', ['q1']],
  ['Observation?code=8867-4&date=eb2024-03-05', ['q2', 'q4']],
  ['Observation?code=8867-4&date=ne2024-03-10', ['q2', 'q4']], // q5 has no date at all
  ['Observation?date=ge2024-03-12&code=8867-4,8480-6', ['q3']], // order of the parameters does not matter
  [`Observation?code=${LOINC}|8867-4,${LOINC}|8480-6&date=ge2024-03-12`, ['q3']], // two system|code values: by the text columns
  ['Observation?code=HR&date=2024-03-10', ['q1']], // the second coding, no system given
  ['Observation?code=urn:other|&date=2024', ['q1']], // system only
  ['Observation?code=|HR&date=2024', []], // HR has a system
  ['Observation?code=8867-4&date=2024-03-10&date=ge2024', ['q1']], // a second date condition stays a filter
  ['Observation?code=8867-4&date=ge2024&date=lt2024-03', ['q2']],
  ['Observation?code:not=8867-4&date=2024-03', ['q3', 'q6']], // :not does not use the pairs
  ['Observation?code:text=heart&date=2024-03-10', ['q1', 'q6']], // nor :text
  ['Observation?code=8867-4&date:missing=true', ['q5']],
  ['Observation?category=vital-signs&date=2024', ['q1', 'q2']],
  ['Observation?patient=pa&code=8867-4&date=ge2024', ['q1']], // the (code, subject) pair drives, the date filters
  // token + reference pairs ("code+subject"; patient = the subject when it is a Patient)
  ['Observation?patient=pa&code=8867-4', ['q1', 'q5']],
  ['Observation?subject=Patient/pb&code=http://loinc.org|8867-4', ['q2', 'q4']],
  ['Observation?subject:Patient=pb&code=8480-6', []],
  ['Patient?_has:Observation:patient:code=8867-4', ['pa', 'pb']],
  ['Patient?_has:Observation:subject:code=http://loinc.org|8480-6', ['pa']],
  ['Patient?_has:Observation:patient:code=8867-4&_has:Observation:patient:code=8480-6', ['pa']],
  ['Patient?_has:Observation:patient:code:not=8867-4', ['pa', 'pd']], // q3, q7; a negation does not use the pairs
  ['Patient?_has:Observation:patient:code:missing=false', ['pa', 'pb', 'pd']], // q7's code is only a text: no pair rows
  ['Observation?code:missing=false&patient=pd', ['q7']],
  ['Patient?_has:Observation:patient:code=8867-4&name=mario', ['pb']],
  [`Patient?_has:Condition:patient:code=${SCT}|44054006`, ['pa', 'pb']], // not the deleted Patient/gone
  [`Observation?subject._has:Condition:subject:code=${SCT}|44054006`, ['q1', 'q2', 'q3', 'q4', 'q5']], // nor qg, whose subject is gone
  ['Observation?code=8867-4&date=2024-03&_sort=-date', ['q1']],
  ['Encounter?class=IMP&date=2024-01', ['e1']],
  ['Encounter?class=AMB&date=ge2024-01-02', ['e2']],
  ['Encounter?class=IMP,AMB&date=2024-01-03', ['e2']], // e1's period is not inside one day
  [`Condition?code=${SCT}|44054006&onset-date=le2020`, ['c1']],
];

const text: [string, string[]][] = [
  ['Patient?_text=penicillin', ['pa']],
  ['Patient?_text=PENICILLIN', ['pa']], // case-insensitive
  ['Patient?_text=garcia', ['pa', 'pb']], // inside markup, and a part of a hyphenated word
  ['Patient?_text="maria garcia"', ['pa']], // a phrase
  ['Patient?_text="garcia maria"', []],
  ['Patient?_text=garcia -penicillin', ['pb']],
  ['Patient?_text=penicillin or diabetic', ['pa', 'pb']],
  ['Patient?_text=penicillin,diabetic', ['pa', 'pb']], // comma = OR as for every parameter
  ['Patient?_text=penicill', []], // whole words
  ['Patient?_text=xhtml', []], // markup is not text
  ['Patient?_text=springs', []], // not in any narrative
  ['Patient?_content=springs', ['pc']], // but in the resource
  ['Patient?_content=penicillin', ['pa', 'pc']], // narrative and address both count
  ['Observation?_content=anxious', ['q1']],
  ['Observation?_content=anxious&code=8867-4&date=2024', ['q1']],
  ['Observation?subject._text=diabetic', ['q2', 'q4']],
  ['Patient?_has:Observation:subject:_content=anxious', ['pa']],
  ['Patient?_text=garcia&name=maria', ['pa']],
];

const lists: [string, string[]][] = [
  ['Patient?_list=l1', ['pa', 'pc']],
  ['Patient?_list=List/l1,l2', ['pa', 'pb', 'pc']],
  ['Patient?_list=l2', ['pb']], // Patient/gone was deleted
  ['Observation?_list=l1', ['q1']],
  ['Patient?_list=l1&name=garcia', ['pa']],
  ['Patient?_list=l1&_text=penicillin', ['pa']],
  ['Patient?_list=nosuch', []],
  ['Observation?subject._list=l2', ['q2', 'q4']], // not qg: its subject (in l2) was deleted
];

// _filter runs after the pair tests above changed q4's date to 2024-03-20 and deleted q3 and c1.
const filters: [string, string[]][] = [
  ['Patient?_filter=name co "arc"', ['pa', 'pb']],
  ['Patient?_filter=given eq "maria"', ['pa']],
  ['Patient?_filter=given eq "MARÍA"', ['pa']], // case- and accent-insensitive like the other string searches
  ['Patient?_filter=family ew "lopez"', ['pb']],
  ['Patient?_filter=family sw "gar" and given eq mario', ['pb']],
  ['Patient?_filter=given eq maria or family eq ng', ['pa', 'pc']],
  ['Patient?_filter=not (family sw gar)', ['pc', 'pd']],
  ['Patient?_filter=(given eq maria or given eq mario) and not (family eq garcia)', ['pb']],
  ['Patient?_filter=family eq "garcia,lopez"', []], // the comma is literal, not an OR
  ['Patient?_filter=_id eq pa or _id eq pc', ['pa', 'pc']],
  ['Patient?_filter=family pr false', []],
  ['Observation?_filter=date eq 2024-03-10', ['q1', 'q6']],
  [`Observation?_filter=code eq ${LOINC}|8867-4 and date ge 2024-03-05`, ['q1', 'q4']],
  ['Observation?_filter=subject.name co "ari"', ['q1', 'q2', 'q4', 'q5']],
  ['Observation?_filter=subject pr false', ['q6']],
  ['Observation?_filter=code ne 8867-4 and subject pr true', ['q7', 'qg']],
  ['Encounter?_filter=class eq IMP or date ge 2024-01-04', ['e1']],
  ['Patient?_filter=given eq maria&_list=l1', ['pa']],
];

describe('token + date pairs', () => {
  it.each(pairs)('%s', expectIds);

  it('answers from the pair rows (one index scan, no separate token and date lookups)', async () => {
    const pairs = (await searchSql(t.db, 'Observation?code=8867-4&date=ge2024&_total=accurate')).sql;
    expect(pairs[0]).toContain('FROM idx_composite y');
    expect(pairs[0]).not.toContain('idx_date');
    // One code: by the rows' key (migration 011), the one column the key + date index starts with.
    expect(pairs[0]).toContain('y.key1 = hashtextextended(');
    expect(pairs[0]).not.toContain('y.code1');
    const has = (await searchSql(t.db, 'Patient?_has:Observation:patient:code=8867-4')).sql;
    expect(has[0]).toContain('FROM idx_composite');
    expect(has[0]).not.toContain('idx_token');
  });

  it('counts a code + date range index-only on the key + date index', async () => {
    const text = 'Observation?code=http%3A%2F%2Floinc.org%7C8867-4&date=ge2024&_total=accurate';
    const sent: { text: string; values: unknown[] }[] = [];
    await search({ query: (q, v) => (sent.push(typeof q === 'string' ? { text: q, values: v ?? [] } : { text: q.text, values: q.values ?? [] }), t.db.query(q, v)) }, parseQuery(text), OPTIONS);
    // A handful of rows: without this, a sequential scan is as cheap and the plan would say nothing.
    const plan = await t.db.transaction(async (c) => {
      await c.query('SET LOCAL enable_seqscan = off');
      await c.query('SET LOCAL enable_bitmapscan = off');
      const res = await c.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sent[0].text}`, sent[0].values);
      return res.rows.map((r) => r['QUERY PLAN']).join('\n');
    });
    expect(plan).toMatch(/Index Only Scan using idx_composite_key_high/);
    expect(plan).toMatch(/Index Cond: \(\(key1 = '-?\d+'::bigint\) AND \(dhigh2 >= /);
  });

  it('keeps the pair rows right through updates, deletes and reindexing', async () => {
    const q4 = fixtures.find((r) => r.id === 'q4') as Resource & { effectiveDateTime?: string };
    await t.repo.update({ ...q4, effectiveDateTime: '2024-03-20' } as Resource);
    await expectIds(`Observation?code=${LOINC}|8867-4&date=ge2024-03-01`, ['q1', 'q2', 'q4']);
    await expectIds('Observation?code=8867-4&date=2023-12-31', []);
    // Condition has no composite parameter of its own: its pair rows must still be replaced
    await t.repo.update({ ...fixtures.find((r) => r.id === 'c2'), onsetDateTime: '2018-01-01' } as Resource);
    await expectIds(`Condition?code=${SCT}|44054006&onset-date=le2020`, ['c1', 'c2']);
    await expectIds(`Condition?code=${SCT}|44054006&onset-date=2022`, []);
    await t.repo.delete('Condition', 'c1');
    await expectIds(`Condition?code=${SCT}|44054006&onset-date=le2020`, ['c2']);
    await expectIds(`Patient?_has:Condition:patient:code=${SCT}|44054006`, ['pb']);
    await t.repo.delete('Observation', 'q3');
    await expectIds('Patient?_has:Observation:patient:code=8480-6', []);
    await t.db.query(`DELETE FROM idx_composite WHERE resource_type = 'Condition'`);
    await expectIds(`Condition?code=${SCT}|44054006&onset-date=le2020`, []);
    await reindex(t.db, { resourceType: 'Condition', baseUrl: FHIR_BASE });
    await expectIds(`Condition?code=${SCT}|44054006&onset-date=le2020`, ['c2']);
  });
});

describe('_text and _content', () => {
  it.each(text)('%s', expectIds);
});

describe('_list', () => {
  it.each(lists)('%s', expectIds);
});

describe('_filter', () => {
  it.each(filters)('%s', expectIds);
});

describe('refused with a 400 naming the parameter (strict)', () => {
  it.each([
    ['Patient?_text:exact=garcia', '_text:exact'],
    ['Patient?_list=$current-allergies', '_list'],
    ['Patient?_list=a/b', '_list'],
    [`Observation?code:below=${LOINC}|8867-4`, 'code:below'], // LOINC's hierarchy is not bundled
    [`Observation?code:above=${LOINC}|8867-4`, 'code:above'],
    ['Observation?code:below=8867-4', 'code:below'], // needs system|code
    ['Patient?_filter=name xx "a"', '_filter'],
    ['Patient?_filter=name eq "a', '_filter'],
    ['Patient?_filter=name eq a and', '_filter'],
    ['Patient?_filter=(name eq a', '_filter'],
    ['Patient?_filter=name re a', '_filter'],
    ['Patient?_filter=gender co ma', '_filter'],
    ['Patient?_filter=nonsense eq 1', '_filter'],
    ['Patient?name:x-eq=maria', 'name:x-eq'], // _filter's own string mode is not a URL modifier
  ])('%s', async (q, param) => {
    const err = await search(t.db, parseQuery(q), { ...OPTIONS, strict: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FhirError);
    expect((err as FhirError).status).toBe(400);
    expect(JSON.stringify((err as FhirError).outcome)).toContain(param);
  });
});
