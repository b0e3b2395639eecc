// SMART Backend Services (client_credentials + private_key_jwt, RS384 / ES384, registered JWKS
// or jwks_uri, jti replay protection, system/ scopes) and the bootstrap confidential client
// (client_secret_basic), with client assertions built by jose.
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerClient } from '../../server/auth/clients.ts';
import { basic, postForm, startAuthTestServer, type AuthTestServer } from './support.ts';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const BOOT_ID = 'monitoring';
const BOOT_SECRET = 'a-long-bootstrap-secret-for-tests';

let srv: AuthTestServer;
let jwksServer: Server;
const keys: Record<string, { privateKey: CryptoKey; jwk: JWK }> = {};

async function keyPair(alg: 'RS384' | 'ES384' | 'RS256') {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: `${alg}-${randomUUID().slice(0, 8)}`, alg };
  return { privateKey, jwk };
}

beforeAll(async () => {
  srv = await startAuthTestServer({ BOOTSTRAP_CLIENT_ID: BOOT_ID, BOOTSTRAP_CLIENT_SECRET: BOOT_SECRET });
  keys.rs = await keyPair('RS384');
  keys.es = await keyPair('ES384');
  keys.remote = await keyPair('ES384');
  await registerClient(srv.db, { clientId: 'backend', kind: 'confidential', jwks: { keys: [keys.rs.jwk, keys.es.jwk] }, scopes: 'system/*.rs system/Observation.cruds', grantTypes: ['client_credentials'] });
  jwksServer = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: [keys.remote.jwk] }));
  });
  await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
  const jwksUri = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
  await registerClient(srv.db, { clientId: 'backend-remote', kind: 'confidential', jwksUri, scopes: 'system/Patient.rs', grantTypes: ['client_credentials'] });
});

afterAll(async () => {
  jwksServer?.close();
  await srv?.stop();
});

async function assertion(clientId: string, key: { privateKey: CryptoKey; jwk: JWK }, o: { aud?: string; exp?: string | number; jti?: string; alg?: string } = {}) {
  return new SignJWT({})
    .setProtectedHeader({ alg: o.alg ?? (key.jwk.alg as string), kid: key.jwk.kid, typ: 'JWT' })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(o.aud ?? `${srv.baseUrl}/oauth2/token`)
    .setExpirationTime(o.exp ?? '4m')
    .setJti(o.jti ?? randomUUID())
    .sign(key.privateKey);
}

const token = (form: Record<string, string>, headers: Record<string, string> = {}) => postForm(`${srv.baseUrl}/oauth2/token`, form, headers);

function ccForm(clientAssertion: string, scope = 'system/*.rs'): Record<string, string> {
  return { grant_type: 'client_credentials', scope, client_assertion_type: ASSERTION_TYPE, client_assertion: clientAssertion };
}

describe('client_credentials with private_key_jwt', () => {
  it('issues a system token for an RS384 and an ES384 assertion', async () => {
    for (const k of [keys.rs, keys.es]) {
      const r = await token(ccForm(await assertion('backend', k), 'system/*.rs system/Observation.cruds'));
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ token_type: 'Bearer', scope: 'system/*.rs system/Observation.cruds' });
      expect(r.body.expires_in).toBeGreaterThan(0);
      expect(r.body.refresh_token).toBeUndefined();
      const ctx = await srv.auth.verifyAccessToken(r.body.access_token);
      expect(ctx).toMatchObject({ subject: 'backend', clientId: 'backend', scopes: ['system/*.rs', 'system/Observation.cruds'] });
      expect(ctx.fhirUser).toBeUndefined();
    }
  });

  it('verifies against the client jwks_uri', async () => {
    const r = await token(ccForm(await assertion('backend-remote', keys.remote), 'system/Patient.rs'));
    expect(r.status).toBe(200);
    expect(r.body.scope).toBe('system/Patient.rs');
  });

  it('refuses a replayed assertion (same jti) with invalid_client', async () => {
    const a = await assertion('backend', keys.es);
    expect((await token(ccForm(a))).status).toBe(200);
    const replay = await token(ccForm(a));
    expect(replay.status).toBe(401);
    expect(replay.body.error).toBe('invalid_client');
  });

  it('refuses a wrong aud, an exp over 5 minutes, an expired assertion, RS256, and a key not registered', async () => {
    const other = await keyPair('ES384');
    const rs256 = await keyPair('RS256');
    await registerClient(srv.db, { clientId: 'backend-256', kind: 'confidential', jwks: { keys: [rs256.jwk] }, scopes: 'system/*.rs', grantTypes: ['client_credentials'] });
    const bad = [
      await assertion('backend', keys.es, { aud: `${srv.fhirBase}` }),
      await assertion('backend', keys.es, { exp: '10m' }),
      await assertion('backend', keys.es, { exp: Math.floor(Date.now() / 1000) - 120 }),
      await assertion('backend', other),
    ];
    for (const a of bad) {
      const r = await token(ccForm(a));
      expect(r.status).toBe(401);
      expect(r.body.error).toBe('invalid_client');
    }
    const r = await token(ccForm(await assertion('backend-256', rs256)));
    expect(r.body.error).toBe('invalid_client');
    const wrongType = await token({ ...ccForm(await assertion('backend', keys.es)), client_assertion_type: 'urn:x' });
    expect(wrongType.body.error).toBe('invalid_client');
  });

  it('grants only the allowed part of the scopes and refuses when nothing is left (invalid_scope)', async () => {
    const wider = await token(ccForm(await assertion('backend', keys.es), 'system/*.cruds user/*.rs'));
    expect(wider.status).toBe(200);
    expect(wider.body.scope.split(' ').sort()).toEqual(['system/*.rs', 'system/Observation.cruds'].sort());
    const none = await token(ccForm(await assertion('backend', keys.es), 'user/*.rs patient/*.rs'));
    expect(none.status).toBe(400);
    expect(none.body.error).toBe('invalid_scope');
  });
});

