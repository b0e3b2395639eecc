// What the authorization server refuses, each with the status and error the specs name
// (RFC 6749 §4.1.2.1 / §5.2, RFC 7636 §4.4.1 / §4.6, RFC 6750 §3.1, SMART App Launch 2.2):
// wrong redirect_uri, PKCE missing / plain / wrong, reused code, expired or tampered tokens,
// scope escalation, locked accounts, bad TOTP codes, rate limits, idle sessions.
import { createHash, randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerClient } from '../../server/auth/clients.ts';
import { totpCode, generateTotpSecret, currentStep, hotp } from '../../server/auth/totp.ts';
import { Browser, formFields, makeUser, postForm, startAuthTestServer, type AuthTestServer } from './support.ts';

const REDIRECT = 'http://app.example/callback';
let srv: AuthTestServer;
let user: Awaited<ReturnType<typeof makeUser>>;

beforeAll(async () => {
  srv = await startAuthTestServer({ RATE_LIMIT_TOKEN_PER_CLIENT: '25', SIGNIN_MAX_FAILURES: '3' });
  await registerClient(srv.db, { clientId: 'neg-app', kind: 'public', redirectUris: [REDIRECT], scopes: 'openid fhirUser offline_access user/*.rs patient/*.rs', trusted: true });
  user = await makeUser(srv, 'nurse');
});

afterAll(async () => {
  await srv?.stop();
});

function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

function authorizeUrl(params: Record<string, string | undefined>): string {
  const u = new URL(`${srv.baseUrl}/oauth2/authorize`);
  const all: Record<string, string | undefined> = {
    response_type: 'code',
    client_id: 'neg-app',
    redirect_uri: REDIRECT,
    scope: 'openid fhirUser offline_access user/*.rs',
    state: 'st-1',
    aud: srv.fhirBase,
    code_challenge_method: 'S256',
    ...params,
  };
  for (const [k, v] of Object.entries(all)) if (v !== undefined) u.searchParams.set(k, v);
  return u.toString();
}

/** Runs the browser part and returns the code, with the verifier to exchange it. */
async function getCode(scope?: string, who = user) {
  const p = pkce();
  const back = await new Browser(srv.baseUrl).authorize(authorizeUrl(scope ? { code_challenge: p.challenge, scope } : { code_challenge: p.challenge }), who);
  const u = new URL(back.location as string);
  expect(u.searchParams.get('error')).toBeNull();
  return { code: u.searchParams.get('code') as string, verifier: p.verifier };
}

const token = (form: Record<string, string>) => postForm(`${srv.baseUrl}/oauth2/token`, form);

describe('authorization request', () => {
  it('shows an error page, and never redirects, for an unregistered redirect_uri or client', async () => {
    const b = new Browser(srv.baseUrl);
    const wrong = await b.request('GET', authorizeUrl({ redirect_uri: 'http://evil.example/cb', code_challenge: pkce().challenge }));
    expect(wrong.status).toBe(400);
    expect(wrong.location).toBeUndefined();
    const prefix = await b.request('GET', authorizeUrl({ redirect_uri: REDIRECT + '/x', code_challenge: pkce().challenge }));
    expect(prefix.status).toBe(400);
    const unknown = await b.request('GET', authorizeUrl({ client_id: 'nobody', code_challenge: pkce().challenge }));
    expect(unknown.status).toBe(400);
    expect(unknown.location).toBeUndefined();
  });

  it('refuses a missing code_challenge and the plain method with invalid_request', async () => {
    const b = new Browser(srv.baseUrl);
    for (const params of [{ code_challenge: undefined }, { code_challenge: pkce().verifier, code_challenge_method: 'plain' }]) {
      const r = await b.request('GET', authorizeUrl(params));
      expect(r.status).toBe(302);
      const u = new URL(r.location as string);
      expect(u.origin + u.pathname).toBe(REDIRECT);
      expect(u.searchParams.get('error')).toBe('invalid_request');
      expect(u.searchParams.get('state')).toBe('st-1');
    }
  });

  it('refuses a wrong aud and an unsupported response_type', async () => {
    const b = new Browser(srv.baseUrl);
    const aud = await b.request('GET', authorizeUrl({ aud: 'http://other.example/fhir', code_challenge: pkce().challenge }));
    expect(new URL(aud.location as string).searchParams.get('error')).toBe('invalid_request');
    const rt = await b.request('GET', authorizeUrl({ response_type: 'token', code_challenge: pkce().challenge }));
    expect(new URL(rt.location as string).searchParams.get('error')).toBe('unsupported_response_type');
  });

  it('grants only what the client may have: scope escalation is cut back', async () => {
    const { code, verifier } = await getCode('openid fhirUser user/*.cruds system/*.cruds user/Observation.rs?category=vital-signs');
    const r = await token({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: REDIRECT, client_id: 'neg-app' });
    expect(r.status).toBe(200);
    expect(r.body.scope.split(' ').sort()).toEqual(['fhirUser', 'openid', 'user/*.rs'].sort());
  });
});

