// Signing in over HTTP for the workflow tests: the authorization-code flow with PKCE through the
// authorization server's own pages (tests/auth/support.ts Browser), and FHIR calls with the token.
import { createHash, randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import { Browser, postForm, type AuthTestServer } from '../auth/support.ts';

export const REDIRECT = 'http://app.example/callback';
export const CLIENT = 'workflow-app';
export const SCOPE = 'openid fhirUser user/*.cruds';

/** An access token for a user, got the way an app gets one (authorize page, code, token endpoint). */
export async function signIn(srv: AuthTestServer, user: { username: string; password: string }): Promise<string> {
  const verifier = randomBytes(32).toString('base64url');
  const u = new URL(`${srv.baseUrl}/oauth2/authorize`);
  const params = {
    response_type: 'code',
    client_id: CLIENT,
    redirect_uri: REDIRECT,
    scope: SCOPE,
    state: 's',
    aud: srv.fhirBase,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  };
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  const back = await new Browser(srv.baseUrl).authorize(u.toString(), user);
  expect(back.location, back.html).toBeTruthy();
  const code = new URL(back.location as string).searchParams.get('code') as string;
  const res = await postForm(`${srv.baseUrl}/oauth2/token`, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, client_id: CLIENT, code_verifier: verifier });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.access_token as string;
}

/** A FHIR call with a bearer token. */
export async function fhirCall(srv: AuthTestServer, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: 'application/fhir+json' };
  if (body !== undefined) headers['content-type'] = 'application/fhir+json';
  const res = await fetch(`${srv.fhirBase}/${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}
