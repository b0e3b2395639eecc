// Binary: raw upload and download with its content type, FHIR JSON form, and the size limit.
import { describe, expect, it } from 'vitest';
import { fhirBase, http, token } from '../support/fhir.ts';

describe('Binary', () => {
  it('stores raw bytes and serves them back with their content type', async () => {
    const bytes = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 3, 255]);
    const created = await http('POST', 'Binary', { raw: bytes, headers: { 'content-type': 'image/png' } });
    expect(created.status).toBe(201);
    expect(created.body.contentType).toBe('image/png');
    const raw = await fetch(`${fhirBase()}/Binary/${created.body.id}`, { headers: { accept: 'image/png', authorization: `Bearer ${token()}` } });
    expect(raw.status).toBe(200);
    expect(raw.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await raw.arrayBuffer())).toEqual(bytes);
    const asFhir = await http('GET', `Binary/${created.body.id}`);
    expect(asFhir.body.resourceType).toBe('Binary');
    expect(Buffer.from(asFhir.body.data, 'base64')).toEqual(bytes);
  });

  it('accepts a FHIR Binary with base64 data', async () => {
    const data = Buffer.from('hello, ward').toString('base64');
    const created = await http('POST', 'Binary', { body: { resourceType: 'Binary', contentType: 'text/plain', data } });
    expect(created.status).toBe(201);
    const raw = await fetch(`${fhirBase()}/Binary/${created.body.id}`, { headers: { accept: 'text/plain', authorization: `Bearer ${token()}` } });
    expect(await raw.text()).toBe('hello, ward');
  });

  it('refuses content past the configured limit with 413', async () => {
    const big = Buffer.alloc(1024 * 1024 + 10, 1);
    const res = await http('POST', 'Binary', { raw: big, headers: { 'content-type': 'application/octet-stream' } });
    expect(res.status).toBe(413);
    expect(res.body.resourceType).toBe('OperationOutcome');
  });
});
