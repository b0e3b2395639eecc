// Tokens from the real sign-in flow, used on the FHIR API over HTTP: a patient's token reads
// only that patient's data, an ambulance crew's token sees transport requests but not consults,
// a request without a token gets 401, and browsers of registered apps pass CORS.
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Patient, ServiceRequest } from '@medplum/fhirtypes';
import { registerClient } from '../../server/auth/clients.ts';
import { Browser, makeUser, postForm, startAuthTestServer, type AuthTestServer } from './support.ts';

const REDIRECT = 'http://app.example/callback';
const CAT = 'http://wardlink.org/fhir/CodeSystem/request-category';
let srv: AuthTestServer;

beforeAll(async () => {
  srv = await startAuthTestServer();
  await registerClient(srv.db, {
    clientId: 'enforce-app',
    kind: 'public',
    redirectUris: [REDIRECT],
    scopes: 'openid fhirUser launch/patient user/*.cruds patient/*.rs',
    trusted: true,
  });
});

afterAll(async () => {
  await srv?.stop();
});

async function tokenFor(user: { username: string; password: string }, scope: string): Promise<{ access_token: string; patient?: string }> {
  const verifier = randomBytes(32).toString('base64url');
  const u = new URL(`${srv.baseUrl}/oauth2/authorize`);
  const params = {
    response_type: 'code',
    client_id: 'enforce-app',
    redirect_uri: REDIRECT,
    scope,
    state: 's',
    aud: srv.fhirBase,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  };
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  const back = await new Browser(srv.baseUrl).authorize(u.toString(), user);
  const code = new URL(back.location as string).searchParams.get('code') as string;
  const res = await postForm(`${srv.baseUrl}/oauth2/token`, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, client_id: 'enforce-app', code_verifier: verifier });
  expect(res.status).toBe(200);
  return res.body;
}

const get = (path: string, token?: string, headers: Record<string, string> = {}) =>
  fetch(`${srv.fhirBase}/${path}`, { headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers } });

describe('FHIR API with real tokens', () => {
  it('answers 401 with a Bearer challenge without a token, and serves metadata to anyone', async () => {
    const res = await get('Patient');
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(((await res.json()) as any).resourceType).toBe('OperationOutcome');
    expect((await get('metadata')).status).toBe(200);
    expect((await get('Patient', 'not-a-token')).status).toBe(401);
  });

  it("a patient's token reads their own record and is refused another patient's", async () => {
    const alice = await makeUser(srv, 'patient');
    const other = await srv.repo.create<Patient>({ resourceType: 'Patient', name: [{ family: 'Other' }] });
    const { access_token } = await tokenFor(alice, 'openid fhirUser launch/patient patient/*.rs');
    expect((await get(`Patient/${alice.resourceId}`, access_token)).status).toBe(200);
    const refused = await get(`Patient/${other.id}`, access_token);
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as any).issue[0].code).toBe('forbidden');
    const search = (await (await get('Patient', access_token)).json()) as any;
    expect(search.entry.map((e: any) => e.resource.id)).toEqual([alice.resourceId]);
  });

  it("an ambulance crew's token sees transport requests but not consults", async () => {
    const crew = await makeUser(srv, 'ambulance-crew');
    const subject = await srv.repo.create<Patient>({ resourceType: 'Patient', name: [{ family: 'Carried' }] });
    const request = (code: string) =>
      srv.repo.create<ServiceRequest>({
        resourceType: 'ServiceRequest',
        status: 'active',
        intent: 'order',
        category: [{ coding: [{ system: CAT, code }] }],
        subject: { reference: `Patient/${subject.id}` },
      });
    const consult = await request('consult');
    const transport = await request('transport');
    const { access_token } = await tokenFor(crew, 'openid fhirUser user/*.cruds');
    expect((await get(`ServiceRequest/${transport.id}`, access_token)).status).toBe(200);
    expect((await get(`ServiceRequest/${consult.id}`, access_token)).status).toBe(403);
    expect((await get('Condition', access_token)).status).toBe(403);
  });

  it('passes CORS for registered app origins only', async () => {
    const preflight = await fetch(`${srv.fhirBase}/Patient`, {
      method: 'OPTIONS',
      headers: { origin: 'http://app.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('http://app.example');
    expect(preflight.headers.get('access-control-allow-headers')).toContain('Authorization');
    const stranger = await fetch(`${srv.fhirBase}/metadata`, { headers: { origin: 'http://evil.example' } });
    expect(stranger.headers.get('access-control-allow-origin')).toBeNull();
  });
});
