// Table-driven search tests over a small hand-made data set: every parameter type and modifier,
// chains, _has, composites, near, result parameters and paging. Expected id sets are worked out
// by hand from the R4 search page's rules (comments give the reasoning for the edge cases).
import type { Resource } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { FhirError } from '../../../server/fhir/outcome.ts';
import { reindex } from '../../../server/fhir/search/reindex.ts';
import { findMatches, search } from '../../../server/fhir/search/search.ts';
import { FHIR_BASE, OPTIONS, loadedDb, ids, parseQuery, run } from './helpers.ts';

const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const V2_0203 = 'http://terminology.hl7.org/CodeSystem/v2-0203';
const vital = [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }];
const qty = (value: number, code: string) => ({ value, unit: code, system: UCUM, code });

const fixtures: Resource[] = [
  { resourceType: 'Practitioner', id: 'pr1', name: [{ family: 'Jones', given: ['Mary'] }] },
  { resourceType: 'Organization', id: 'org2', name: 'Health System' },
  { resourceType: 'Organization', id: 'org1', name: 'General Hospital', partOf: { reference: 'Organization/org2' } },
  {
    resourceType: 'Patient',
    id: 'p1',
    meta: { tag: [{ system: 's', code: 't1' }], source: 'http://src.example/a' },
    text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Hans</div>' },
    name: [{ family: 'Müller', given: ['Hans'] }],
    gender: 'male',
    birthDate: '1970-03-15',
    active: true,
    identifier: [{ system: 'urn:mrn', value: '111', type: { coding: [{ system: V2_0203, code: 'MR' }] } }],
    address: [{ line: ['1 Main St'], city: 'Boston', postalCode: '02101' }],
    telecom: [{ system: 'phone', value: '555-1234' }],
    generalPractitioner: [{ reference: 'Practitioner/pr1' }],
  },
  {
    resourceType: 'Patient',
    id: 'p2',
    meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }] },
    name: [{ family: 'Smith', given: ['Anna'] }],
    gender: 'female',
    birthDate: '1970',
    identifier: [{ system: 'urn:mrn', value: '222' }],
    address: [{ city: 'Cambridge' }],
    managingOrganization: { reference: 'Organization/org1' },
  },
  {
    resourceType: 'Patient',
    id: 'p3',
    name: [{ family: 'Smithson', given: ['John'] }],
    gender: 'male',
    birthDate: '1985-07-01',
    identifier: [{ value: '111' }],
  },
  {
    resourceType: 'Patient',
    id: 'p4',
    meta: { profile: ['http://example.org/fhir/StructureDefinition/p'] },
    name: [{ family: "O'Brien" }],
    birthDate: '2001-01-01',
    active: false,
  },
  {
    resourceType: 'Observation',
    id: 'o1',
    status: 'final',
    category: vital,
    code: { coding: [{ system: LOINC, code: '8867-4', display: 'Heart rate' }] },
    subject: { reference: 'Patient/p1' },
    effectiveDateTime: '2015-06-01T10:00:00Z',
    valueQuantity: qty(72, '/min'),
  },
  {
    resourceType: 'Observation',
    id: 'o2',
    status: 'final',
    category: vital,
    code: { coding: [{ system: LOINC, code: '8480-6', display: 'Systolic blood pressure' }] },
    subject: { reference: `${FHIR_BASE}/Patient/p1` },
    performer: [{ reference: 'http://other.org/fhir/Practitioner/9' }],
    effectiveDateTime: '2016-01-01',
    valueQuantity: qty(120, 'mm[Hg]'),
  },
  {
    resourceType: 'Observation',
    id: 'o3',
    status: 'final',
    category: vital,
    code: { coding: [{ system: LOINC, code: '8867-4', display: 'Heart rate' }] },
    subject: { reference: 'Patient/p2' },
    effectivePeriod: { start: '2014-12-31', end: '2015-01-02' },
    valueQuantity: qty(100, '/min'),
  },
  {
    resourceType: 'Observation',
    id: 'o4',
    status: 'amended',
    category: vital,
    code: { coding: [{ system: LOINC, code: '85354-9', display: 'Blood pressure panel' }] },
    subject: { reference: 'Patient/p2' },
    effectiveDateTime: '2015-03',
    component: [
      { code: { coding: [{ system: LOINC, code: '8480-6' }] }, valueQuantity: qty(140, 'mm[Hg]') },
      { code: { coding: [{ system: LOINC, code: '8462-4' }] }, valueQuantity: qty(90, 'mm[Hg]') },
    ],
  },
  {
    resourceType: 'Observation',
    id: 'o5',
    status: 'preliminary',
    code: { coding: [{ system: 'other', code: 'X' }] },
    subject: { reference: 'Patient/p3' },
    performer: [{ reference: 'Practitioner/pr1' }, { identifier: { system: 'npi', value: '999' }, display: 'Dr Who' }],
    effectiveDateTime: '2014',
    valueString: 'Positive result',
  },
  {
    resourceType: 'Observation',
    id: 'o6',
    status: 'final',
    category: vital,
    code: { coding: [{ system: LOINC, code: '8867-4', display: 'Heart rate' }] },
    subject: { reference: 'Patient/p4' },
    effectiveDateTime: '2020-01-01T00:00:00+05:00',
    valueQuantity: qty(60.5, '/min'),
  },
  { resourceType: 'Encounter', id: 'e1', status: 'finished', class: { code: 'AMB' }, subject: { reference: 'Patient/p1' } },
  { resourceType: 'Encounter', id: 'e2', status: 'finished', class: { code: 'AMB' }, subject: { reference: 'Patient/p2' } },
  { resourceType: 'RiskAssessment', id: 'ra1', status: 'final', subject: { reference: 'Patient/p1' }, prediction: [{ probabilityDecimal: 0.25 }] },
  { resourceType: 'RiskAssessment', id: 'ra2', status: 'final', subject: { reference: 'Patient/p2' }, prediction: [{ probabilityDecimal: 0.8 }] },
  { resourceType: 'Location', id: 'l1', name: 'Boston', position: { latitude: 42.3601, longitude: -71.0589 } },
  { resourceType: 'Location', id: 'l2', name: 'Cambridge', position: { latitude: 42.3736, longitude: -71.1097 } },
  { resourceType: 'Location', id: 'l3', name: 'New York', position: { latitude: 40.7128, longitude: -74.006 } },
  { resourceType: 'Location', id: 'l4', name: 'Nowhere' },
];

