// Bearer-token authentication for the FHIR door: verifies the access token (signature with
// cached keys, expiry, revocation) and leaves the caller's AuthContext in ctx.state.auth.
// Discovery documents stay public, as SMART requires; everything else needs a token unless the
// server runs with AUTH_DISABLED (a test-only configuration for benchmarks).
import type { Context, Next } from 'koa';
import type { AuthContext } from '../auth/context.ts';
import { FhirError } from '../fhir/outcome.ts';

const PUBLIC = /^\/fhir\/(metadata|\.well-known\/smart-configuration)\/?$/;

export function authenticate(verify: (token: string) => Promise<AuthContext>) {
  return async (ctx: Context, next: Next) => {
    if (PUBLIC.test(ctx.path) && (ctx.method === 'GET' || ctx.method === 'HEAD')) return next();
    const header = ctx.get('authorization');
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m) {
      ctx.set('WWW-Authenticate', 'Bearer realm="wardlink"');
      throw new FhirError(401, {
        resourceType: 'OperationOutcome',
        issue: [{ severity: 'error', code: 'login', diagnostics: 'This request needs an access token (Authorization: Bearer ...)' }],
      });
    }
    try {
      ctx.state.auth = await verify(m[1]);
    } catch {
      ctx.set('WWW-Authenticate', 'Bearer realm="wardlink", error="invalid_token"');
      throw new FhirError(401, {
        resourceType: 'OperationOutcome',
        issue: [{ severity: 'error', code: 'login', diagnostics: 'The access token is invalid, expired or revoked' }],
      });
    }
    return next();
  };
}
