// SMART App Launch driven by a real SMART client (fhirclient, smart-on-fhir/client-js) over real
// HTTP: discovery, standalone launch with the patient picker, EHR launch, PKCE S256, id_token
// with fhirUser, refresh, introspection, revocation.
import { IncomingMessage, ServerResponse } from 'node:http';
import type { Encounter, Organization, Patient } from '@medplum/fhirtypes';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import smart from 'fhirclient';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerClient } from '../../server/auth/clients.ts';
import { Browser, makeUser, postForm, startAuthTestServer, type AuthTestServer } from './support.ts';

const APP = 'http://app.example';
const REDIRECT = `${APP}/callback`;

/** fhirclient's Node adapter over a fake request / response: the app's side of the redirects. */
class MemoryStorage {
  data = new Map<string, unknown>();
  async get(k: string) {
    return this.data.get(k);
  }
  async set(k: string, v: unknown) {
    this.data.set(k, v);
    return v;
  }
  async unset(k: string) {
    return this.data.delete(k);
  }
}

function appRequest(url: string): { req: IncomingMessage; res: ServerResponse & { location?: string } } {
  const u = new URL(url);
  const req = { url: u.pathname + u.search, headers: { host: u.host }, socket: {} } as unknown as IncomingMessage;
  const fake: { location?: string; writeHead(status: number, headers: Record<string, string>): unknown; end(): unknown } = {
    location: undefined,
    writeHead(_status, headers) {
      fake.location = headers.location;
      return fake;
    },
    end() {
      return fake;
    },
  };
  const res = fake as unknown as ServerResponse & { location?: string };
  return { req, res };
}

let srv: AuthTestServer;
let clinician: Awaited<ReturnType<typeof makeUser>>;
let patientUser: Awaited<ReturnType<typeof makeUser>>;
let otherPatientId: string;

beforeAll(async () => {
  srv = await startAuthTestServer();
  await registerClient(srv.db, {
    clientId: 'test-app',
    name: 'Test App',
    kind: 'public',
    redirectUris: [REDIRECT],
    launchUri: `${APP}/launch`,
    scopes: 'openid fhirUser launch launch/patient launch/encounter offline_access online_access patient/*.rs user/*.rs patient/Observation.cruds',
  });
  clinician = await makeUser(srv, 'clinician');
  patientUser = await makeUser(srv, 'patient');
  otherPatientId = (await srv.repo.create<Patient>({ resourceType: 'Patient', name: [{ family: 'Pickme', given: ['Paula'] }] })).id as string;
});

afterAll(async () => {
  await srv?.stop();
});

async function launch(options: { scope: string; launchUrl?: string; user: { username: string; password: string }; patient?: string; storage?: MemoryStorage }) {
  const storage = options.storage ?? new MemoryStorage();
  const { req, res } = appRequest(options.launchUrl ?? `${APP}/launch`);
  await smart(req, res, storage).authorize({ clientId: 'test-app', scope: options.scope, redirectUri: REDIRECT, iss: srv.fhirBase, pkceMode: 'required' });
  expect(res.location).toMatch(/code_challenge_method=S256/);
  const browser = new Browser(srv.baseUrl);
  const back = await browser.authorize(res.location as string, options.user, { patient: options.patient });
  expect(back.location?.startsWith(REDIRECT)).toBe(true);
  const cb = appRequest(back.location as string);
  const client = await smart(cb.req, cb.res, storage).ready();
  return { client, browser, storage, redirect: back.location as string };
}