const t = loadedDb(fixtures);

const sorted = (a: string[]) => [...a].sort();

// [query, expected ids (as a set)]
const cases: [string, string[]][] = [
  // string: default = starts with, case- and accent-insensitive
  ['Patient?name=smi', ['p2', 'p3']],
  ['Patient?name=muller', ['p1']],
  ['Patient?name=MÜL', ['p1']],
  ['Patient?name=hans', ['p1']], // any part of the name, not just the start of the whole
  ['Patient?family:exact=Smith', ['p2']],
  ['Patient?family:exact=smith', []],
  ['Patient?name:contains=mit', ['p2', 'p3']],
  ['Patient?given=anna,john', ['p2', 'p3']],
  ['Patient?address-city=bos', ['p1']],
  ['Patient?address=cambridge', ['p2']],
  ['Patient?address=1 mai', ['p1']],
  ['Patient?address=main', []], // starts-with, not contains
  ['Patient?name=smi&gender=male', ['p3']],
  ['Patient?name=smi&name=smithson', ['p3']],
  ['Patient?name:missing=true', []],
  ['Patient?address:missing=true', ['p3', 'p4']],
  // token
  ['Patient?gender=male', ['p1', 'p3']],
  ['Patient?gender:not=male', ['p2', 'p4']], // :not includes resources without a value
  ['Patient?identifier=urn:mrn|111', ['p1']],
  ['Patient?identifier=111', ['p1', 'p3']],
  ['Patient?identifier=|111', ['p3']], // no system
  ['Patient?identifier=urn:mrn|', ['p1', 'p2']],
  [`Patient?identifier:of-type=${V2_0203}|MR|111`, ['p1']],
  ['Patient?active=true', ['p1']],
  ['Patient?active=false', ['p4']],
  ['Patient?gender:missing=true', ['p4']],
  ['Patient?gender:missing=false', ['p1', 'p2', 'p3']],
  ['Patient?telecom=555-1234', ['p1']],
  ['Patient?_tag=s|t1', ['p1']],
  ['Patient?_security=R', ['p2']],
  ['Observation?code:text=heart', ['o1', 'o3', 'o6']],
  ['Observation?code:text=pressure', ['o2', 'o4']], // word inside the display
  [`Observation?code=${LOINC}|8867-4`, ['o1', 'o3', 'o6']],
  [`Observation?code=${LOINC}|8867-4,${LOINC}|8480-6`, ['o1', 'o2', 'o3', 'o6']],
  ['Observation?code=8867-4,X', ['o1', 'o3', 'o5', 'o6']],
  ['Observation?category=vital-signs', ['o1', 'o2', 'o3', 'o4', 'o6']],
  ['Observation?category:missing=true', ['o5']],
  ['Observation?status=final&code=8867-4', ['o1', 'o3', 'o6']],
  // _id, _lastUpdated
  ['Patient?_id=p1,p3', ['p1', 'p3']],
  ['Patient?_lastUpdated=gt2000-01-01', ['p1', 'p2', 'p3', 'p4']],
  ['Patient?_lastUpdated=lt2000-01-01', []],
  // date: the search value and the indexed value are ranges at their precision
  ['Observation?date=2015', ['o1', 'o4']], // o3's period (2014-12-31..2015-01-02) is not inside 2015
  ['Observation?date=ge2015', ['o1', 'o2', 'o4', 'o6']],
  ['Observation?date=lt2015', ['o3', 'o5']],
  ['Observation?date=le2014-12-31', ['o5']],
  ['Observation?date=gt2015-12-31', ['o2', 'o6']],
  ['Observation?date=eq2015-03', ['o4']],
  ['Observation?date=ne2015', ['o2', 'o3', 'o5', 'o6']],
  ['Observation?date=sa2015', ['o2', 'o6']],
  ['Observation?date=eb2015', ['o5']],
  ['Observation?date=2020-01-01', []], // 2020-01-01T00:00+05:00 is 2019-12-31 in UTC
  ['Observation?date=2019-12-31', ['o6']],
  ['Observation?date=2015-06-01T10:00:00Z', ['o1']],
  ['Observation?date=2015-06-01T10:00Z', ['o1']],
  ['Observation?date=2015-06-01T12:00:00%2B02:00', ['o1']], // same instant, other zone
  ['Observation?date=ge2015-01-01&date=lt2016', ['o1', 'o3', 'o4']], // o3 ends on 2015-01-02
  ['Patient?birthdate=1970', ['p1', 'p2']],
  ['Patient?birthdate=1970-03', ['p1']], // p2's whole year is not inside March
  ['Patient?birthdate=ap1970-03-15', ['p1', 'p2']],
  ['Patient?birthdate:missing=true', []],
  // number and quantity (implicit precision: 60 means [59.5, 60.5))
  ['RiskAssessment?probability=gt0.5', ['ra2']],
  ['RiskAssessment?probability=0.25', ['ra1']],
  ['RiskAssessment?probability=0.3', ['ra1']],
  ['RiskAssessment?probability=le0.8', ['ra1', 'ra2']],
  ['Observation?value-quantity=72', ['o1']],
  ['Observation?value-quantity=gt70', ['o1', 'o2', 'o3']],
  ['Observation?value-quantity=lt100', ['o1', 'o6']],
  ['Observation?value-quantity=100||/min', ['o3']],
  [`Observation?value-quantity=le100|${UCUM}|/min`, ['o1', 'o3', 'o6']],
  [`Observation?value-quantity=ge120|${UCUM}|mm[Hg]`, ['o2']],
  ['Observation?value-quantity=ap100', ['o3']],
  ['Observation?value-quantity=60.5', ['o6']],
  ['Observation?value-quantity=60', []],
  ['Observation?value-quantity=6.05e1', ['o6']],
  ['Observation?value-quantity:missing=true', ['o4', 'o5']],
  // reference
  ['Observation?subject=Patient/p1', ['o1', 'o2']], // o2 uses an absolute URL to this server
  ['Observation?subject=p1', ['o1', 'o2']],
  ['Observation?patient=p2', ['o3', 'o4']],
  ['Observation?subject:Patient=p3', ['o5']],
  [`Observation?subject=${FHIR_BASE}/Patient/p1`, ['o1', 'o2']],
  ['Observation?performer=http://other.org/fhir/Practitioner/9', ['o2']],
  ['Observation?performer:identifier=npi|999', ['o5']],
  ['Observation?performer:missing=false', ['o2', 'o5']],
  ['Patient?general-practitioner:missing=true', ['p2', 'p3', 'p4']],
  // uri
  ['Patient?_profile=http://example.org/fhir/StructureDefinition/p', ['p4']],
  ['Patient?_profile:below=http://example.org/fhir', ['p4']],
  ['Patient?_profile:above=http://example.org/fhir/StructureDefinition/p/extra', ['p4']],
  ['Patient?_profile=http://example.org/fhir', []],
  ['Patient?_source=http://src.example/a', ['p1']],
  // chains
  ['Observation?subject.name=muller', ['o1', 'o2']],
  ['Observation?subject:Patient.name=smith', ['o3', 'o4', 'o5']],
  ['Observation?patient.general-practitioner.name=jones', ['o1', 'o2']],
  ['Patient?organization.partof.name=health', ['p2']],
  ['Encounter?subject.name=anna', ['e2']],
  ['Observation?subject._id=p1,p3', ['o1', 'o2', 'o5']],
  // _has (reverse chaining), nested
  [`Patient?_has:Observation:patient:code=${LOINC}|8867-4`, ['p1', 'p2', 'p4']],
  ['Patient?_has:Observation:patient:status=amended', ['p2']],
  ['Practitioner?_has:Patient:general-practitioner:_has:Observation:patient:code=8480-6', ['pr1']],
  ['Patient?_has:Observation:subject:date=2014', ['p3']],
  // composites
  [`Observation?code-value-quantity=${LOINC}|8867-4$gt90`, ['o3']],
  [`Observation?component-code-value-quantity=${LOINC}|8480-6$gt130`, ['o4']],
  [`Observation?component-code-value-quantity=${LOINC}|8462-4$gt130`, []], // values do not cross components
  ['Observation?combo-code-value-quantity=8480-6$ge120', ['o2', 'o4']],
  [`Observation?code-value-quantity=${LOINC}|8867-4$lt65,${LOINC}|8867-4$gt90`, ['o3', 'o6']],
  ['Observation?code-value-string=other|X$pos', ['o5']],
  ['Observation?component-code-value-quantity:missing=false', ['o4']],
  // near (km by default)
  ['Location?near=42.36|-71.06|10|km', ['l1', 'l2']],
  ['Location?near=42.36|-71.06|2|[mi_i]', ['l1']],
  ['Location?near=42.36|-71.06|1000', ['l1', 'l2', 'l3']],
  ['Location?near:missing=true', ['l4']],
];

