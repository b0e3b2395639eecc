// The authorization server (SMART App Launch 2.2, SMART Backend Services) as one object the
// HTTP app mounts: startAuth(deps) loads the signing keys and the bootstrap client;
// auth.routes() serves discovery, authorize / token / introspect / revoke, the sign-in pages and
// the launch and client APIs; auth.verifyAccessToken(token) is what every FHIR door calls.
import type Router from '@koa/router';
import { contributeToCapabilities } from '../fhir/capability.ts';
import { registerClient } from './clients.ts';
import type { AuthContext } from './context.ts';
import { seedDemo, type DemoAccount } from './demo.ts';
import { KeyStore } from './keys.ts';
import { RateLimiter } from './rate-limit.ts';
import { createAuthRouter } from './router.ts';
import type { AuthDeps, AuthServices } from './service.ts';
import { addSmartSecurity } from './smart-config.ts';
import { TokenService } from './tokens.ts';
import { registerUiClient } from './ui-client.ts';

export { OAuthError } from './errors.ts';
export type { AuthContext } from './context.ts';
export type { AuthDeps } from './service.ts';
export { createAuthRouter } from './router.ts';
export type { DemoAccount } from './demo.ts';
export { UI_CLIENT_ID } from './ui-client.ts';

export interface AuthServer {
  readonly services: AuthServices;
  /** Koa middleware serving every authorization-server route (mount before the FHIR routes). */
  routes(): ReturnType<Router['routes']>;
  /** The caller behind an access token; throws OAuthError 401 invalid_token. */
  verifyAccessToken(token: string): Promise<AuthContext>;
  /** Demo users (one per role, admin with TOTP) and the UI client; returns what was created. */
  seedDemo(options?: { print?: boolean }): Promise<DemoAccount[]>;
}

let capabilityRegistered = false;
let latest: AuthServer | undefined;

export async function startAuth(deps: AuthDeps): Promise<AuthServer> {
  const { config, db, log } = deps;
  const keys = new KeyStore(db, config.auth);
  await keys.init();
  const services: AuthServices = { ...deps, keys, tokens: new TokenService(db, config, keys), limiter: new RateLimiter(db) };
  if (config.auth.bootstrapClientId && config.auth.bootstrapClientSecret) {
    await registerClient(db, {
      clientId: config.auth.bootstrapClientId,
      name: 'Bootstrap system client',
      kind: 'confidential',
      secret: config.auth.bootstrapClientSecret,
      scopes: 'system/*.cruds',
      grantTypes: ['client_credentials'],
    });
    log.info({ clientId: config.auth.bootstrapClientId }, 'bootstrap client registered');
  }
  if (config.port !== 0) {
    // The bundled UI at this server's own address (demo seeding adds localhost:8080 too).
    await registerUiClient(services, [`${config.baseUrl}/app/callback`]);
  }
  if (!capabilityRegistered) {
    capabilityRegistered = true;
    contributeToCapabilities(addSmartSecurity);
  }
  const router = createAuthRouter(services);
  const middleware = router.routes();
  const server: AuthServer = {
    services,
    routes: () => middleware,
    verifyAccessToken: (token) => services.tokens.verifyAccessToken(token),
    seedDemo: (options) => seedDemo(services, options),
  };
  latest = server;
  return server;
}

/**
 * Verifies an access token with the most recently started authorization server (the one of this
 * process). Prefer auth.verifyAccessToken where the AuthServer is at hand.
 */
export function verifyAccessToken(token: string): Promise<AuthContext> {
  if (!latest) throw new Error('the authorization server is not started');
  return latest.verifyAccessToken(token);
}