describe('token endpoint: authorization_code', () => {
  it('refuses a missing code_verifier (invalid_request) and a wrong one (invalid_grant)', async () => {
    const a = await getCode();
    const missing = await token({ grant_type: 'authorization_code', code: a.code, redirect_uri: REDIRECT, client_id: 'neg-app' });
    expect(missing.status).toBe(400);
    expect(missing.body.error).toBe('invalid_request');
    const b = await getCode();
    const wrong = await token({ grant_type: 'authorization_code', code: b.code, code_verifier: pkce().verifier, redirect_uri: REDIRECT, client_id: 'neg-app' });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error).toBe('invalid_grant');
    expect(wrong.headers.get('cache-control')).toBe('no-store');
  });

  it('refuses a redirect_uri that differs from the authorization request', async () => {
    const a = await getCode();
    const r = await token({ grant_type: 'authorization_code', code: a.code, code_verifier: a.verifier, redirect_uri: 'http://app.example/other', client_id: 'neg-app' });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_grant');
  });

  it('refuses a reused code and revokes the tokens issued from it', async () => {
    const a = await getCode();
    const form = { grant_type: 'authorization_code', code: a.code, code_verifier: a.verifier, redirect_uri: REDIRECT, client_id: 'neg-app' };
    const first = await token(form);
    expect(first.status).toBe(200);
    await srv.auth.verifyAccessToken(first.body.access_token);
    const again = await token(form);
    expect(again.status).toBe(400);
    expect(again.body.error).toBe('invalid_grant');
    await expect(srv.auth.verifyAccessToken(first.body.access_token)).rejects.toMatchObject({ status: 401, error: 'invalid_token' });
    const refresh = await token({ grant_type: 'refresh_token', refresh_token: first.body.refresh_token, client_id: 'neg-app' });
    expect(refresh.body.error).toBe('invalid_grant');
  });

  it('refuses a refresh that asks for more than the original grant (invalid_scope)', async () => {
    const a = await getCode('openid fhirUser offline_access user/Patient.rs');
    const first = await token({ grant_type: 'authorization_code', code: a.code, code_verifier: a.verifier, redirect_uri: REDIRECT, client_id: 'neg-app' });
    expect(first.body.scope).toContain('user/Patient.rs');
    const wider = await token({ grant_type: 'refresh_token', refresh_token: first.body.refresh_token, scope: 'user/*.rs', client_id: 'neg-app' });
    expect(wider.status).toBe(400);
    expect(wider.body.error).toBe('invalid_scope');
  });

  it('refuses unknown grant types and missing client identification', async () => {
    expect((await token({ grant_type: 'password', client_id: 'neg-app' })).body.error).toBe('unsupported_grant_type');
    const anon = await token({ grant_type: 'authorization_code', code: 'x' });
    expect(anon.status).toBe(401);
    expect(anon.body.error).toBe('invalid_client');
  });
});

