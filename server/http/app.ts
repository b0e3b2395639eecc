// The Koa application: small middleware, each doing one thing, composed in this visible order:
// request id -> logging -> errors -> security headers -> routes.
import { randomUUID } from 'node:crypto';
import Router from '@koa/router';
import Koa, { type Context, type Next } from 'koa';
import type { Config } from '../config.ts';
import type { Db } from '../db/pool.ts';
import { Repository } from '../fhir/repository.ts';
import { forbidden, toFhirError } from '../fhir/outcome.ts';
import type { FhirContext } from '../fhir/request.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { AuthContext } from '../auth/context.ts';
import type { Logger } from '../logger.ts';
import { AccessPolicy, isUnrestricted } from '../auth/access.ts';
import { authenticate } from './authenticate.ts';
import { fhirCors } from './cors.ts';
import { fhirHandler } from './fhir-handler.ts';
import { uiStatic } from './ui-static.ts';

export interface AppDeps {
  config: Config;
  db: Db;
  log: Logger;
  /** False while starting or shutting down: /readyz answers 503. */
  isReady: () => boolean;
  audit?: AuditLog;
  /** Verifies bearer tokens; absent only with AUTH_DISABLED (test-only configuration). */
  verifyAccessToken?: (token: string) => Promise<AuthContext>;
  /** The authorization server's routes, mounted before the FHIR API. */
  authRoutes?: ReturnType<Router['routes']>;
  /** The HL7 v2 HTTP endpoints (/hl7/v2), mounted behind authentication. */
  hl7Routes?: ReturnType<Router['routes']>;
}

function requestId() {
  return async (ctx: Context, next: Next) => {
    const incoming = ctx.get('x-request-id');
    const id = /^[A-Za-z0-9\-_.]{1,64}$/.test(incoming) ? incoming : randomUUID();
    ctx.state.requestId = id;
    ctx.set('X-Request-Id', id);
    await next();
  };
}

function logging(log: Logger) {
  return async (ctx: Context, next: Next) => {
    const start = performance.now();
    ctx.state.log = log.child({ reqId: ctx.state.requestId });
    try {
      await next();
    } finally {
      const ms = Math.round((performance.now() - start) * 10) / 10;
      const line = { method: ctx.method, url: ctx.originalUrl, status: ctx.status, ms };
      if (ctx.status >= 500) ctx.state.log.error(line, 'request failed');
      else if (ctx.status >= 400) ctx.state.log.info(line, 'request refused');
      else ctx.state.log.debug(line, 'request');
    }
  };
}

/** Every error becomes an OperationOutcome with its status; internals never reach the client. */
function errors() {
  return async (ctx: Context, next: Next) => {
    try {
      await next();
    } catch (e) {
      const err = toFhirError(e);
      if (err.status >= 500) ctx.state.log?.error({ err: e }, 'unhandled error');
      else ctx.state.log?.info({ status: err.status, issue: err.outcome.issue?.[0]?.diagnostics }, 'refused');
      ctx.status = err.status;
      ctx.type = 'application/fhir+json';
      ctx.body = JSON.stringify(err.outcome);
    }
  };
}

function securityHeaders() {
  return async (ctx: Context, next: Next) => {
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('X-Frame-Options', 'DENY');
    ctx.set('Referrer-Policy', 'no-referrer');
    await next();
  };
}

/** HL7 v2 messages may write any resource: the caller must be allowed to, unrestricted. */
function requireFullWriteAccess(auth: AuthContext): void {
  const policy = new AccessPolicy(auth);
  for (const p of ['c', 'u'] as const) {
    if (!isUnrestricted(policy.check('*', p))) throw forbidden('The HL7 v2 endpoint needs unrestricted write access');
  }
}

export function createApp(deps: AppDeps): Koa {
  const { config, db, log } = deps;
  const app = new Koa({ proxy: config.trustProxy });
  // baseUrl is read per request: with PORT=0 it is only known once the server listens.
  const fhir = (): FhirContext => ({
    repo: new Repository(db, { baseUrl: `${config.baseUrl}/fhir` }, db),
    fhirBase: `${config.baseUrl}/fhir`,
    defaultCount: config.defaultPageSize,
    maxCount: config.maxPageSize,
    maxBinaryBytes: config.maxBinaryBytes,
  });

  const guard = deps.verifyAccessToken ? authenticate(deps.verifyAccessToken) : async (_ctx: Context, next: Next) => next();
  const router = new Router();
  router.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', async (ctx) => {
    if (!deps.isReady()) {
      ctx.status = 503;
      ctx.body = { status: 'not ready' };
      return;
    }
    try {
      await db.query('SELECT 1');
      ctx.body = { status: 'ready' };
    } catch {
      ctx.status = 503;
      ctx.body = { status: 'database unavailable' };
    }
  });
  const handle = fhirHandler(fhir, { json: config.maxJsonBytes, binary: config.maxBinaryBytes }, deps.audit);
  router.all('/fhir', guard, handle);
  router.all('/fhir/{*rest}', guard, handle);

  app.use(requestId());
  app.use(logging(log));
  app.use(errors());
  app.use(securityHeaders());
  // The bundled web UI (ui/dist) under /app: a SMART app of this server, using only the FHIR API.
  app.use(uiStatic());
  app.use(fhirCors(db));
  if (deps.authRoutes) app.use(deps.authRoutes);
  if (deps.hl7Routes) {
    // Integration engineers and systems only: a token that may write every resource type.
    const hl7 = deps.hl7Routes;
    app.use(async (ctx, next) => {
      if (!ctx.path.startsWith('/hl7/')) return next();
      await guard(ctx, async () => {
        const auth = ctx.state.auth as AuthContext | undefined;
        if (auth) requireFullWriteAccess(auth);
        await hl7(ctx as never, next);
      });
    });
  }
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