describe('search parameters', () => {
  it.each(cases)('%s', async (q, expected) => {
    const b = await run(t.db, q);
    expect(sorted(ids(b))).toEqual(sorted(expected));
    expect(b.total).toBe(expected.length);
    expect(b.entry?.some((e) => e.search.mode === 'outcome') ?? false).toBe(false);
  });
});

describe('ordering and paging', () => {
  it('near orders by distance', async () => {
    expect(ids(await run(t.db, 'Location?near=42.36|-71.06|1000|km'))).toEqual(['l1', 'l2', 'l3']);
    expect(ids(await run(t.db, 'Location?near=40.7|-74|1000|km'))).toEqual(['l3', 'l2', 'l1']);
  });

  it('_sort on a date, descending', async () => {
    expect(ids(await run(t.db, 'Observation?_sort=-date'))).toEqual(['o6', 'o2', 'o1', 'o4', 'o3', 'o5']);
  });

  it('_sort on several keys', async () => {
    expect(ids(await run(t.db, 'Patient?_sort=family'))).toEqual(['p1', 'p4', 'p2', 'p3']);
    expect(ids(await run(t.db, 'Observation?_sort=-status,-value-quantity'))).toEqual(['o5', 'o2', 'o3', 'o1', 'o6', 'o4']);
  });

  it('walks next links, then previous links, and stays correct while data changes', async () => {
    const seen: string[] = [];
    let b = await run(t.db, 'Observation?_sort=date&_count=2&_total=accurate');
    expect(b.total).toBe(6);
    expect(b.link?.find((l) => l.relation === 'previous')).toBeUndefined();
    const pages: string[][] = [];
    let inserted = false;
    for (;;) {
      pages.push(ids(b));
      seen.push(...ids(b));
      if (!inserted) {
        // A new resource sorting before the cursor must not shift the next page.
        await t.repo.update({ resourceType: 'Observation', id: 'o-early', status: 'final', code: { text: 'x' }, effectiveDateTime: '1999' } as Resource);
        inserted = true;
      }
      const next = b.link?.find((l) => l.relation === 'next');
      if (!next) break;
      b = await run(t.db, next.url.replace(`${FHIR_BASE}/`, ''));
    }
    expect(seen).toEqual(['o5', 'o3', 'o4', 'o1', 'o2', 'o6']);
    // back from the last page
    const back: string[][] = [];
    for (;;) {
      const prev = b.link?.find((l) => l.relation === 'previous');
      if (!prev) break;
      b = await run(t.db, prev.url.replace(`${FHIR_BASE}/`, ''));
      back.push(ids(b));
    }
    expect(back).toEqual([['o4', 'o1'], ['o5', 'o3'], ['o-early']].slice(0, back.length));
    expect(back[0]).toEqual(['o4', 'o1']);
    await t.repo.delete('Observation', 'o-early');
  });

  it('_count is capped at maxCount and 0 gives only the total', async () => {
    const b = await run(t.db, 'Observation?_count=500', { maxCount: 3 });
    expect(ids(b)).toHaveLength(3);
    const c = await run(t.db, 'Observation?_count=0');
    expect(c.total).toBe(6);
    expect(c.entry).toBeUndefined();
  });
});

