// What the authorization server's handlers share: database, config, keys, token service, rate
// limiter, and small helpers for reading forms and answering OAuth errors.
import type { Context } from 'koa';
import type { Config } from '../config.ts';
import type { Db } from '../db/pool.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { Logger } from '../logger.ts';
import { OAuthError, invalidRequest } from './errors.ts';
import type { KeyStore } from './keys.ts';
import type { RateLimiter } from './rate-limit.ts';
import type { TokenService } from './tokens.ts';

export interface AuthDeps {
  config: Config;
  db: Db;
  log: Logger;
  /** Sign-ins and failed sign-ins are audited (AuditEvent, BALP Login). */
  audit?: AuditLog;
}

export interface AuthServices extends AuthDeps {
  keys: KeyStore;
  tokens: TokenService;
  limiter: RateLimiter;
}

const FORM_LIMIT = 64 * 1024;

/** Reads an application/x-www-form-urlencoded (or JSON object) body, 64 KiB at most. */
export async function readForm(ctx: Context): Promise<URLSearchParams> {
  const type = (ctx.get('content-type') || '').split(';')[0].trim().toLowerCase();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > FORM_LIMIT) throw new OAuthError(413, 'invalid_request', 'The request body is too large');
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (type === 'application/json') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text || '{}');
    } catch {
      throw invalidRequest('The body is not valid JSON');
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw invalidRequest('The body must be a JSON object');
    const out = new URLSearchParams();
    for (const [k, v] of Object.entries(parsed)) if (typeof v === 'string') out.set(k, v);
    return out;
  }
  if (text && type !== 'application/x-www-form-urlencoded') throw invalidRequest('Send the parameters as application/x-www-form-urlencoded');
  return new URLSearchParams(text);
}

/** Parameters must not repeat (RFC 6749 §3.1). */
export function single(params: URLSearchParams, name: string): string | undefined {
  const all = params.getAll(name);
  if (all.length > 1) throw invalidRequest(`The parameter ${name} is repeated`);
  return all[0] === '' ? undefined : all[0];
}

/** Answers an OAuth error as JSON (token, introspection, revocation, admin endpoints). */
export function sendOAuthError(ctx: Context, e: unknown, log: Logger): void {
  const err = e instanceof OAuthError ? e : new OAuthError(500, 'server_error', 'The server could not complete the request');
  if (!(e instanceof OAuthError)) (ctx.state.log ?? log).error({ err: e }, 'authorization server error');
  else (ctx.state.log ?? log).info({ status: err.status, error: err.error, description: err.description }, 'oauth request refused');
  ctx.status = err.status;
  ctx.type = 'application/json';
  ctx.set('Cache-Control', 'no-store');
  ctx.set('Pragma', 'no-cache');
  if (err.retryAfter) ctx.set('Retry-After', String(err.retryAfter));
  if (err.error === 'invalid_client' && ctx.get('authorization').toLowerCase().startsWith('basic')) ctx.set('WWW-Authenticate', 'Basic realm="wardlink"');
  if (err.error === 'invalid_token') ctx.set('WWW-Authenticate', err.bearerChallenge());
  ctx.body = err.toJSON();
}

export function json(ctx: Context, status: number, body: unknown): void {
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.set('Cache-Control', 'no-store');
  ctx.set('Pragma', 'no-cache');
  ctx.body = body;
}
