// Registered OAuth clients (apps): public (PKCE, no secret), confidential with a secret
// (client_secret_basic) or with keys (private_key_jwt, SMART Backend Services). Registration
// is an admin action: the admin CLI, the admin API (POST /oauth2/clients) and the bootstrap
// client at start all go through registerClient.
import type { JWK } from 'jose';
import type { Queryable } from '../db/pool.ts';
import { hashSecret } from './passwords.ts';
import { splitScopes } from './scope-grants.ts';

export type GrantType = 'authorization_code' | 'refresh_token' | 'client_credentials';
export const GRANT_TYPES: GrantType[] = ['authorization_code', 'refresh_token', 'client_credentials'];

export interface ClientRecord {
  clientId: string;
  name: string;
  kind: 'public' | 'confidential';
  secretHash?: string;
  jwks?: { keys: JWK[] };
  jwksUri?: string;
  redirectUris: string[];
  launchUri?: string;
  /** What the client may be granted (scope patterns, SMART syntax). */
  scopes: string[];
  grantTypes: GrantType[];
  /** First-party app (the bundled UI): no consent page. */
  trusted: boolean;
  disabled: boolean;
}

export interface ClientRegistration {
  clientId: string;
  name?: string;
  kind: 'public' | 'confidential';
  /** client_secret_basic; stored as a scrypt hash. */
  secret?: string;
  jwks?: { keys: JWK[] };
  jwksUri?: string;
  redirectUris?: string[];
  launchUri?: string;
  scopes: string | string[];
  grantTypes?: GrantType[];
  trusted?: boolean;
}

interface ClientRow {
  client_id: string;
  name: string;
  kind: 'public' | 'confidential';
  secret_hash: string | null;
  jwks: { keys: JWK[] } | null;
  jwks_uri: string | null;
  redirect_uris: string[];
  launch_uri: string | null;
  scopes: string;
  grant_types: GrantType[];
  trusted: boolean;
  disabled: boolean;
}

function fromRow(r: ClientRow): ClientRecord {
  return {
    clientId: r.client_id,
    name: r.name,
    kind: r.kind,
    secretHash: r.secret_hash ?? undefined,
    jwks: r.jwks ?? undefined,
    jwksUri: r.jwks_uri ?? undefined,
    redirectUris: r.redirect_uris,
    launchUri: r.launch_uri ?? undefined,
    scopes: splitScopes(r.scopes),
    grantTypes: r.grant_types,
    trusted: r.trusted,
    disabled: r.disabled,
  };
}

export async function getClient(db: Queryable, clientId: string): Promise<ClientRecord | undefined> {
  if (!clientId || clientId.length > 256) return undefined;
  const { rows } = await db.query<ClientRow>('SELECT * FROM auth_client WHERE client_id = $1', [clientId]);
  return rows[0] && !rows[0].disabled ? fromRow(rows[0]) : undefined;
}

export async function listClients(db: Queryable): Promise<ClientRecord[]> {
  const { rows } = await db.query<ClientRow>('SELECT * FROM auth_client ORDER BY client_id');
  return rows.map(fromRow);
}

/** Every origin of a registered redirect URI (CORS on the token endpoints). */
export async function registeredOrigins(db: Queryable): Promise<Set<string>> {
  const { rows } = await db.query<{ uri: string }>(
    `SELECT DISTINCT jsonb_array_elements_text(redirect_uris) AS uri FROM auth_client WHERE NOT disabled`,
  );
  const out = new Set<string>();
  for (const r of rows) {
    try {
      out.add(new URL(r.uri).origin);
    } catch {
      // stored URIs are validated on registration
    }
  }
  return out;
}

export class RegistrationError extends Error {}

function checkUri(uri: string, what: string): void {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw new RegistrationError(`${what} "${uri}" is not an absolute URL`);
  }
  if (u.hash) throw new RegistrationError(`${what} "${uri}" must not have a fragment`);
  if (u.protocol !== 'https:' && u.protocol !== 'http:' && !/^[a-z][a-z0-9+.-]*:$/.test(u.protocol)) {
    throw new RegistrationError(`${what} "${uri}" has an unusable scheme`);
  }
}