describe('discovery', () => {
  it('serves smart-configuration with every SMART 2.x field at the root and under /fhir', async () => {
    for (const url of [`${srv.baseUrl}/.well-known/smart-configuration`, `${srv.fhirBase}/.well-known/smart-configuration`]) {
      const res = await fetch(url, { headers: { origin: 'http://elsewhere.example' } });
      expect(res.status).toBe(200);
      expect(res.headers.get('access-control-allow-origin')).toBe('*');
      const c = (await res.json()) as Record<string, any>;
      for (const field of ['issuer', 'jwks_uri', 'authorization_endpoint', 'token_endpoint', 'introspection_endpoint', 'revocation_endpoint', 'capabilities', 'scopes_supported', 'response_types_supported', 'token_endpoint_auth_methods_supported', 'grant_types_supported', 'code_challenge_methods_supported']) {
        expect(c[field], field).toBeDefined();
      }
      expect(c.code_challenge_methods_supported).toEqual(['S256']);
      expect(c.grant_types_supported).toEqual(expect.arrayContaining(['authorization_code', 'client_credentials']));
      expect(c.capabilities).toEqual(expect.arrayContaining(['launch-ehr', 'launch-standalone', 'client-public', 'client-confidential-symmetric', 'client-confidential-asymmetric', 'sso-openid-connect', 'context-ehr-patient', 'context-standalone-patient', 'permission-v1', 'permission-v2', 'permission-offline']));
      expect(c.token_endpoint_auth_signing_alg_values_supported).toEqual(['RS384', 'ES384']);
    }
  });

  it('puts the SMART oauth-uris extension on the CapabilityStatement', async () => {
    const cs = (await (await fetch(`${srv.fhirBase}/metadata`)).json()) as any;
    const ext = cs.rest[0].security.extension.find((e: any) => e.url === 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris');
    const uris = Object.fromEntries(ext.extension.map((e: any) => [e.url, e.valueUri]));
    expect(uris.token).toBe(`${srv.baseUrl}/oauth2/token`);
    expect(uris.authorize).toBe(`${srv.baseUrl}/oauth2/authorize`);
    expect(cs.rest[0].security.service[0].coding[0].code).toBe('SMART-on-FHIR');
  });
});

describe('standalone launch', () => {
  it('a clinician picks a patient; the token carries the patient, the granted scopes, an id_token with fhirUser and a refresh token', async () => {
    const { client, browser } = await launch({
      scope: 'launch/patient openid fhirUser offline_access patient/*.rs patient/Observation.cruds system/*.cruds',
      user: clinician,
      patient: otherPatientId,
    });
    const t = client.state.tokenResponse as Record<string, any>;
    expect(t.token_type).toBe('Bearer');
    expect(t.expires_in).toBeGreaterThan(0);
    expect(t.patient).toBe(otherPatientId);
    expect(t.need_patient_banner).toBe(true);
    expect(t.refresh_token).toBeTruthy();
    // Granted: what was asked and allowed; system/ never in a user flow.
    expect(t.scope.split(' ').sort()).toEqual(['fhirUser', 'launch/patient', 'offline_access', 'openid', 'patient/*.rs', 'patient/Observation.cruds'].sort());
    expect(client.getFhirUser()).toBe(clinician.fhirUser);
    expect(client.getPatientId()).toBe(otherPatientId);

    // The access token and id_token verify against the published JWKS.
    const jwks = createRemoteJWKSet(new URL(`${srv.baseUrl}/oauth2/jwks`));
    const at = await jwtVerify(t.access_token, jwks, { issuer: srv.baseUrl, audience: srv.fhirBase });
    expect(at.payload.patient).toBe(otherPatientId);
    const id = await jwtVerify(t.id_token, jwks, { issuer: srv.baseUrl, audience: 'test-app' });
    expect(id.payload.fhirUser).toBe(`${srv.fhirBase}/${clinician.fhirUser}`);

    // verifyAccessToken turns it into the AuthContext the FHIR doors use.
    const ctx = await srv.auth.verifyAccessToken(t.access_token);
    expect(ctx).toMatchObject({ subject: clinician.id, clientId: 'test-app', fhirUser: clinician.fhirUser, role: 'clinician', patient: otherPatientId });

    // The real client can read with it (and the session cookie is httpOnly, SameSite=Lax).
    const p = (await client.request(`Patient/${otherPatientId}`)) as any;
    expect(p.id).toBe(otherPatientId);
    expect(browser.cookies.has('wl_session')).toBe(true);

    // Refresh rotates the refresh token; the old one is then refused and kills the grant.
    const before = t.refresh_token;
    await client.refresh();
    const t2 = client.state.tokenResponse as Record<string, any>;
    expect(t2.refresh_token).toBeTruthy();
    expect(t2.refresh_token).not.toBe(before);
    expect(t2.patient).toBe(otherPatientId);
    const replay = await postForm(`${srv.baseUrl}/oauth2/token`, { grant_type: 'refresh_token', refresh_token: before, client_id: 'test-app' });
    expect(replay.status).toBe(400);
    expect(replay.body.error).toBe('invalid_grant');
    await expect(srv.auth.verifyAccessToken(t2.access_token)).rejects.toMatchObject({ status: 401, error: 'invalid_token' });
  });

  it('a patient user gets their own patient context without a picker', async () => {
    const { client } = await launch({ scope: 'launch/patient openid fhirUser patient/*.rs user/*.rs', user: patientUser });
    const t = client.state.tokenResponse as Record<string, any>;
    expect(t.patient).toBe(patientUser.resourceId);
    // A patient is never granted user/ scopes.
    expect(t.scope.split(' ')).not.toContain('user/*.rs');
    expect(client.getFhirUser()).toBe(patientUser.fhirUser);
  });

  it("the picker lists only the patients of the clinician's organisation, and a forged choice of another is refused", async () => {
    const orgA = (await srv.repo.create<Organization>({ resourceType: 'Organization', name: 'Picker Hospital A' })).id as string;
    const orgB = (await srv.repo.create<Organization>({ resourceType: 'Organization', name: 'Picker Hospital B' })).id as string;
    const family = `Pickorg${Date.now()}`;
    const ours = await srv.repo.create<Patient>({ resourceType: 'Patient', name: [{ family, given: ['Ours'] }], managingOrganization: { reference: `Organization/${orgA}` } });
    const theirs = await srv.repo.create<Patient>({ resourceType: 'Patient', name: [{ family, given: ['Theirs'] }], managingOrganization: { reference: `Organization/${orgB}` } });
    const doctorA = await makeUser(srv, 'clinician', { organization: `Organization/${orgA}` });

    const { req, res } = appRequest(`${APP}/launch`);
    await smart(req, res, new MemoryStorage()).authorize({ clientId: 'test-app', scope: 'launch/patient openid fhirUser patient/*.rs', redirectUri: REDIRECT, iss: srv.fhirBase, pkceMode: 'required' });
    const browser = new Browser(srv.baseUrl);
    const picker = await browser.authorize(res.location as string, doctorA);
    expect(picker.html).toContain('action="/oauth2/pick-patient"');
    const searched = await browser.get(`${srv.baseUrl}/oauth2/pick-patient?request=${encodeURIComponent((await import('./support.ts')).formFields(picker.html, '/oauth2/pick-patient').request)}&q=${family}`);
    expect(searched.html).toContain(ours.id as string);
    expect(searched.html).not.toContain(theirs.id as string);

    // Posting the other organisation's patient id by hand gets the picker back with an error.
    const forged = await browser.submit(searched, '/oauth2/pick-patient', { patient: theirs.id as string });
    expect(forged.location).toBeUndefined();
    expect(forged.html).toContain('Choose a patient from the list.');
    const chosen = await browser.submit(forged, '/oauth2/pick-patient', { patient: ours.id as string });
    const done = chosen.location ? chosen : await browser.submit(chosen, '/oauth2/consent', { decision: 'allow' });
    expect(done.location?.startsWith(REDIRECT)).toBe(true);
  });

  it('the sign-in page is plain HTML with a CSRF-protected form and safe cookies', async () => {
    const { req, res } = appRequest(`${APP}/launch`);
    await smart(req, res, new MemoryStorage()).authorize({ clientId: 'test-app', scope: 'openid fhirUser user/*.rs', redirectUri: REDIRECT, iss: srv.fhirBase });
    const browser = new Browser(srv.baseUrl);
    const page = await browser.get(res.location as string);
    expect(page.status).toBe(200);
    expect(page.html).toMatch(/<label for="username">/);
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    // A post without the CSRF token is refused.
    const forged = await browser.request('POST', `${srv.baseUrl}/oauth2/signin`, { username: clinician.username, password: clinician.password, csrf: 'x'.repeat(43) });
    expect(forged.status).toBe(403);
    const signedIn = await browser.request('POST', `${srv.baseUrl}/oauth2/signin`, {
      ...(await import('./support.ts')).formFields(page.html, '/oauth2/signin'),
      username: clinician.username,
      password: clinician.password,
    });
    expect(signedIn.status).toBe(303);
    const cookie = signedIn.headers.getSetCookie().find((c) => c.startsWith('wl_session='));
    expect(cookie).toMatch(/httponly/i);
    expect(cookie).toMatch(/samesite=lax/i);
  });

  it('denying consent sends access_denied back to the app with its state', async () => {
    const storage = new MemoryStorage();
    const { req, res } = appRequest(`${APP}/launch`);
    await smart(req, res, storage).authorize({ clientId: 'test-app', scope: 'openid fhirUser user/*.rs', redirectUri: REDIRECT, iss: srv.fhirBase });
    const back = await new Browser(srv.baseUrl).authorize(res.location as string, clinician, { consent: 'deny' });
    const u = new URL(back.location as string);
    expect(u.searchParams.get('error')).toBe('access_denied');
    expect(u.searchParams.get('state')).toBe(new URL(res.location as string).searchParams.get('state'));
  });
});

describe('sign-out from the app (OpenID Connect RP-initiated logout)', () => {
  async function signedInApp() {
    const { client, browser } = await launch({ scope: 'openid fhirUser user/*.rs', user: clinician });
    const idToken = (client.state.tokenResponse as Record<string, any>).id_token as string;
    expect(idToken).toBeTruthy();
    return { browser, idToken };
  }

  /** Is this browser still signed in? A new authorization goes straight through (consent) instead of the sign-in page. */
  async function stillSignedIn(browser: Browser): Promise<boolean> {
    const { req, res } = appRequest(`${APP}/launch`);
    await smart(req, res, new MemoryStorage()).authorize({ clientId: 'test-app', scope: 'openid fhirUser user/*.rs', redirectUri: REDIRECT, iss: srv.fhirBase });
    const p = await browser.get(res.location as string);
    return !p.html.includes('action="/oauth2/signin"');
  }

  it('is advertised as end_session_endpoint', async () => {
    const c = (await (await fetch(`${srv.baseUrl}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(c.end_session_endpoint).toBe(`${srv.baseUrl}/oauth2/logout`);
  });

  it('with the id_token_hint it ends the sign-in session and returns to the app with its state', async () => {
    const { browser, idToken } = await signedInApp();
    expect(await stillSignedIn(browser)).toBe(true);
    const out = await browser.get(`${srv.baseUrl}/oauth2/logout?` + new URLSearchParams({ id_token_hint: idToken, post_logout_redirect_uri: `${APP}/signed-out`, state: 'xyz' }));
    expect(out.status).toBe(303);
    expect(out.location).toBe(`${APP}/signed-out?state=xyz`);
    expect(await stillSignedIn(browser)).toBe(false);
  });

  it('without a hint it asks the person first (a link elsewhere cannot sign anyone out)', async () => {
    const { browser } = await signedInApp();
    const ask = await browser.get(`${srv.baseUrl}/oauth2/logout?client_id=test-app&post_logout_redirect_uri=${encodeURIComponent(APP + '/bye')}`);
    expect(ask.status).toBe(200);
    expect(ask.html).toContain('Sign out?');
    expect(await stillSignedIn(browser)).toBe(true);
    const done = await browser.submit(ask, '/oauth2/signout', {});
    expect(done.location).toBe(`${APP}/bye`);
    expect(await stillSignedIn(browser)).toBe(false);
  });

  it('refuses a redirect to an unregistered origin and a hint this server did not sign', async () => {
    const { browser, idToken } = await signedInApp();
    const elsewhere = await browser.get(`${srv.baseUrl}/oauth2/logout?` + new URLSearchParams({ id_token_hint: idToken, post_logout_redirect_uri: 'https://evil.example/' }));
    expect(elsewhere.status).toBe(400);
    expect(elsewhere.html).toContain('not registered for this application');
    const [h, p] = idToken.split('.');
    const forged = await browser.get(`${srv.baseUrl}/oauth2/logout?id_token_hint=${h}.${p}.${'A'.repeat(86)}`);
    expect(forged.status).toBe(400);
    expect(await stillSignedIn(browser)).toBe(true);
  });
});

describe('EHR launch', () => {
  it('a launch registered by a staff member carries its patient and encounter into the token', async () => {
    const encounter = await srv.repo.create<Encounter>({ resourceType: 'Encounter', status: 'in-progress', class: { code: 'IMP' }, subject: { reference: `Patient/${otherPatientId}` } });
    // The staff member's own token (from a standalone sign-in) registers the launch.
    const { client: staff } = await launch({ scope: 'openid fhirUser user/*.rs', user: clinician });
    const reg = await fetch(`${srv.baseUrl}/oauth2/launch`, {
      method: 'POST',
      headers: { authorization: `Bearer ${staff.state.tokenResponse!.access_token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ patient: otherPatientId, encounter: encounter.id, client_id: 'test-app' }),
    });
    expect(reg.status).toBe(201);
    const { launch: launchId, launch_url } = (await reg.json()) as { launch: string; launch_url: string };
    expect(launch_url).toBe(`${APP}/launch?iss=${encodeURIComponent(srv.fhirBase)}&launch=${launchId}`);

    const { client } = await launch({ scope: 'launch openid fhirUser patient/*.rs online_access', launchUrl: launch_url, user: clinician });
    const t = client.state.tokenResponse as Record<string, any>;
    expect(t.patient).toBe(otherPatientId);
    expect(t.encounter).toBe(encounter.id);
    expect(t.need_patient_banner).toBe(false);
    expect(t.scope.split(' ')).toEqual(expect.arrayContaining(['launch', 'patient/*.rs', 'online_access']));
    expect(t.refresh_token).toBeTruthy();
  });

  it('refuses an unknown launch and a launch by a patient user', async () => {
    const { req, res } = appRequest(`${APP}/launch?iss=${encodeURIComponent(srv.fhirBase)}&launch=nope`);
    await smart(req, res, new MemoryStorage()).authorize({ clientId: 'test-app', scope: 'launch patient/*.rs', redirectUri: REDIRECT });
    const back = await new Browser(srv.baseUrl).get(res.location as string);
    expect(new URL(back.location as string).searchParams.get('error')).toBe('invalid_request');

    const { client: p } = await launch({ scope: 'openid fhirUser patient/*.rs', user: patientUser });
    const reg = await fetch(`${srv.baseUrl}/oauth2/launch`, {
      method: 'POST',
      headers: { authorization: `Bearer ${p.state.tokenResponse!.access_token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ patient: otherPatientId }),
    });
    expect(reg.status).toBe(403);
  });
});

describe('introspection and revocation', () => {
  it('introspects an active token, revokes it, then reports it inactive', async () => {
    const { client } = await launch({ scope: 'openid fhirUser user/*.rs', user: clinician });
    const token = client.state.tokenResponse!.access_token as string;
    const bearer = { authorization: `Bearer ${token}` };
    const active = await postForm(`${srv.baseUrl}/oauth2/introspect`, { token }, bearer);
    expect(active.status).toBe(200);
    expect(active.body).toMatchObject({ active: true, client_id: 'test-app', scope: 'openid fhirUser user/*.rs', fhirUser: `${srv.fhirBase}/${clinician.fhirUser}` });
    const revoked = await postForm(`${srv.baseUrl}/oauth2/revoke`, { token, client_id: 'test-app' });
    expect(revoked.status).toBe(200);
    await expect(srv.auth.verifyAccessToken(token)).rejects.toMatchObject({ status: 401, error: 'invalid_token' });
    const { client: other } = await launch({ scope: 'openid fhirUser user/*.rs', user: clinician });
    const after = await postForm(`${srv.baseUrl}/oauth2/introspect`, { token }, { authorization: `Bearer ${other.state.tokenResponse!.access_token}` });
    expect(after.body).toEqual({ active: false });
  });

  it('introspection without client authentication or bearer token is refused', async () => {
    const res = await postForm(`${srv.baseUrl}/oauth2/introspect`, { token: 'x' });
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('invalid_client');
  });
});
