// A small SMART App Launch client (standalone launch, authorization code + PKCE S256) for this
// server only: discovery, the redirect to /oauth2/authorize, the code exchange, refresh and
// revocation. Kept to what the app needs so the initial bundle stays small (fhirclient would
// bring its own HTTP and storage layers).
import { CLIENT_ID, FHIR_BASE, ORIGIN, REDIRECT_URI, SCOPES, SIGNED_OUT_URI } from '../config.ts';

export interface SmartConfiguration {
  authorization_endpoint: string;
  token_endpoint: string;
  revocation_endpoint?: string;
}

export interface TokenSet {
  accessToken: string;
  refreshToken?: string;
  idToken?: string;
  scope: string;
  /** Wall-clock ms when the access token expires (for a reload); timers use monotonic time. */
  expiresAt: number;
}

const PENDING_KEY = 'wl.auth.pending';

let discovered: Promise<SmartConfiguration> | undefined;

export function smartConfiguration(): Promise<SmartConfiguration> {
  discovered ??= fetch(`${ORIGIN}/.well-known/smart-configuration`, { headers: { accept: 'application/json' } }).then(async (r) => {
    if (!r.ok) throw new Error(`smart-configuration: HTTP ${r.status}`);
    return (await r.json()) as SmartConfiguration;
  });
  discovered.catch(() => (discovered = undefined));
  return discovered;
}

function base64url(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString(bytes = 32): string {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

async function challengeOf(verifier: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** Sends the browser to the server's sign-in; `returnTo` is where the app goes back afterwards. */
export async function beginSignIn(returnTo: string): Promise<void> {
  const config = await smartConfiguration();
  const verifier = randomString(48);
  const state = randomString(16);
  sessionStorage.setItem(PENDING_KEY, JSON.stringify({ verifier, state, returnTo }));
  const url = new URL(config.authorization_endpoint);
  const params: Record<string, string> = {
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT_URI,
    scope: SCOPES,
    state,
    aud: FHIR_BASE,
    code_challenge: await challengeOf(verifier),
    code_challenge_method: 'S256',
  };
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  location.assign(url.toString());
}

export class SignInError extends Error {}

async function tokenRequest(form: Record<string, string>): Promise<TokenSet> {
  const config = await smartConfiguration();
  const res = await fetch(config.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ ...form, client_id: CLIENT_ID }),
  });
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (!res.ok || typeof body.access_token !== 'string') {
    throw new SignInError(String(body.error_description ?? body.error ?? `token endpoint answered ${res.status}`));
  }
  return {
    accessToken: body.access_token,
    refreshToken: typeof body.refresh_token === 'string' ? body.refresh_token : form.refresh_token,
    idToken: typeof body.id_token === 'string' ? body.id_token : undefined,
    scope: String(body.scope ?? ''),
    expiresAt: Date.now() + Number(body.expires_in ?? 300) * 1000,
  };
}

/** Completes the sign-in on /app/callback: checks state, exchanges the code with the verifier. */
export async function completeSignIn(search: string): Promise<{ tokens: TokenSet; returnTo: string }> {
  const params = new URLSearchParams(search);
  const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) ?? 'null') as { verifier: string; state: string; returnTo: string } | null;
  sessionStorage.removeItem(PENDING_KEY);
  if (params.get('error')) throw new SignInError(params.get('error_description') ?? params.get('error') ?? 'sign-in refused');
  if (!pending || params.get('state') !== pending.state) throw new SignInError('state');
  const code = params.get('code');
  if (!code) throw new SignInError('code');
  const tokens = await tokenRequest({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: pending.verifier });
  return { tokens, returnTo: pending.returnTo };
}

export function refresh(refreshToken: string): Promise<TokenSet> {
  return tokenRequest({ grant_type: 'refresh_token', refresh_token: refreshToken });
}

/** Revokes the grant (RFC 7009): the refresh token and the tokens issued with it stop working. */
export async function revoke(token: string): Promise<void> {
  const config = await smartConfiguration();
  if (!config.revocation_endpoint) return;
  await fetch(config.revocation_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token, client_id: CLIENT_ID }),
  }).catch(() => undefined);
}

/**
 * The server's end-session address (OpenID Connect RP-initiated logout): revoking tokens does not
 * end the person's sign-in on this computer, this does. With the id token the server ends it at
 * once; without one it asks the person to confirm. Either way the browser comes back to the app.
 */
export function endSessionUrl(idToken: string | undefined): string {
  const params = new URLSearchParams({ client_id: CLIENT_ID, post_logout_redirect_uri: SIGNED_OUT_URI });
  if (idToken) params.set('id_token_hint', idToken);
  return `${ORIGIN}/oauth2/logout?${params}`;
}

/** The claims of a JWT, unverified: for display and navigation only (the server verifies). */
export function claimsOf(jwt: string | undefined): Record<string, unknown> {
  if (!jwt) return {};
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(decodeURIComponent(escape(atob(part)))) as Record<string, unknown>;
  } catch {
    return {};
  }
}