describe('result parameters', () => {
  it('_total', async () => {
    expect((await run(t.db, 'Patient?_total=none')).total).toBeUndefined();
    expect((await run(t.db, 'Patient?_total=accurate&_count=1')).total).toBe(4);
    expect((await run(t.db, 'Patient?_summary=count')).entry).toBeUndefined();
    expect((await run(t.db, 'Patient?_summary=count&gender=male')).total).toBe(2);
  });

  it('_summary and _elements', async () => {
    const s = (await run(t.db, 'Patient?_id=p1&_summary=true')).entry![0].resource as Record<string, unknown>;
    expect(s.text).toBeUndefined();
    expect(s.name).toBeDefined();
    expect(JSON.stringify(s.meta)).toContain('SUBSETTED');
    const d = (await run(t.db, 'Patient?_id=p1&_summary=data')).entry![0].resource as Record<string, unknown>;
    expect(d.text).toBeUndefined();
    expect(d.telecom).toBeDefined();
    const x = (await run(t.db, 'Patient?_id=p1&_summary=text')).entry![0].resource as Record<string, unknown>;
    expect(Object.keys(x).sort()).toEqual(['id', 'meta', 'resourceType', 'text']);
    const e = (await run(t.db, 'Patient?_id=p1&_elements=gender,birthDate')).entry![0].resource as Record<string, unknown>;
    expect(Object.keys(e).sort()).toEqual(['birthDate', 'gender', 'id', 'meta', 'resourceType']);
  });

  it('_include, _include:iterate, _revinclude, *', async () => {
    const a = await run(t.db, 'Observation?_id=o1&_include=Observation:subject');
    expect(ids(a)).toEqual(['o1']);
    expect(ids(a, 'include')).toEqual(['p1']);
    const b = await run(t.db, 'Observation?_id=o1&_include=Observation:subject&_include:iterate=Patient:general-practitioner');
    expect(sorted(ids(b, 'include'))).toEqual(['p1', 'pr1']);
    const c = await run(t.db, 'Patient?_id=p1&_revinclude=Observation:subject');
    expect(sorted(ids(c, 'include'))).toEqual(['o1', 'o2']);
    const d = await run(t.db, 'Observation?_id=o5&_include=Observation:*');
    expect(sorted(ids(d, 'include'))).toEqual(['p3', 'pr1']);
    const e = await run(t.db, 'Patient?_id=p2&_include=Patient:organization&_include:iterate=Organization:partof');
    expect(sorted(ids(e, 'include'))).toEqual(['org1', 'org2']);
    const f = await run(t.db, 'Observation?_id=o1&_include=Observation:subject:Group');
    expect(ids(f, 'include')).toEqual([]);
  });

  it('system-level search with _type', async () => {
    const b = await run(t.db, '?_type=Patient,Practitioner&_id=p1,pr1');
    expect(sorted(ids(b))).toEqual(['p1', 'pr1']);
    expect(b.entry!.map((e) => e.fullUrl).sort()).toEqual([`${FHIR_BASE}/Patient/p1`, `${FHIR_BASE}/Practitioner/pr1`]);
  });

  it('fullUrl and search mode', async () => {
    const b = await run(t.db, 'Patient?_id=p1');
    expect(b.entry![0].fullUrl).toBe(`${FHIR_BASE}/Patient/p1`);
    expect(b.link![0]).toEqual({ relation: 'self', url: `${FHIR_BASE}/Patient?_id=p1` });
  });
});

