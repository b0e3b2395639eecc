// batch and transaction Bundles: atomicity, urn:uuid and conditional reference resolution,
// processing order, per-entry responses; real Synthea bundles from the shared corpus.
import { describe, expect, it } from 'vitest';
import { client, corpusFiles, http, readJson, unique } from '../support/fhir.ts';

/** Every Reference.reference string in a resource. */
function referencesIn(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) node.forEach((n) => referencesIn(n, out));
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === 'reference' && typeof v === 'string') out.push(v);
      else referencesIn(v, out);
    }
  }
  return out;
}

/** Reads every stored resource a transaction response names and checks its references resolve. */
async function assertAllReferencesResolve(response: any): Promise<number> {
  const locations: string[] = response.entry.map((e: any) => e.response.location.replace(/\/_history\/\d+$/, ''));
  const resources = await Promise.all(locations.map(async (loc) => (await http('GET', loc)).body));
  // "#id" points into the resource's own contained list, not to a stored resource.
  const refs = new Set(resources.flatMap((r) => referencesIn(r)).filter((ref) => !ref.startsWith('#')));
  for (const ref of refs) {
    expect(ref, 'no urn:uuid or conditional reference may survive').not.toMatch(/^urn:uuid:|\?/);
  }
  const results = await Promise.all([...refs].map(async (ref) => [ref, (await http('GET', ref)).status] as const));
  for (const [ref, status] of results) expect(status, `${ref} resolves`).toBe(200);
  return refs.size;
}

