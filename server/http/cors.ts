// CORS for the FHIR API and the HL7 HTTP endpoint: browsers may call them from the origins of
// registered apps (their redirect URIs), with the headers FHIR clients send and read. The
// authorization server's own endpoints have their CORS rules in server/auth/router.ts.
import type { Context, Next } from 'koa';
import type { Queryable } from '../db/pool.ts';
import { registeredOrigins } from '../auth/clients.ts';

const ALLOW_HEADERS = 'Authorization, Content-Type, Accept, If-Match, If-None-Match, If-Modified-Since, If-None-Exist, Prefer, X-Request-Id';
const EXPOSE_HEADERS = 'ETag, Last-Modified, Location, Content-Location, X-Request-Id, WWW-Authenticate';

export function fhirCors(db: Queryable) {
  let cache: { at: number; origins: Set<string> } | undefined;
  return async (ctx: Context, next: Next) => {
    const origin = ctx.get('origin');
    if (!origin || !/^\/(fhir|hl7)(\/|$)/.test(ctx.path)) return next();
    if (!cache || Date.now() - cache.at > 30_000) cache = { at: Date.now(), origins: await registeredOrigins(db) };
    if (!cache.origins.has(origin)) return next();
    ctx.set('Access-Control-Allow-Origin', origin);
    ctx.vary('Origin');
    ctx.set('Access-Control-Expose-Headers', EXPOSE_HEADERS);
    if (ctx.method === 'OPTIONS' && ctx.get('access-control-request-method')) {
      ctx.set('Access-Control-Allow-Methods', 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS');
      ctx.set('Access-Control-Allow-Headers', ALLOW_HEADERS);
      ctx.set('Access-Control-Max-Age', '600');
      ctx.status = 204;
      return;
    }
    await next();
  };
}
