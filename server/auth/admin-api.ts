// Bearer-token JSON endpoints for staff and administrators:
//  POST /oauth2/launch          (staff) registers an EHR launch context -> the `launch` value
//  GET/POST /oauth2/clients     (admin) lists / registers or updates a client
//  DELETE /oauth2/clients/:id   (admin) disables a client
import { randomUUID } from 'node:crypto';
import type { Context } from 'koa';
import type { JWK } from 'jose';
import { Repository } from '../fhir/repository.ts';
import { describeClient, disableClient, listClients, registerClient, RegistrationError, type GrantType } from './clients.ts';
import type { AuthContext } from './context.ts';
import { invalidRequest, invalidToken, OAuthError } from './errors.ts';
import { json, sendOAuthError, type AuthServices } from './service.ts';

const LAUNCH_MINUTES = 10;

async function bearer(s: AuthServices, ctx: Context): Promise<AuthContext> {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('authorization'));
  if (!m) throw invalidToken('A bearer access token is required');
  return s.tokens.verifyAccessToken(m[1]);
}

async function readJson(ctx: Context): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of ctx.req) {
    size += (c as Buffer).length;
    if (size > 256 * 1024) throw new OAuthError(413, 'invalid_request', 'The request body is too large');
    chunks.push(c as Buffer);
  }
  try {
    const v = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw invalidRequest('Send a JSON object');
}

const forbidden = (d: string) => new OAuthError(403, 'insufficient_scope', d);

export function launchPost(s: AuthServices) {
  return async (ctx: Context) => {
    try {
      const auth = await bearer(s, ctx);
      if (!auth.role || auth.role === 'patient' || !auth.fhirUser) throw forbidden('Only staff users may launch apps');
      const body = await readJson(ctx);
      const patient = typeof body.patient === 'string' ? body.patient.replace(/^Patient\//, '') : undefined;
      const encounter = typeof body.encounter === 'string' ? body.encounter.replace(/^Encounter\//, '') : undefined;
      const clientId = typeof body.client_id === 'string' ? body.client_id : undefined;
      if (!patient && !encounter) throw invalidRequest('A launch needs a patient and/or an encounter');
      const repo = new Repository(s.db, { baseUrl: s.tokens.fhirBase }, s.db);
      for (const [type, id] of [['Patient', patient], ['Encounter', encounter]] as const) {
        if (!id) continue;
        try {
          await repo.read(type, id);
        } catch {
          throw invalidRequest(`${type}/${id} does not exist`);
        }
      }
      const id = randomUUID();
      await s.db.query(
        `INSERT INTO auth_launch (id, patient, encounter, created_by, client_id, expires_at) VALUES ($1, $2, $3, $4, $5, now() + make_interval(mins => $6))`,
        [id, patient ?? null, encounter ?? null, auth.subject, clientId ?? null, LAUNCH_MINUTES],
      );
      await s.db.query('DELETE FROM auth_launch WHERE expires_at < now()');
      const out: Record<string, unknown> = { launch: id, iss: s.tokens.fhirBase, expires_in: LAUNCH_MINUTES * 60 };
      if (clientId) {
        const { rows } = await s.db.query<{ launch_uri: string | null }>('SELECT launch_uri FROM auth_client WHERE client_id = $1', [clientId]);
        const uri = rows[0]?.launch_uri;
        if (uri) {
          const u = new URL(uri);
          u.searchParams.set('iss', s.tokens.fhirBase);
          u.searchParams.set('launch', id);
          out.launch_url = u.toString();
        }
      }
      json(ctx, 201, out);
    } catch (e) {
      sendOAuthError(ctx, e, s.log);
    }
  };
}

async function requireAdmin(s: AuthServices, ctx: Context): Promise<void> {
  const auth = await bearer(s, ctx);
  if (auth.role !== 'admin') throw forbidden('Only administrators may manage clients');
}

export function clientsGet(s: AuthServices) {
  return async (ctx: Context) => {
    try {
      await requireAdmin(s, ctx);
      json(ctx, 200, { clients: (await listClients(s.db)).map(describeClient) });
    } catch (e) {
      sendOAuthError(ctx, e, s.log);
    }
  };
}

/** Body (RFC 7591 names): client_id, client_name, token_endpoint_auth_method (none |
 * client_secret_basic | private_key_jwt), client_secret, jwks, jwks_uri, redirect_uris,
 * launch_uri, scope, grant_types, trusted. */
export function clientsPost(s: AuthServices) {
  return async (ctx: Context) => {
    try {
      await requireAdmin(s, ctx);
      const b = await readJson(ctx);
      const method = b.token_endpoint_auth_method ?? 'none';
      const strings = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : undefined);
      try {
        const client = await registerClient(s.db, {
          clientId: String(b.client_id ?? ''),
          name: typeof b.client_name === 'string' ? b.client_name : undefined,
          kind: method === 'none' ? 'public' : 'confidential',
          secret: typeof b.client_secret === 'string' ? b.client_secret : undefined,
          jwks: b.jwks as { keys: JWK[] } | undefined,
          jwksUri: typeof b.jwks_uri === 'string' ? b.jwks_uri : undefined,
          redirectUris: strings(b.redirect_uris),
          launchUri: typeof b.launch_uri === 'string' ? b.launch_uri : undefined,
          scopes: typeof b.scope === 'string' ? b.scope : '',
          grantTypes: strings(b.grant_types) as GrantType[] | undefined,
          trusted: b.trusted === true,
        });
        json(ctx, 201, describeClient(client));
      } catch (e) {
        if (e instanceof RegistrationError) throw new OAuthError(400, 'invalid_request', e.message);
        throw e;
      }
    } catch (e) {
      sendOAuthError(ctx, e, s.log);
    }
  };
}

export function clientsDelete(s: AuthServices) {
  return async (ctx: Context) => {
    try {
      await requireAdmin(s, ctx);
      const found = await disableClient(s.db, String(ctx.params.id));
      ctx.status = found ? 204 : 404;
    } catch (e) {
      sendOAuthError(ctx, e, s.log);
    }
  };
}
