// create / read / vread / update / delete over real HTTP, with a real FHIR client
// (fhir-kit-client) and raw requests for the headers R4 requires.
import { describe, expect, it } from 'vitest';
import { client, http, unique } from '../support/fhir.ts';

const patient = (family: string) => ({
  resourceType: 'Patient',
  name: [{ family, given: ['Ana'] }],
  gender: 'female',
  birthDate: '1984-03-02',
});

describe('create', () => {
  it('assigns a uuid id, version 1 and lastUpdated, and returns Location and ETag', async () => {
    const res = await http('POST', 'Patient', { body: { ...patient(unique('Create')), id: 'ignored-client-id' } });
    expect(res.status).toBe(201);
    expect(res.body.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.body.meta.versionId).toBe('1');
    expect(Date.parse(res.body.meta.lastUpdated)).toBeGreaterThan(Date.now() - 60_000);
    expect(res.headers.get('location')).toMatch(new RegExp(`/fhir/Patient/${res.body.id}/_history/1$`));
    expect(res.headers.get('etag')).toBe('W/"1"');
    expect(res.headers.get('last-modified')).toBe(new Date(res.body.meta.lastUpdated).toUTCString());
    expect(res.headers.get('content-type')).toContain('application/fhir+json');
  });

  it('works through fhir-kit-client for resources of many types from the R4 examples', async () => {
    const c = client();
    const created = (await c.create({ resourceType: 'Observation', body: {
      resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
      valueQuantity: { value: 72, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
    } })) as any;
    const read = (await c.read({ resourceType: 'Observation', id: created.id })) as any;
    expect(read.valueQuantity.value).toBe(72);
    expect(read.meta.versionId).toBe('1');
  });

  it('honours Prefer: return=minimal and return=OperationOutcome', async () => {
    const minimal = await http('POST', 'Patient', { body: patient('Min'), headers: { prefer: 'return=minimal' } });
    expect(minimal.status).toBe(201);
    expect(minimal.text).toBe('');
    expect(minimal.headers.get('location')).toContain('/Patient/');
    const oo = await http('POST', 'Patient', { body: patient('Oo'), headers: { prefer: 'return=OperationOutcome' } });
    expect(oo.status).toBe(201);
    expect(oo.body.resourceType).toBe('OperationOutcome');
  });
});

describe('read and vread', () => {
  it('reads the current version, vreads old versions, 404 for unknown ids and types', async () => {
    const c = client();
    const created = (await c.create({ resourceType: 'Patient', body: patient('Read') })) as any;
    const updated = (await c.update({ resourceType: 'Patient', id: created.id, body: { ...created, gender: 'other' } })) as any;
    expect(updated.meta.versionId).toBe('2');
    const v1 = (await c.vread({ resourceType: 'Patient', id: created.id, version: '1' })) as any;
    expect(v1.gender).toBe('female');
    expect(v1.meta.versionId).toBe('1');
    const current = await http('GET', `Patient/${created.id}`);
    expect(current.body.gender).toBe('other');
    expect(current.headers.get('etag')).toBe('W/"2"');

    const missing = await http('GET', 'Patient/does-not-exist');
    expect(missing.status).toBe(404);
    expect(missing.body.resourceType).toBe('OperationOutcome');
    expect((await http('GET', `Patient/${created.id}/_history/9`)).status).toBe(404);
    const unknownType = await http('GET', 'Patientt/1');
    expect(unknownType.status).toBe(404);
    expect(unknownType.body.issue[0].diagnostics).toContain('Patientt');
  });

  it('answers 304 to If-None-Match with the current ETag and to If-Modified-Since', async () => {
    const created = await http('POST', 'Patient', { body: patient('Cond') });
    const id = created.body.id;
    expect((await http('GET', `Patient/${id}`, { headers: { 'if-none-match': 'W/"1"' } })).status).toBe(304);
    expect((await http('GET', `Patient/${id}`, { headers: { 'if-none-match': 'W/"7"' } })).status).toBe(200);
    const later = new Date(Date.now() + 60_000).toUTCString();
    const earlier = new Date(Date.now() - 3_600_000).toUTCString();
    expect((await http('GET', `Patient/${id}`, { headers: { 'if-modified-since': later } })).status).toBe(304);
    expect((await http('GET', `Patient/${id}`, { headers: { 'if-modified-since': earlier } })).status).toBe(200);
  });

  it('honours _summary, _elements, _format and _pretty', async () => {
    const created = await http('POST', 'Patient', { body: { ...patient('Sum'), text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">x</div>' }, maritalStatus: { text: 'M' } } });
    const id = created.body.id;
    const summary = await http('GET', `Patient/${id}?_summary=true`);
    expect(summary.body.name).toBeDefined();
    expect(summary.body.maritalStatus).toBeUndefined();
    expect(summary.body.meta.tag.some((t: any) => t.code === 'SUBSETTED')).toBe(true);
    const elements = await http('GET', `Patient/${id}?_elements=gender`);
    expect(elements.body.gender).toBe('female');
    expect(elements.body.name).toBeUndefined();
    const pretty = await http('GET', `Patient/${id}?_format=json&_pretty=true`);
    expect(pretty.text).toContain('\n  "');
    expect((await http('GET', `Patient/${id}?_format=xml`)).status).toBe(406);
    expect((await http('GET', `Patient/${id}?_summary=bogus`)).status).toBe(400);
  });
});

describe('update', () => {
  it('creates with a client id (update-as-create), then updates it', async () => {
    const id = unique('client');
    const first = await http('PUT', `Patient/${id}`, { body: { ...patient('Put'), id } });
    expect(first.status).toBe(201);
    expect(first.body.meta.versionId).toBe('1');
    const second = await http('PUT', `Patient/${id}`, { body: { ...patient('Put'), id, gender: 'male' } });
    expect(second.status).toBe(200);
    expect(second.body.meta.versionId).toBe('2');
    expect(second.headers.get('etag')).toBe('W/"2"');
  });

  it('refuses an id mismatch or a missing id with 400', async () => {
    const id = unique('mismatch');
    expect((await http('PUT', `Patient/${id}`, { body: { ...patient('X'), id: 'other' } })).status).toBe(400);
    expect((await http('PUT', `Patient/${id}`, { body: patient('X') })).status).toBe(400);
  });

  it('checks If-Match: the current version wins, a stale one gets 412', async () => {
    const created = await http('POST', 'Patient', { body: patient('Match') });
    const id = created.body.id;
    const ok = await http('PUT', `Patient/${id}`, { body: { ...created.body, gender: 'male' }, headers: { 'if-match': 'W/"1"' } });
    expect(ok.status).toBe(200);
    const stale = await http('PUT', `Patient/${id}`, { body: { ...created.body, gender: 'other' }, headers: { 'if-match': 'W/"1"' } });
    expect(stale.status).toBe(412);
    expect(stale.body.issue[0].diagnostics).toMatch(/version 1 .* current version 2/);
    expect((await http('GET', `Patient/${id}`)).body.gender).toBe('male');
    expect((await http('PUT', `Patient/${id}`, { body: created.body, headers: { 'if-match': 'garbage' } })).status).toBe(400);
  });
});

describe('delete', () => {
  it('soft-deletes: later reads answer 410, history keeps every version, delete is idempotent', async () => {
    const c = client();
    const created = (await c.create({ resourceType: 'Patient', body: patient('Del') })) as any;
    const del = await http('DELETE', `Patient/${created.id}`);
    expect(del.status).toBe(200);
    const read = await http('GET', `Patient/${created.id}`);
    expect(read.status).toBe(410);
    expect(read.body.resourceType).toBe('OperationOutcome');
    const history = await http('GET', `Patient/${created.id}/_history`);
    expect(history.body.total).toBe(2);
    expect(history.body.entry[0].request.method).toBe('DELETE');
    expect(history.body.entry[0].resource).toBeUndefined();
    expect(history.body.entry[1].resource.id).toBe(created.id);
    expect((await http('GET', `Patient/${created.id}/_history/1`)).status).toBe(200);
    expect((await http('GET', `Patient/${created.id}/_history/2`)).status).toBe(410);
    expect((await http('DELETE', `Patient/${created.id}`)).status).toBe(200);
    expect((await http('DELETE', `Patient/never-existed`)).status).toBe(200);
    // An update after a delete brings the resource back as a new version.
    const back = await http('PUT', `Patient/${created.id}`, { body: { ...created, meta: undefined } });
    expect(back.status).toBe(200);
    expect(back.body.meta.versionId).toBe('3');
  });

  it('checks If-Match on delete', async () => {
    const created = await http('POST', 'Patient', { body: patient('DelMatch') });
    expect((await http('DELETE', `Patient/${created.body.id}`, { headers: { 'if-match': 'W/"5"' } })).status).toBe(412);
    expect((await http('DELETE', `Patient/${created.body.id}`, { headers: { 'if-match': 'W/"1"' } })).status).toBe(200);
  });
});

describe('unsupported interactions', () => {
  it('answers 405 for a method a path does not support and 501 for an unknown operation', async () => {
    const created = await http('POST', 'Patient', { body: patient('Ops') });
    const post = await http('POST', `Patient/${created.body.id}`, { body: patient('Ops') });
    expect(post.status).toBe(405);
    expect(post.body.resourceType).toBe('OperationOutcome');
    const op = await http('POST', 'Patient/$no-such-op', { body: { resourceType: 'Parameters' } });
    expect(op.status).toBe(501);
    expect(op.body.issue[0].diagnostics).toContain('$no-such-op');
  });
});
