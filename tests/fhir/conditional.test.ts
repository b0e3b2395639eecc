// Conditional create / update / delete, and the concurrency guarantees: exactly one of two
// concurrent If-Match updates wins; concurrent conditional creates create one resource.
import { describe, expect, it } from 'vitest';
import { http, unique } from '../support/fhir.ts';

const SYS = 'urn:test:mrn';

describe('conditional create (If-None-Exist)', () => {
  it('creates when nothing matches, returns the match when one does, 412 when several do', async () => {
    const value = unique('mrn');
    const body = { resourceType: 'Patient', identifier: [{ system: SYS, value }] };
    const headers = { 'if-none-exist': `identifier=${SYS}|${value}` };
    const first = await http('POST', 'Patient', { body, headers });
    expect(first.status).toBe(201);
    const second = await http('POST', 'Patient', { body, headers });
    expect(second.status).toBe(200);
    expect(second.body.id).toBe(first.body.id);
    await http('POST', 'Patient', { body });
    const third = await http('POST', 'Patient', { body, headers });
    expect(third.status).toBe(412);
  });

  it('creates exactly one resource when many clients race with the same criteria', async () => {
    const value = unique('race');
    const body = { resourceType: 'Patient', identifier: [{ system: SYS, value }] };
    const headers = { 'if-none-exist': `identifier=${SYS}|${value}` };
    const results = await Promise.all(Array.from({ length: 8 }, () => http('POST', 'Patient', { body, headers })));
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    expect(results.filter((r) => r.status === 200)).toHaveLength(7);
    expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
    const search = await http('GET', `Patient?identifier=${SYS}|${value}`);
    expect(search.body.entry).toHaveLength(1);
  });
});

describe('If-Match races', () => {
  it('lets exactly one of several concurrent updates with the same If-Match win', async () => {
    const created = await http('POST', 'Patient', { body: { resourceType: 'Patient', gender: 'male' } });
    const id = created.body.id;
    const results = await Promise.all(
      ['female', 'other', 'unknown', 'male'].map((gender) =>
        http('PUT', `Patient/${id}`, { body: { resourceType: 'Patient', id, gender }, headers: { 'if-match': 'W/"1"' } }),
      ),
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    expect(results.filter((r) => r.status === 412)).toHaveLength(3);
    const winner = results.find((r) => r.status === 200)!;
    const current = await http('GET', `Patient/${id}`);
    expect(current.body.meta.versionId).toBe('2');
    expect(current.body.gender).toBe(winner.body.gender);
    expect((await http('GET', `Patient/${id}/_history`)).body.total).toBe(2);
  });

  it('keeps every version when concurrent updates carry no If-Match', async () => {
    const created = await http('POST', 'Patient', { body: { resourceType: 'Patient', gender: 'male' } });
    const id = created.body.id;
    await Promise.all(Array.from({ length: 6 }, () => http('PUT', `Patient/${id}`, { body: { resourceType: 'Patient', id, gender: 'female' } })));
    const h = await http('GET', `Patient/${id}/_history`);
    expect(h.body.total).toBe(7);
    expect(h.body.entry.map((e: any) => e.resource.meta.versionId)).toEqual(['7', '6', '5', '4', '3', '2', '1']);
  });
});

describe('conditional update', () => {
  it('creates on no match, updates the single match, refuses several', async () => {
    const value = unique('cu');
    const url = `Patient?identifier=${SYS}|${value}`;
    const body = { resourceType: 'Patient', identifier: [{ system: SYS, value }], gender: 'male' };
    const created = await http('PUT', url, { body });
    expect(created.status).toBe(201);
    const updated = await http('PUT', url, { body: { ...body, gender: 'female' } });
    expect(updated.status).toBe(200);
    expect(updated.body.id).toBe(created.body.id);
    expect(updated.body.meta.versionId).toBe('2');
    const wrongId = await http('PUT', url, { body: { ...body, id: 'some-other-id' } });
    expect(wrongId.status).toBe(400);
    await http('POST', 'Patient', { body });
    expect((await http('PUT', url, { body })).status).toBe(412);
  });
});

describe('conditional delete', () => {
  it('deletes the single match, is a no-op on none, refuses several', async () => {
    const value = unique('cd');
    const url = `Patient?identifier=${SYS}|${value}`;
    const p = await http('POST', 'Patient', { body: { resourceType: 'Patient', identifier: [{ system: SYS, value }] } });
    expect((await http('DELETE', url)).status).toBe(200);
    expect((await http('GET', `Patient/${p.body.id}`)).status).toBe(410);
    expect((await http('DELETE', url)).status).toBe(200);
    await http('POST', 'Patient', { body: { resourceType: 'Patient', identifier: [{ system: SYS, value }] } });
    await http('POST', 'Patient', { body: { resourceType: 'Patient', identifier: [{ system: SYS, value }] } });
    expect((await http('DELETE', url)).status).toBe(412);
  });
});