/** Creates or updates a client. Returns the stored record. */
export async function registerClient(db: Queryable, reg: ClientRegistration): Promise<ClientRecord> {
  if (!/^[A-Za-z0-9\-_.:]{1,128}$/.test(reg.clientId)) throw new RegistrationError('client_id may use letters, digits and - _ . : (at most 128)');
  const redirectUris = reg.redirectUris ?? [];
  redirectUris.forEach((u) => checkUri(u, 'redirect URI'));
  if (reg.launchUri) checkUri(reg.launchUri, 'launch URI');
  if (reg.jwksUri) checkUri(reg.jwksUri, 'jwks_uri');
  if (reg.jwks && (!Array.isArray(reg.jwks.keys) || reg.jwks.keys.some((k) => typeof k !== 'object' || 'd' in k))) {
    throw new RegistrationError('jwks must be {"keys": [...]} of public keys (no private parts)');
  }
  const scopes = Array.isArray(reg.scopes) ? reg.scopes : splitScopes(reg.scopes);
  if (scopes.length === 0) throw new RegistrationError('a client needs at least one allowed scope');
  const grantTypes = reg.grantTypes ?? (reg.kind === 'public' ? ['authorization_code', 'refresh_token'] : ['authorization_code', 'refresh_token', 'client_credentials']);
  if (reg.kind === 'public') {
    if (reg.secret || reg.jwks || reg.jwksUri) throw new RegistrationError('a public client has no secret and no keys');
    if (grantTypes.includes('client_credentials')) throw new RegistrationError('a public client cannot use client_credentials');
  } else if (!reg.secret && !reg.jwks && !reg.jwksUri) {
    throw new RegistrationError('a confidential client needs a secret or keys (jwks / jwks_uri)');
  }
  if (grantTypes.includes('authorization_code') && redirectUris.length === 0) {
    throw new RegistrationError('authorization_code needs at least one redirect URI');
  }
  const secretHash = reg.secret ? await hashSecret(reg.secret) : null;
  const { rows } = await db.query<ClientRow>(
    `INSERT INTO auth_client (client_id, name, kind, secret_hash, jwks, jwks_uri, redirect_uris, launch_uri, scopes, grant_types, trusted)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (client_id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, secret_hash = EXCLUDED.secret_hash,
       jwks = EXCLUDED.jwks, jwks_uri = EXCLUDED.jwks_uri, redirect_uris = EXCLUDED.redirect_uris, launch_uri = EXCLUDED.launch_uri,
       scopes = EXCLUDED.scopes, grant_types = EXCLUDED.grant_types, trusted = EXCLUDED.trusted, disabled = false, updated_at = now()
     RETURNING *`,
    [
      reg.clientId,
      reg.name ?? reg.clientId,
      reg.kind,
      secretHash,
      reg.jwks ? JSON.stringify(reg.jwks) : null,
      reg.jwksUri ?? null,
      JSON.stringify(redirectUris),
      reg.launchUri ?? null,
      scopes.join(' '),
      JSON.stringify(grantTypes),
      reg.trusted ?? false,
    ],
  );
  return fromRow(rows[0]);
}

export async function disableClient(db: Queryable, clientId: string): Promise<boolean> {
  const res = await db.query('UPDATE auth_client SET disabled = true, updated_at = now() WHERE client_id = $1', [clientId]);
  return (res.rowCount ?? 0) > 0;
}

/** The public view of a client (admin API): never the secret hash. */
export function describeClient(c: ClientRecord): Record<string, unknown> {
  return {
    client_id: c.clientId,
    client_name: c.name,
    kind: c.kind,
    token_endpoint_auth_method: c.kind === 'public' ? 'none' : c.jwks || c.jwksUri ? 'private_key_jwt' : 'client_secret_basic',
    redirect_uris: c.redirectUris,
    launch_uri: c.launchUri,
    scope: c.scopes.join(' '),
    grant_types: c.grantTypes,
    jwks_uri: c.jwksUri,
    jwks: c.jwks,
    trusted: c.trusted,
  };
}