describe('transaction', () => {
  it('loads a Synthea patient bundle as one transaction and every reference resolves', async () => {
    const file = corpusFiles('synthea-r4/smart-on-fhir').find((f) => f.includes('Agustin_Fonseca')) as string;
    const bundle = readJson(file);
    const res = await client().transaction({ body: bundle }) as any;
    expect(res.type).toBe('transaction-response');
    expect(res.entry).toHaveLength(bundle.entry.length);
    for (const e of res.entry) {
      expect(e.response.status).toBe('201 Created');
      expect(e.response.etag).toBe('W/"1"');
      expect(e.response.location).toMatch(/^[A-Z][A-Za-z]+\/[0-9a-f-]{36}\/_history\/1$/);
    }
    const refCount = await assertAllReferencesResolve(res);
    expect(refCount).toBeGreaterThan(5);
    // The patient is findable and its observations point at it.
    const patientLoc = res.entry[0].response.location.replace(/\/_history\/1$/, '');
    const obs = await http('GET', `Observation?subject=${patientLoc}&_count=100`);
    expect(obs.body.entry.length).toBe(bundle.entry.filter((e: any) => e.resource.resourceType === 'Observation').length);
  });

  it('resolves conditional references after the batch of conditional creates they need (fhir-data-pipes)', async () => {
    const dir = 'synthea-r4/fhir-data-pipes';
    for (const name of ['hospitalInformation', 'practitionerInformation']) {
      const batch = readJson(corpusFiles(dir).find((f) => f.includes(name)) as string);
      const res = await http('POST', '', { body: batch });
      expect(res.status).toBe(200);
      expect(res.body.type).toBe('batch-response');
      for (const e of res.body.entry) expect(e.response.status).toMatch(/^20[01]/);
      // Loading the same batch again creates nothing new (conditional create).
      if (name === 'hospitalInformation') {
        const again = await http('POST', '', { body: batch });
        const notReused = again.body.entry.filter((e: any) => !e.response.status.startsWith('200'));
        expect(notReused.map((e: any) => [e.response.status, e.response.outcome?.issue?.[0]?.diagnostics])).toEqual([]);
      }
    }
    const patientFile = corpusFiles(dir).find((f) => f.includes('Cecelia952')) as string;
    const bundle = readJson(patientFile);
    const res = await http('POST', '', { body: bundle });
    expect(res.status).toBe(200);
    await assertAllReferencesResolve(res.body);
  }, 240_000);

  it('is all or nothing: one invalid entry fails the whole transaction and stores nothing', async () => {
    const family = unique('Atomic');
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: 'urn:uuid:11111111-1111-4111-8111-111111111111', resource: { resourceType: 'Patient', name: [{ family }] }, request: { method: 'POST', url: 'Patient' } },
        { resource: { resourceType: 'Observation', status: 'bogus', code: { text: 'x' }, subject: { reference: 'urn:uuid:11111111-1111-4111-8111-111111111111' } }, request: { method: 'POST', url: 'Observation' } },
      ],
    };
    const res = await http('POST', '', { body: bundle });
    expect(res.status).toBe(422);
    expect(res.body.issue[0].diagnostics).toMatch(/^Bundle\.entry\[1\]/);
    const search = await http('GET', `Patient?family=${family}`);
    expect(search.body.entry ?? []).toHaveLength(0);
  });

  it('processes DELETE, POST, PUT, GET in the spec order and answers in request order', async () => {
    const toDelete = await http('POST', 'Patient', { body: { resourceType: 'Patient', gender: 'male' } });
    const putId = unique('tx-put');
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { request: { method: 'GET', url: `Patient/${putId}` } },
        { fullUrl: `Patient/${putId}`, resource: { resourceType: 'Patient', id: putId, gender: 'female' }, request: { method: 'PUT', url: `Patient/${putId}` } },
        { fullUrl: 'urn:uuid:22222222-2222-4222-8222-222222222222', resource: { resourceType: 'Observation', status: 'final', code: { text: 'hr' }, subject: { reference: `Patient/${putId}` } }, request: { method: 'POST', url: 'Observation' } },
        { request: { method: 'DELETE', url: `Patient/${toDelete.body.id}` } },
      ],
    };
    const res = await http('POST', '', { body: bundle });
    expect(res.status).toBe(200);
    const statuses = res.body.entry.map((e: any) => e.response.status);
    expect(statuses).toEqual(['200 OK', '201 Created', '201 Created', '200 OK']);
    // The GET ran last, so it saw the PUT.
    expect(res.body.entry[0].resource.gender).toBe('female');
    expect((await http('GET', `Patient/${toDelete.body.id}`)).status).toBe(410);
  });

  it('rewrites urn:uuid references in conditional creates and fails on an ambiguous conditional reference', async () => {
    const sys = 'urn:test:tx';
    const value = unique('dup');
    await http('POST', 'Patient', { body: { resourceType: 'Patient', identifier: [{ system: sys, value }] } });
    await http('POST', 'Patient', { body: { resourceType: 'Patient', identifier: [{ system: sys, value }] } });
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient?identifier=${sys}|${value}` } }, request: { method: 'POST', url: 'Observation' } },
      ],
    };
    const res = await http('POST', '', { body: bundle });
    expect(res.status).toBe(412);
    expect(res.body.issue[0].diagnostics).toContain('more than one');
  });
});

describe('batch', () => {
  it('runs entries independently: a failing entry gets its own OperationOutcome, others succeed', async () => {
    const bundle = {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { resource: { resourceType: 'Patient', gender: 'male' }, request: { method: 'POST', url: 'Patient' } },
        { resource: { resourceType: 'Patient', gender: 'banana' }, request: { method: 'POST', url: 'Patient' } },
        { request: { method: 'GET', url: 'Patient/does-not-exist' } },
        { request: { method: 'GET', url: 'metadata' } },
      ],
    };
    const res = (await client().batch({ body: bundle })) as any;
    expect(res.type).toBe('batch-response');
    const statuses = res.entry.map((e: any) => e.response.status);
    expect(statuses[0]).toBe('201 Created');
    expect(statuses[1]).toBe('422 Unprocessable Entity');
    expect(res.entry[1].response.outcome.resourceType).toBe('OperationOutcome');
    expect(statuses[2]).toBe('404 Not Found');
    expect(statuses[3]).toBe('200 OK');
    expect(res.entry[3].resource.resourceType).toBe('CapabilityStatement');
  });

  it('refuses a Bundle that is neither batch nor transaction', async () => {
    const res = await http('POST', '', { body: { resourceType: 'Bundle', type: 'collection', entry: [] } });
    expect(res.status).toBe(400);
    expect(res.body.issue[0].expression).toContain('Bundle.type');
  });
});
