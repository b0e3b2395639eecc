// JSON Patch and FHIRPath Patch, plain and conditional, with If-Match.
import { describe, expect, it } from 'vitest';
import { client, http, unique } from '../support/fhir.ts';

async function newPatient(extra: Record<string, unknown> = {}) {
  const res = await http('POST', 'Patient', { body: { resourceType: 'Patient', gender: 'female', name: [{ family: 'Patch' }], ...extra } });
  return res.body;
}

describe('JSON Patch', () => {
  it('applies a JSON Patch through fhir-kit-client and bumps the version', async () => {
    const p = await newPatient();
    const patched = (await client().patch({
      resourceType: 'Patient',
      id: p.id,
      jsonPatch: [
        { op: 'replace', path: '/gender', value: 'male' },
        { op: 'add', path: '/birthDate', value: '1990-01-01' },
      ],
    })) as any;
    expect(patched.gender).toBe('male');
    expect(patched.birthDate).toBe('1990-01-01');
    expect(patched.meta.versionId).toBe('2');
  });

  it('refuses a patch that makes the resource invalid (422) and keeps the old version', async () => {
    const p = await newPatient();
    const res = await http('PATCH', `Patient/${p.id}`, {
      body: [{ op: 'replace', path: '/gender', value: 'banana' }],
      headers: { 'content-type': 'application/json-patch+json' },
    });
    expect(res.status).toBe(422);
    expect((await http('GET', `Patient/${p.id}`)).body.meta.versionId).toBe('1');
  });

  it('fails a test op with 422, a bad op with 400, and a stale If-Match with 412', async () => {
    const p = await newPatient();
    const headers = { 'content-type': 'application/json-patch+json' };
    const test = await http('PATCH', `Patient/${p.id}`, { body: [{ op: 'test', path: '/gender', value: 'male' }], headers });
    expect(test.status).toBe(422);
    const bad = await http('PATCH', `Patient/${p.id}`, { body: [{ op: 'explode', path: '/gender' }], headers });
    expect(bad.status).toBe(400);
    const stale = await http('PATCH', `Patient/${p.id}`, {
      body: [{ op: 'replace', path: '/gender', value: 'male' }],
      headers: { ...headers, 'if-match': 'W/"3"' },
    });
    expect(stale.status).toBe(412);
  });
});

describe('FHIRPath Patch', () => {
  it('applies replace and add operations from a Parameters body', async () => {
    const p = await newPatient();
    const res = await http('PATCH', `Patient/${p.id}`, {
      body: {
        resourceType: 'Parameters',
        parameter: [
          { name: 'operation', part: [
            { name: 'type', valueCode: 'replace' },
            { name: 'path', valueString: 'Patient.gender' },
            { name: 'value', valueCode: 'other' },
          ] },
          { name: 'operation', part: [
            { name: 'type', valueCode: 'add' },
            { name: 'path', valueString: 'Patient' },
            { name: 'name', valueString: 'birthDate' },
            { name: 'value', valueDate: '2001-02-03' },
          ] },
        ],
      },
    });
    expect(res.status).toBe(200);
    expect(res.body.gender).toBe('other');
    expect(res.body.birthDate).toBe('2001-02-03');
  });
});

describe('conditional patch', () => {
  it('patches the single resource matching the criteria', async () => {
    const value = unique('cp');
    const p = await newPatient({ identifier: [{ system: 'urn:test:patch', value }] });
    const res = await http('PATCH', `Patient?identifier=urn:test:patch|${value}`, {
      body: [{ op: 'replace', path: '/gender', value: 'male' }],
      headers: { 'content-type': 'application/json-patch+json' },
    });
    expect(res.status).toBe(200);
    expect(res.body.id).toBe(p.id);
    expect(res.body.gender).toBe('male');
  });
});
