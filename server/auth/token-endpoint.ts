// POST /oauth2/token (authorization_code with PKCE, refresh_token with rotation,
// client_credentials for SMART Backend Services), /oauth2/introspect (RFC 7662) and
// /oauth2/revoke (RFC 7009).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context } from 'koa';
import type { Role } from './context.ts';
import { authenticateClient, claimedClientId, type AuthenticatedClient } from './client-auth.ts';
import { invalidClient, invalidGrant, invalidRequest, invalidScope, OAuthError, unauthorizedClient } from './errors.ts';
import { randomToken, sha256 } from './passwords.ts';
import { grantScopes, isCoveredBy, splitScopes } from './scope-grants.ts';
import { json, readForm, sendOAuthError, single, type AuthServices } from './service.ts';
import { sessionById } from './sessions.ts';
import { getUserById } from './users.ts';

/** What a code and its refresh tokens carry from the authorization. */
export interface GrantDetails {
  scopes: string[];
  userId: string;
  fhirUser: string;
  role: Role;
  organization?: string;
  patient?: string;
  encounter?: string;
  nonce?: string;
  authTime?: number;
  sessionId?: string;
  codeChallenge?: string;
  /** EHR launch: the EHR shows the patient banner itself. */
  ehrLaunch?: boolean;
}

export function rateKeys(s: AuthServices, ctx: Context, clientId: string | undefined): [string, number][] {
  const keys: [string, number][] = [[`ip:${ctx.ip}`, s.config.auth.rateLimitPerIp]];
  if (clientId) keys.push([`client:${clientId.slice(0, 128)}`, s.config.auth.tokenRatePerClient]);
  return keys;
}

export function tokenHandler(s: AuthServices) {
  return async (ctx: Context) => {
    try {
      const form = await readForm(ctx);
      await s.limiter.hit(rateKeys(s, ctx, claimedClientId(ctx.get('authorization'), form)));
      const grantType = single(form, 'grant_type');
      const auth = await authenticateClient(s.db, ctx.get('authorization'), form, s.tokens.tokenUrl, await publicRefreshClient(s, grantType, form));
      let body: Record<string, unknown>;
      if (grantType === 'authorization_code') body = await authorizationCode(s, auth, form);
      else if (grantType === 'refresh_token') body = await refreshToken(s, auth, form);
      else if (grantType === 'client_credentials') body = await clientCredentials(s, auth, form);
      else if (!grantType) throw invalidRequest('grant_type is required');
      else throw new OAuthError(400, 'unsupported_grant_type', `grant_type ${grantType} is not supported`);
      json(ctx, 200, body);
    } catch (e) {
      sendOAuthError(ctx, e, s.log);
    }
  };
}

/**
 * A public client refreshing need not name itself (RFC 6749 §6 asks authentication of
 * confidential clients only; fhirclient sends just the token): the client is the token's.
 */
async function publicRefreshClient(s: AuthServices, grantType: string | undefined, form: URLSearchParams): Promise<string | undefined> {
  const token = form.get('refresh_token');
  if (grantType !== 'refresh_token' || !token || form.has('client_id') || form.has('client_assertion')) return undefined;
  const { rows } = await s.db.query<{ client_id: string }>('SELECT client_id FROM auth_refresh WHERE token_hash = $1', [sha256(token)]);
  return rows[0]?.client_id;
}

function requireGrantType(auth: AuthenticatedClient, grantType: 'authorization_code' | 'refresh_token' | 'client_credentials'): void {
  if (!auth.client.grantTypes.includes(grantType)) throw unauthorizedClient(`This client may not use ${grantType}`);
}

function pkceMatches(verifier: string, challenge: string): boolean {
  const computed = createHash('sha256').update(verifier).digest('base64url');
  return computed.length === challenge.length && timingSafeEqual(Buffer.from(computed), Buffer.from(challenge));
}