describe('unknown and malformed parameters', () => {
  it('lenient: ignored, with an outcome entry', async () => {
    const b = await run(t.db, 'Patient?foo=bar&gender=male');
    expect(sorted(ids(b))).toEqual(['p1', 'p3']);
    const oo = b.entry!.find((e) => e.search.mode === 'outcome')!;
    expect(oo.resource.resourceType).toBe('OperationOutcome');
    expect(JSON.stringify(oo.resource)).toContain('foo');
  });

  it.each([
    ['Patient?foo=bar', 'foo'],
    ['Observation?date=notadate', 'date'],
    ['Patient?gender:exact=male', 'gender:exact'],
    ['Observation?value-quantity=abc', 'value-quantity'],
    ['Patient?_sort=nonsense', '_sort'],
    ['Observation?subject.nonsense=1', 'subject.nonsense'],
    ['Patient?_count=x', '_count'],
  ])('strict: %s is a 400 naming %s', async (q, param) => {
    const err = await search(t.db, parseQuery(q), { ...OPTIONS, strict: true }).catch((e) => e);
    expect(err).toBeInstanceOf(FhirError);
    expect((err as FhirError).status).toBe(400);
    expect(JSON.stringify((err as FhirError).outcome)).toContain(param);
  });
});

describe('findMatches and deletes', () => {
  it('finds current matches for conditional interactions', async () => {
    const m = await findMatches(t.db, 'Patient', [['identifier', 'urn:mrn|111']], 2);
    expect(m.map((x) => x.id)).toEqual(['p1']);
    expect(JSON.parse(m[0].json).id).toBe('p1');
    expect(m[0].version).toBe(1);
    await expect(findMatches(t.db, 'Patient', [['bogus', '1']], 2)).rejects.toBeInstanceOf(FhirError);
  });

  it('never returns deleted resources (directly, through chains or includes)', async () => {
    await t.repo.update({ resourceType: 'Patient', id: 'gone', name: [{ family: 'Smithers' }] } as Resource);
    await t.repo.update({ resourceType: 'Observation', id: 'og', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient/gone' } } as Resource);
    expect(ids(await run(t.db, 'Patient?name=smithers'))).toEqual(['gone']);
    await t.repo.delete('Patient', 'gone');
    expect(ids(await run(t.db, 'Patient?name=smithers'))).toEqual([]);
    expect(ids(await run(t.db, 'Observation?subject:missing=false&subject._id=gone'))).toEqual([]);
    expect(ids(await run(t.db, 'Observation?_id=og&_include=Observation:subject'), 'include')).toEqual([]);
    expect(await findMatches(t.db, 'Patient', [['_id', 'gone']], 2)).toEqual([]);
    // chains read the target's index rows (gone with the delete) or, for negations, its row
    expect(ids(await run(t.db, 'Observation?subject.name=smithers'))).toEqual([]);
    expect(ids(await run(t.db, 'Observation?_id=og&subject:Patient.gender:not=male'))).toEqual([]);
    expect(ids(await run(t.db, 'Observation?_id=og&subject:Patient.gender:missing=true'))).toEqual([]);
    await t.repo.delete('Observation', 'og');
    // _has never counts a deleted source resource
    await t.repo.update({ resourceType: 'Patient', id: 'alive', name: [{ family: 'Alive' }] } as Resource);
    await t.repo.update({ resourceType: 'Observation', id: 'og2', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient/alive' } } as Resource);
    expect(ids(await run(t.db, 'Patient?_id=alive&_has:Observation:subject:status=final'))).toEqual(['alive']);
    await t.repo.delete('Observation', 'og2');
    expect(ids(await run(t.db, 'Patient?_id=alive&_has:Observation:subject:status=final'))).toEqual([]);
    expect(ids(await run(t.db, 'Patient?name=alive&_has:Observation:subject:status=final'))).toEqual([]);
    await t.repo.delete('Patient', 'alive');
  });
});

describe('reindex', () => {
  it('recomputes the index rows of one type', async () => {
    await t.db.query(`DELETE FROM idx_string WHERE resource_type = 'Patient'`);
    await t.db.query(`DELETE FROM idx_composite WHERE resource_type = 'Observation'`);
    expect(ids(await run(t.db, 'Patient?name=smi'))).toEqual([]);
    expect(await reindex(t.db, { resourceType: 'Patient', baseUrl: FHIR_BASE, batchSize: 2 })).toBe(4);
    expect(sorted(ids(await run(t.db, 'Patient?name=smi')))).toEqual(['p2', 'p3']);
    expect(ids(await run(t.db, 'Patient?gender=female'))).toEqual(['p2']);
    await reindex(t.db, { resourceType: 'Observation', baseUrl: FHIR_BASE });
    expect(ids(await run(t.db, `Observation?component-code-value-quantity=${LOINC}|8480-6$gt130`))).toEqual(['o4']);
    expect(sorted(ids(await run(t.db, 'Observation?patient.general-practitioner.name=jones')))).toEqual(['o1', 'o2']);
  });
});
