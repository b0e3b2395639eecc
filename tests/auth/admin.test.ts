// Demo seed, the admin API (clients, with an admin's token) and the admin command line.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { totpCode } from '../../server/auth/totp.ts';
import type { DemoAccount } from '../../server/auth/index.ts';
import { Browser, postForm, startAuthTestServer, type AuthTestServer } from './support.ts';
import { createHash, randomBytes } from 'node:crypto';

let srv: AuthTestServer;
let demo: DemoAccount[];

beforeAll(async () => {
  srv = await startAuthTestServer();
  demo = await srv.auth.seedDemo();
});

afterAll(async () => {
  await srv?.stop();
});

async function signInToken(account: { username: string; password: string; totpSecret?: string }, clientId = 'wardlink-ui') {
  // Each TOTP code is accepted once: let this sign-in use the current one again.
  if (account.totpSecret) await srv.db.query('UPDATE auth_user SET totp_last_step = NULL WHERE username = $1', [account.username]);
  const verifier = randomBytes(32).toString('base64url');
  const u = new URL(`${srv.baseUrl}/oauth2/authorize`);
  const redirect = `${srv.baseUrl}/app/callback`;
  for (const [k, v] of Object.entries({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: redirect,
    scope: 'openid fhirUser user/*.cruds',
    state: 's',
    aud: srv.fhirBase,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  }))
    u.searchParams.set(k, v);
  const back = await new Browser(srv.baseUrl).authorize(u.toString(), { ...account, otp: account.totpSecret ? totpCode(account.totpSecret) : undefined });
  if (!back.location) throw new Error(`sign-in did not finish: ${back.status} ${back.html.slice(0, 1500)}`);
  const code = new URL(back.location).searchParams.get('code') as string;
  const r = await postForm(`${srv.baseUrl}/oauth2/token`, { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: redirect, client_id: clientId });
  expect(r.status).toBe(200);
  return r.body.access_token as string;
}

describe('demo seed', () => {
  it('creates one admin (with TOTP) and one user per role, each linked to a FHIR resource, and the UI client', async () => {
    expect(demo.map((d) => d.role).sort()).toEqual(['admin', 'ambulance-crew', 'clinician', 'department-head', 'dispatcher', 'nurse', 'patient', 'receptionist']);
    expect(demo.find((d) => d.role === 'admin')?.totpSecret).toBeTruthy();
    for (const d of demo) {
      const [type, id] = d.fhirUser.split('/');
      expect(type).toBe(d.role === 'patient' ? 'Patient' : 'Practitioner');
      const stored = await srv.repo.readResource(type, id);
      // Credentials never reach FHIR content.
      expect(JSON.stringify(stored)).not.toContain(d.password);
    }
    expect(await srv.auth.seedDemo()).toEqual([]);
    const { rows } = await srv.db.query<{ redirect_uris: string[]; trusted: boolean }>(`SELECT redirect_uris, trusted FROM auth_client WHERE client_id = 'wardlink-ui'`);
    expect(rows[0].redirect_uris).toContain('http://localhost:8080/app/callback');
    expect(rows[0].trusted).toBe(true);
  });

  it('the demo admin signs in through the UI client with a TOTP code', async () => {
    const admin = demo.find((d) => d.role === 'admin') as DemoAccount;
    const ctx = await srv.auth.verifyAccessToken(await signInToken(admin));
    expect(ctx.role).toBe('admin');
    expect(ctx.fhirUser).toBe(admin.fhirUser);
    expect(ctx.organization).toMatch(/^Organization\//);
  });
});

describe('admin API', () => {
  it('registers and lists clients with an admin token; refuses other roles', async () => {
    const admin = demo.find((d) => d.role === 'admin') as DemoAccount;
    const adminToken = await signInToken(admin);
    const res = await fetch(`${srv.baseUrl}/oauth2/clients`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: 'lab-app', client_name: 'Lab', token_endpoint_auth_method: 'client_secret_basic', client_secret: 'lab-secret-lab-secret', scope: 'system/Observation.cruds', grant_types: ['client_credentials'] }),
    });
    expect(res.status).toBe(201);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ client_id: 'lab-app', token_endpoint_auth_method: 'client_secret_basic' });
    expect(JSON.stringify(body)).not.toContain('lab-secret');
    const list = (await (await fetch(`${srv.baseUrl}/oauth2/clients`, { headers: { authorization: `Bearer ${adminToken}` } })).json()) as { clients: { client_id: string }[] };
    expect(list.clients.map((c) => c.client_id)).toContain('lab-app');

    const nurse = demo.find((d) => d.role === 'nurse') as DemoAccount;
    const denied = await fetch(`${srv.baseUrl}/oauth2/clients`, { headers: { authorization: `Bearer ${await signInToken(nurse)}` } });
    expect(denied.status).toBe(403);
    const anon = await fetch(`${srv.baseUrl}/oauth2/clients`);
    expect(anon.status).toBe(401);
    expect(anon.headers.get('www-authenticate')).toMatch(/^Bearer/);
  });
});

describe('admin command line', () => {
  // PGlite serves one connection, held by the test server: the CLI runs against real PostgreSQL only.
  it.skipIf(!process.env.DATABASE_URL)('creates a user, resets a password and registers a backend client', async () => {
    const run = (...args: string[]) =>
      promisify(execFile)(process.execPath, ['server/admin/cli.ts', ...args], { env: { ...process.env, BASE_URL: srv.baseUrl, DATABASE_URL: srv.connectionString, LOG_LEVEL: 'silent' } });
    const created = await run('create-user', '--username', 'cli-doc', '--role', 'clinician', '--name', 'Cli Doctor');
    expect(created.stdout).toMatch(/Created cli-doc \(clinician\) linked to Practitioner\//);
    const password = /Password: (\S+)/.exec(created.stdout)?.[1] as string;
    expect(password).toBeTruthy();
    await signInToken({ username: 'cli-doc', password });
    const reset = await run('reset-password', 'cli-doc', '--password', 'brand-new-password');
    expect(reset.stdout).toContain('reset');
    await signInToken({ username: 'cli-doc', password: 'brand-new-password' });
    const reg = await run('register-client', '--client-id', 'cli-backend', '--kind', 'confidential', '--scope', 'system/*.rs', '--jwks-uri', 'https://example.org/jwks.json', '--grant-types', 'client_credentials');
    expect(JSON.parse(reg.stdout)).toMatchObject({ client_id: 'cli-backend', token_endpoint_auth_method: 'private_key_jwt' });
  });
});