async function authorizationCode(s: AuthServices, auth: AuthenticatedClient, form: URLSearchParams): Promise<Record<string, unknown>> {
  requireGrantType(auth, 'authorization_code');
  const code = single(form, 'code');
  const redirectUri = single(form, 'redirect_uri');
  const verifier = single(form, 'code_verifier');
  if (!code) throw invalidRequest('code is required');
  if (!redirectUri) throw invalidRequest('redirect_uri is required');
  const hash = sha256(code);
  // Marking the code used is the first thing done: a second exchange of the same code finds it
  // used and revokes everything issued from it (RFC 6749 §4.1.2).
  const { rows } = await s.db.query<{ grant_id: string; client_id: string; redirect_uri: string; details: GrantDetails; expired: boolean; reused: boolean }>(
    `WITH old AS (SELECT used_at FROM auth_code WHERE code_hash = $1 FOR UPDATE)
     UPDATE auth_code c SET used_at = COALESCE(c.used_at, now()) FROM old WHERE c.code_hash = $1
     RETURNING c.grant_id, c.client_id, c.redirect_uri, c.details, c.expires_at < now() AS expired, old.used_at IS NOT NULL AS reused`,
    [hash],
  );
  const row = rows[0];
  if (!row) throw invalidGrant('The authorization code is not valid');
  if (row.reused) {
    await s.tokens.revokeGrant(row.grant_id);
    throw invalidGrant('The authorization code has already been used');
  }
  if (row.expired) throw invalidGrant('The authorization code has expired');
  if (row.client_id !== auth.client.clientId) throw invalidGrant('The authorization code was issued to another client');
  if (row.redirect_uri !== redirectUri) throw invalidGrant('redirect_uri does not match the one in the authorization request');
  const d = row.details;
  if (d.codeChallenge) {
    if (!verifier) throw invalidRequest('code_verifier is required (PKCE)');
    if (!/^[A-Za-z0-9\-._~]{43,128}$/.test(verifier) || !pkceMatches(verifier, d.codeChallenge)) {
      throw invalidGrant('code_verifier does not match the code_challenge');
    }
  } else if (verifier) {
    throw invalidGrant('No code_challenge was sent for this code');
  }
  return issueUserTokens(s, auth, row.grant_id, d, true);
}

async function issueUserTokens(s: AuthServices, auth: AuthenticatedClient, grantId: string, d: GrantDetails, withRefresh: boolean): Promise<Record<string, unknown>> {
  const access = await s.tokens.issueAccessToken({
    subject: d.userId,
    clientId: auth.client.clientId,
    scopes: d.scopes,
    fhirUser: d.fhirUser,
    role: d.role,
    organization: d.organization,
    patient: d.patient,
    encounter: d.encounter,
    grantId,
  });
  const body: Record<string, unknown> = {
    access_token: access.token,
    token_type: 'Bearer',
    expires_in: access.expiresIn,
    scope: d.scopes.join(' '),
  };
  if (d.patient) {
    body.patient = d.patient;
    body.need_patient_banner = !d.ehrLaunch;
  }
  if (d.encounter) body.encounter = d.encounter;
  if (d.scopes.includes('openid') && (d.scopes.includes('fhirUser') || d.scopes.includes('profile'))) {
    body.id_token = await s.tokens.issueIdToken({ subject: d.userId, clientId: auth.client.clientId, fhirUser: d.fhirUser, nonce: d.nonce, authTime: d.authTime });
  }
  const offline = d.scopes.includes('offline_access');
  const online = !offline && d.scopes.includes('online_access');
  if (withRefresh && (offline || online) && auth.client.grantTypes.includes('refresh_token')) {
    const refresh = randomToken();
    const days = s.config.auth.refreshTokenDays;
    await s.db.query(
      `INSERT INTO auth_refresh (token_hash, grant_id, client_id, details, online, expires_at)
       VALUES ($1, $2, $3, $4, $5, now() + make_interval(days => $6))`,
      [sha256(refresh), grantId, auth.client.clientId, JSON.stringify(d), online, days],
    );
    body.refresh_token = refresh;
  }
  return body;
}

async function refreshToken(s: AuthServices, auth: AuthenticatedClient, form: URLSearchParams): Promise<Record<string, unknown>> {
  requireGrantType(auth, 'refresh_token');
  const token = single(form, 'refresh_token');
  if (!token) throw invalidRequest('refresh_token is required');
  const { rows } = await s.db.query<{ grant_id: string; client_id: string; details: GrantDetails; online: boolean; expired: boolean; reused: boolean; revoked: boolean }>(
    `WITH old AS (SELECT used_at FROM auth_refresh WHERE token_hash = $1 FOR UPDATE)
     UPDATE auth_refresh r SET used_at = COALESCE(r.used_at, now()) FROM auth_grant g, old
     WHERE r.token_hash = $1 AND g.id = r.grant_id
     RETURNING r.grant_id, r.client_id, r.details, r.online, r.expires_at < now() AS expired,
       old.used_at IS NOT NULL AS reused, g.revoked_at IS NOT NULL AS revoked`,
    [sha256(token)],
  );
  const row = rows[0];
  if (!row || row.revoked) throw invalidGrant('The refresh token is not valid');
  if (row.client_id !== auth.client.clientId) throw invalidGrant('The refresh token was issued to another client');
  if (row.reused) {
    // A rotated refresh token presented again: it was copied. Revoke the whole grant.
    await s.tokens.revokeGrant(row.grant_id);
    throw invalidGrant('The refresh token has already been used');
  }
  if (row.expired) throw invalidGrant('The refresh token has expired');
  const d = row.details;
  if (!(await getUserById(s.db, d.userId))) throw invalidGrant('The user of this refresh token is no longer active');
  if (row.online && (!d.sessionId || !(await sessionById(s.db, d.sessionId, s.config.auth.sessionIdleMinutes)))) {
    throw invalidGrant('The sign-in session behind this online_access token has ended');
  }
  const asked = splitScopes(single(form, 'scope'));
  if (asked.length > 0) {
    if (!isCoveredBy(asked, d.scopes)) throw invalidScope('A refresh may only ask for scopes of the original grant');
    d.scopes = asked;
  }
  return issueUserTokens(s, auth, row.grant_id, d, true);
}