describe('bootstrap client (client_secret_basic)', () => {
  it('gets a system/*.cruds token with one standard request', async () => {
    const r = await token({ grant_type: 'client_credentials', scope: 'system/*.cruds' }, { authorization: basic(BOOT_ID, BOOT_SECRET) });
    expect(r.status).toBe(200);
    expect(r.body.scope).toBe('system/*.cruds');
    const again = await token({ grant_type: 'client_credentials', scope: 'system/Patient.rs' }, { authorization: basic(BOOT_ID, BOOT_SECRET) });
    expect(again.body.scope).toBe('system/Patient.rs');
  });

  it('refuses a wrong secret with 401 invalid_client and a Basic challenge', async () => {
    const r = await token({ grant_type: 'client_credentials', scope: 'system/*.cruds' }, { authorization: basic(BOOT_ID, 'wrong-secret-wrong-secret') });
    expect(r.status).toBe(401);
    expect(r.body.error).toBe('invalid_client');
    expect(r.headers.get('www-authenticate')).toMatch(/^Basic/);
    expect(JSON.stringify(r.body)).not.toContain('wrong-secret');
  });

  it('can introspect and revoke tokens', async () => {
    const auth = { authorization: basic(BOOT_ID, BOOT_SECRET) };
    const t = (await token({ grant_type: 'client_credentials', scope: 'system/*.rs' }, auth)).body.access_token as string;
    const i = await postForm(`${srv.baseUrl}/oauth2/introspect`, { token: t }, auth);
    expect(i.body).toMatchObject({ active: true, client_id: BOOT_ID, scope: 'system/*.rs', sub: BOOT_ID });
    expect((await postForm(`${srv.baseUrl}/oauth2/revoke`, { token: t }, auth)).status).toBe(200);
    expect((await postForm(`${srv.baseUrl}/oauth2/introspect`, { token: t }, auth)).body).toEqual({ active: false });
    // Revoking garbage is not an error (RFC 7009 §2.2).
    expect((await postForm(`${srv.baseUrl}/oauth2/revoke`, { token: 'garbage' }, auth)).status).toBe(200);
  });

  it('a public client cannot use client_credentials', async () => {
    await registerClient(srv.db, { clientId: 'pub', kind: 'public', redirectUris: ['http://x.example/cb'], scopes: 'user/*.rs' });
    const r = await token({ grant_type: 'client_credentials', scope: 'system/*.rs', client_id: 'pub' });
    expect(r.status).toBe(401);
    expect(r.body.error).toBe('invalid_client');
  });
});

describe('keys', () => {
  it('publishes the signing key in the JWKS and shares it through the database', async () => {
    const jwks = (await (await fetch(`${srv.baseUrl}/oauth2/jwks`)).json()) as { keys: JWK[] };
    expect(jwks.keys.length).toBeGreaterThanOrEqual(1);
    expect(jwks.keys[0]).not.toHaveProperty('d');
    const { rows } = await srv.db.query<{ kid: string }>('SELECT kid FROM auth_key WHERE active');
    expect(jwks.keys.map((k) => k.kid)).toContain(rows[0].kid);
  });
});