describe('access tokens', () => {
  it('refuses an expired token and a tampered one with 401 invalid_token', async () => {
    const key = srv.auth.services.keys.signingKey;
    const now = Math.floor(Date.now() / 1000);
    const expired = await new SignJWT({ client_id: 'neg-app', scope: 'user/*.rs' })
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt' })
      .setIssuer(srv.baseUrl)
      .setAudience(srv.fhirBase)
      .setSubject('someone')
      .setJti('j-expired')
      .setIssuedAt(now - 7200)
      .setExpirationTime(now - 3600)
      .sign(key.privateKey);
    await expect(srv.auth.verifyAccessToken(expired)).rejects.toMatchObject({ status: 401, error: 'invalid_token', description: 'The access token has expired' });

    const a = await getCode();
    const good = (await token({ grant_type: 'authorization_code', code: a.code, code_verifier: a.verifier, redirect_uri: REDIRECT, client_id: 'neg-app' })).body.access_token as string;
    const [h, p, sig] = good.split('.');
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    claims.scope = 'user/*.cruds';
    const tampered = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${sig}`;
    await expect(srv.auth.verifyAccessToken(tampered)).rejects.toMatchObject({ status: 401, error: 'invalid_token' });
    await expect(srv.auth.verifyAccessToken('not.a.jwt')).rejects.toMatchObject({ status: 401, error: 'invalid_token' });
    // A token signed by someone else's key with our kid.
    const { privateKey } = await (await import('jose')).generateKeyPair('RS256');
    const forged = await new SignJWT({ client_id: 'neg-app', scope: 'user/*.rs' })
      .setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: 'at+jwt' })
      .setIssuer(srv.baseUrl)
      .setAudience(srv.fhirBase)
      .setSubject('x')
      .setJti('j-forged')
      .setExpirationTime('5m')
      .sign(privateKey);
    await expect(srv.auth.verifyAccessToken(forged)).rejects.toMatchObject({ status: 401, error: 'invalid_token' });
  });
});

describe('sign-in', () => {
  async function signInPage(b: Browser) {
    const p = await b.get(authorizeUrl({ code_challenge: pkce().challenge }));
    expect(p.html).toContain('action="/oauth2/signin"');
    return p;
  }

  it('locks an account after repeated failures; the right password is then refused too', async () => {
    const victim = await makeUser(srv, 'clinician');
    const b = new Browser(srv.baseUrl);
    const page = await signInPage(b);
    const fields = formFields(page.html, '/oauth2/signin');
    for (let i = 0; i < 2; i++) {
      const r = await b.request('POST', `${srv.baseUrl}/oauth2/signin`, { ...fields, username: victim.username, password: 'wrong-password' });
      expect(r.status).toBe(401);
    }
    const third = await b.request('POST', `${srv.baseUrl}/oauth2/signin`, { ...fields, username: victim.username, password: 'wrong-password' });
    expect(third.status).toBe(423);
    const right = await b.request('POST', `${srv.baseUrl}/oauth2/signin`, { ...fields, username: victim.username, password: victim.password });
    expect(right.status).toBe(423);
    expect(right.html).toContain('locked');
    expect(b.cookies.has('wl_session')).toBe(false);
  });

  it('requires a valid TOTP code when the user has one, and never accepts a code twice', async () => {
    const secret = generateTotpSecret();
    const u = await makeUser(srv, 'department-head', { totpSecret: secret });
    const b = new Browser(srv.baseUrl);
    const fields = formFields((await signInPage(b)).html, '/oauth2/signin');
    const none = await b.request('POST', `${srv.baseUrl}/oauth2/signin`, { ...fields, username: u.username, password: u.password });
    expect(none.status).toBe(401);
    const wrongCode = hotp(secret, currentStep() + 5);
    const bad = await b.request('POST', `${srv.baseUrl}/oauth2/signin`, { ...fields, username: u.username, password: u.password, otp: wrongCode });
    expect(bad.status).toBe(401);
    const code = totpCode(secret);
    const good = await b.request('POST', `${srv.baseUrl}/oauth2/signin`, { ...fields, username: u.username, password: u.password, otp: code });
    expect(good.status).toBe(303);
    const b2 = new Browser(srv.baseUrl);
    const fields2 = formFields((await signInPage(b2)).html, '/oauth2/signin');
    const replay = await b2.request('POST', `${srv.baseUrl}/oauth2/signin`, { ...fields2, username: u.username, password: u.password, otp: code });
    expect(replay.status).toBe(401);
  });

  it('an administrator without two-factor sign-in set up is refused', async () => {
    const admin = await makeUser(srv, 'admin');
    const b = new Browser(srv.baseUrl);
    const fields = formFields((await signInPage(b)).html, '/oauth2/signin');
    const r = await b.request('POST', `${srv.baseUrl}/oauth2/signin`, { ...fields, username: admin.username, password: admin.password });
    expect(r.status).toBe(403);
  });

  it('limits sign-in attempts per IP with 429 and Retry-After', async () => {
    const b = new Browser(srv.baseUrl);
    b.extraHeaders['x-forwarded-for'] = '203.0.113.77';
    const fields = formFields((await signInPage(b)).html, '/oauth2/signin');
    // The limit (30 a minute) counts in fixed one-minute windows: if the attempts straddle a
    // window boundary the count restarts, so allow up to two windows' worth before the 429.
    let last;
    for (let i = 0; i < 62; i++) {
      last = await b.request('POST', `${srv.baseUrl}/oauth2/signin`, { ...fields, username: 'nobody-here', password: 'x' });
      if (last.status === 429) break;
    }
    expect(last!.status).toBe(429);
    expect(Number(last!.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('an idle session ends: the next authorization asks to sign in again', async () => {
    const b = new Browser(srv.baseUrl);
    const p = pkce();
    const back = await b.authorize(authorizeUrl({ code_challenge: p.challenge }), user);
    expect(back.location).toContain('code=');
    await srv.db.query(`UPDATE auth_session SET last_seen = now() - interval '16 minutes'`);
    const again = await b.get(authorizeUrl({ code_challenge: pkce().challenge }));
    expect(again.location).toBeUndefined();
    expect(again.html).toContain('action="/oauth2/signin"');
  });

  it('changes a password on the account page', async () => {
    const u = await makeUser(srv, 'receptionist');
    const b = new Browser(srv.baseUrl);
    await b.authorize(authorizeUrl({ code_challenge: pkce().challenge }), u);
    const account = await b.get(`${srv.baseUrl}/oauth2/account`);
    expect(account.status).toBe(200);
    const wrong = await b.submit(account, '/oauth2/account/password', { current: 'not-it-at-all', next: 'a-new-password-1' });
    expect(wrong.status).toBe(400);
    const ok = await b.submit(account, '/oauth2/account/password', { current: u.password, next: 'a-new-password-1' });
    expect(ok.status).toBe(200);
    const b2 = new Browser(srv.baseUrl);
    const back = await b2.authorize(authorizeUrl({ code_challenge: pkce().challenge }), { username: u.username, password: 'a-new-password-1' });
    expect(back.location).toContain('code=');
  });
});

describe('token endpoint rate limit', () => {
  it('answers 429 with Retry-After past the per-client limit', async () => {
    await registerClient(srv.db, { clientId: 'busy-app', kind: 'public', redirectUris: [REDIRECT], scopes: 'user/*.rs' });
    // Fixed one-minute windows: allow a window boundary in the middle (see the sign-in test).
    let last;
    for (let i = 0; i < 52; i++) {
      last = await token({ grant_type: 'authorization_code', code: 'nope', code_verifier: pkce().verifier, redirect_uri: REDIRECT, client_id: 'busy-app' });
      if (last.status === 429) break;
    }
    expect(last!.status).toBe(429);
    expect(last!.body.error).toBeDefined();
    expect(Number(last!.headers.get('retry-after'))).toBeGreaterThan(0);
  });
});