async function clientCredentials(s: AuthServices, auth: AuthenticatedClient, form: URLSearchParams): Promise<Record<string, unknown>> {
  if (auth.method === 'none') throw invalidClient('client_credentials needs an authenticated confidential client');
  requireGrantType(auth, 'client_credentials');
  const asked = splitScopes(single(form, 'scope'));
  if (asked.length === 0) throw invalidScope('scope is required (system/ scopes)');
  const granted = grantScopes(asked, auth.client.scopes, ['system']);
  if (granted.length === 0) throw invalidScope('None of the requested scopes may be granted to this client');
  // No grant row: a system token stands alone (revoked by its jti), so the hot path writes nothing.
  const access = await s.tokens.issueAccessToken({ subject: auth.client.clientId, clientId: auth.client.clientId, scopes: granted });
  return { access_token: access.token, token_type: 'Bearer', expires_in: access.expiresIn, scope: granted.join(' ') };
}

// ------------------------------------------------------------------ introspection, revocation

/** Introspection needs an authenticated client, or a bearer token of this server (SMART). */
async function authorizeIntrospection(s: AuthServices, ctx: Context, form: URLSearchParams): Promise<void> {
  const authorization = ctx.get('authorization');
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  if (bearer) {
    await s.tokens.verifyAccessToken(bearer[1]);
    return;
  }
  const auth = await authenticateClient(s.db, authorization, form, s.tokens.tokenUrl);
  if (auth.method === 'none') throw invalidClient('Introspection needs client authentication or a bearer token');
}

export function introspectHandler(s: AuthServices) {
  return async (ctx: Context) => {
    try {
      const form = await readForm(ctx);
      await s.limiter.hit(rateKeys(s, ctx, claimedClientId(ctx.get('authorization'), form)));
      await authorizeIntrospection(s, ctx, form);
      const token = single(form, 'token');
      if (!token) throw invalidRequest('token is required');
      const claims = await s.tokens.activeClaims(token);
      if (claims) {
        const body: Record<string, unknown> = {
          active: true,
          scope: claims.scope,
          client_id: claims.client_id,
          sub: claims.sub,
          exp: claims.exp,
          iat: claims.iat,
          iss: s.tokens.issuer,
          aud: s.tokens.fhirBase,
          jti: claims.jti,
          token_type: 'Bearer',
        };
        for (const k of ['fhirUser', 'patient', 'encounter'] as const) if (claims[k]) body[k] = claims[k];
        json(ctx, 200, body);
        return;
      }
      const { rows } = await s.db.query<{ client_id: string; details: GrantDetails; exp: number }>(
        `SELECT r.client_id, r.details, extract(epoch FROM r.expires_at)::bigint AS exp FROM auth_refresh r JOIN auth_grant g ON g.id = r.grant_id
         WHERE r.token_hash = $1 AND r.used_at IS NULL AND r.expires_at > now() AND g.revoked_at IS NULL`,
        [sha256(token)],
      );
      const r = rows[0];
      if (r) {
        json(ctx, 200, { active: true, scope: r.details.scopes.join(' '), client_id: r.client_id, sub: r.details.userId, exp: Number(r.exp), token_type: 'refresh_token' });
        return;
      }
      json(ctx, 200, { active: false });
    } catch (e) {
      sendOAuthError(ctx, e, s.log);
    }
  };
}

export function revokeHandler(s: AuthServices) {
  return async (ctx: Context) => {
    try {
      const form = await readForm(ctx);
      await s.limiter.hit(rateKeys(s, ctx, claimedClientId(ctx.get('authorization'), form)));
      const auth = await authenticateClient(s.db, ctx.get('authorization'), form, s.tokens.tokenUrl);
      const token = single(form, 'token');
      if (!token) throw invalidRequest('token is required');
      const { rows } = await s.db.query<{ grant_id: string; client_id: string }>('SELECT grant_id, client_id FROM auth_refresh WHERE token_hash = $1', [sha256(token)]);
      if (rows[0]) {
        if (rows[0].client_id === auth.client.clientId) await s.tokens.revokeGrant(rows[0].grant_id);
      } else {
        const claims = await s.tokens.activeClaims(token);
        if (claims && claims.client_id === auth.client.clientId) await s.tokens.revokeAccessToken(claims.jti, claims.exp);
      }
      // RFC 7009 §2.2: 200 whether or not the token was valid.
      json(ctx, 200, {});
    } catch (e) {
      sendOAuthError(ctx, e, s.log);
    }
  };
}
