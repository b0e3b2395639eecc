// Client authentication at the token, introspection and revocation endpoints:
// client_secret_basic (confidential symmetric), private_key_jwt (SMART Backend Services:
// RS384 / ES384 assertions checked against the client's JWKS or jwks_uri, aud = token URL,
// exp at most 5 minutes ahead, each jti once), or a public client naming itself.
import { createHash } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { Queryable } from '../db/pool.ts';
import { getClient, type ClientRecord } from './clients.ts';
import { invalidClient, invalidRequest } from './errors.ts';
import { verifySecret } from './passwords.ts';
import { single } from './service.ts';

export const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
export const ASSERTION_ALGS = ['RS384', 'ES384'];
const MAX_ASSERTION_LIFETIME_S = 300;
const CLOCK_SKEW_S = 30;

export interface AuthenticatedClient {
  client: ClientRecord;
  method: 'none' | 'client_secret_basic' | 'private_key_jwt';
}

// Verified secrets (client id -> hash of secret + stored hash): scrypt costs ~50 ms, too much
// for every client_credentials request of a monitoring script.
const secretCache = new Map<string, string>();
const remoteSets = new Map<string, JWTVerifyGetKey>();
let lastSweep = 0;

function basicCredentials(header: string): { id: string; secret: string } | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  try {
    // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    return { id: decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' ')), secret: decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' ')) };
  } catch {
    return undefined;
  }
}

/** The client a request claims to be, without verifying it (for rate limiting). */
export function claimedClientId(authorization: string, form: URLSearchParams): string | undefined {
  const basic = basicCredentials(authorization);
  if (basic) return basic.id;
  const assertion = form.get('client_assertion');
  if (assertion) {
    try {
      const iss = decodeJwt(assertion).iss;
      if (iss) return iss;
    } catch {
      // refused later
    }
  }
  return form.get('client_id') ?? undefined;
}

export async function authenticateClient(
  db: Queryable,
  authorization: string,
  form: URLSearchParams,
  tokenUrl: string,
  /** The client a refresh token belongs to, when the request names none (public clients only). */
  impliedClientId?: string,
): Promise<AuthenticatedClient> {
  const basic = basicCredentials(authorization);
  const assertion = single(form, 'client_assertion');
  if (basic) {
    if (assertion) throw invalidRequest('Use one client authentication method, not several');
    const client = await getClient(db, basic.id);
    if (!client || !client.secretHash || client.kind !== 'confidential') throw invalidClient('Client authentication failed');
    const fingerprint = createHash('sha256').update(basic.secret).digest('base64url') + client.secretHash;
    if (secretCache.get(client.clientId) !== fingerprint) {
      if (!(await verifySecret(basic.secret, client.secretHash))) throw invalidClient('Client authentication failed');
      secretCache.set(client.clientId, fingerprint);
    }
    const named = single(form, 'client_id');
    if (named && named !== client.clientId) throw invalidClient('client_id does not match the authenticated client');
    return { client, method: 'client_secret_basic' };
  }
  if (assertion) return { client: await verifyAssertion(db, assertion, form, tokenUrl), method: 'private_key_jwt' };
  const clientId = single(form, 'client_id') ?? impliedClientId;
  if (!clientId) throw invalidClient('Client authentication is required');
  const client = await getClient(db, clientId);
  if (!client) throw invalidClient('Unknown client');
  if (client.kind !== 'public') throw invalidClient('This client must authenticate (client_secret_basic or private_key_jwt)');
  return { client, method: 'none' };
}

async function verifyAssertion(db: Queryable, assertion: string, form: URLSearchParams, tokenUrl: string): Promise<ClientRecord> {
  if (single(form, 'client_assertion_type') !== JWT_BEARER) throw invalidClient(`client_assertion_type must be ${JWT_BEARER}`);
  let iss: string | undefined;
  try {
    iss = decodeJwt(assertion).iss;
  } catch {
    throw invalidClient('The client assertion is not a JWT');
  }
  if (!iss) throw invalidClient('The client assertion has no iss');
  const named = single(form, 'client_id');
  if (named && named !== iss) throw invalidClient('client_id does not match the client assertion');
  const client = await getClient(db, iss);
  if (!client || client.kind !== 'confidential' || (!client.jwks && !client.jwksUri)) throw invalidClient('Client authentication failed');
  const keySet = client.jwks ? createLocalJWKSet(client.jwks) : remoteKeySet(client.jwksUri as string);
  let payload;
  try {
    ({ payload } = await jwtVerify(assertion, keySet, {
      algorithms: ASSERTION_ALGS,
      issuer: client.clientId,
      subject: client.clientId,
      audience: tokenUrl,
      requiredClaims: ['exp', 'jti'],
      clockTolerance: CLOCK_SKEW_S,
    }));
  } catch {
    throw invalidClient('The client assertion is not valid (signature, alg RS384/ES384, iss, sub, aud or exp)');
  }
  const now = Math.floor(Date.now() / 1000);
  const exp = payload.exp as number;
  if (exp > now + MAX_ASSERTION_LIFETIME_S + CLOCK_SKEW_S) throw invalidClient('The client assertion must expire within 5 minutes');
  const jti = String(payload.jti);
  if (jti.length > 256) throw invalidClient('The client assertion jti is too long');
  const res = await db.query(
    `INSERT INTO auth_assertion_jti (client_id, jti, expires_at) VALUES ($1, $2, to_timestamp($3)) ON CONFLICT DO NOTHING`,
    [client.clientId, jti, exp + CLOCK_SKEW_S],
  );
  if (!res.rowCount) throw invalidClient('The client assertion jti has been used before');
  if (Date.now() - lastSweep > 60_000) {
    lastSweep = Date.now();
    await db.query('DELETE FROM auth_assertion_jti WHERE expires_at < now()');
  }
  return client;
}

function remoteKeySet(uri: string): JWTVerifyGetKey {
  let set = remoteSets.get(uri);
  if (!set) {
    set = createRemoteJWKSet(new URL(uri), { timeoutDuration: 5000, cooldownDuration: 30_000, cacheMaxAge: 10 * 60_000 });
    remoteSets.set(uri, set);
  }
  return set;
}
