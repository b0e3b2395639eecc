// The authorization server's routes, as one Koa router mounted beside the FHIR routes.
import Router from '@koa/router';
import type { Context, Next } from 'koa';
import { accountGet, passwordPost, totpPost } from './account.ts';
import { clientsDelete, clientsGet, clientsPost, launchPost } from './admin-api.ts';
import { authorizeHandler, consentGet, consentPost, continueGet, pickerGet, pickerPost, signInGet, signInPost } from './authorize.ts';
import { logoutHandler, signOutPost } from './logout.ts';
import { registeredOrigins } from './clients.ts';
import { json, type AuthServices } from './service.ts';
import { openidConfiguration, smartConfiguration } from './smart-config.ts';
import { introspectHandler, revokeHandler, tokenHandler } from './token-endpoint.ts';

/** CORS: discovery and keys are public to any origin; the token endpoints to registered apps' origins. */
function cors(s: AuthServices) {
  let origins: { at: number; set: Set<string> } | undefined;
  return async (ctx: Context, next: Next) => {
    const origin = ctx.get('origin');
    if (origin) {
      const publicDoc = ctx.path.includes('/.well-known/') || ctx.path === '/oauth2/jwks';
      let allowed = publicDoc;
      if (!allowed && /^\/oauth2\/(token|introspect|revoke)$/.test(ctx.path)) {
        if (!origins || Date.now() - origins.at > 30_000) origins = { at: Date.now(), set: await registeredOrigins(s.db) };
        allowed = origins.set.has(origin);
      }
      if (allowed) {
        ctx.set('Access-Control-Allow-Origin', publicDoc ? '*' : origin);
        ctx.vary('Origin');
        if (ctx.method === 'OPTIONS') {
          ctx.set('Access-Control-Allow-Methods', 'GET, POST, OPTIONS');
          ctx.set('Access-Control-Allow-Headers', 'Authorization, Content-Type');
          ctx.set('Access-Control-Max-Age', '600');
          ctx.status = 204;
          return;
        }
      }
    }
    await next();
  };
}

export function createAuthRouter(s: AuthServices): Router {
  const router = new Router();
  const smart = (ctx: Context) => {
    ctx.set('Cache-Control', 'public, max-age=300');
    ctx.body = smartConfiguration(s.config.baseUrl, s.tokens.issuer);
  };
  router.use(['/.well-known/{*rest}', '/fhir/.well-known/{*rest}', '/oauth2/{*rest}'], cors(s));
  router.get('/.well-known/smart-configuration', smart);
  router.get('/fhir/.well-known/smart-configuration', smart);
  router.get('/.well-known/openid-configuration', (ctx) => {
    ctx.set('Cache-Control', 'public, max-age=300');
    ctx.body = openidConfiguration(s.config.baseUrl, s.tokens.issuer);
  });
  router.get('/oauth2/jwks', async (ctx) => {
    ctx.set('Cache-Control', 'public, max-age=300');
    ctx.type = 'application/jwk-set+json';
    ctx.body = await s.keys.jwks();
  });
  router.get('/oauth2/authorize', authorizeHandler(s));
  router.post('/oauth2/authorize', authorizeHandler(s));
  router.get('/oauth2/authorize/continue', continueGet(s));
  router.get('/oauth2/signin', signInGet(s));
  router.post('/oauth2/signin', signInPost(s));
  router.post('/oauth2/signout', signOutPost(s));
  router.get('/oauth2/logout', logoutHandler(s));
  router.post('/oauth2/logout', logoutHandler(s));
  router.get('/oauth2/pick-patient', pickerGet(s));
  router.post('/oauth2/pick-patient', pickerPost(s));
  router.get('/oauth2/consent', consentGet(s));
  router.post('/oauth2/consent', consentPost(s));
  router.get('/oauth2/account', accountGet(s));
  router.post('/oauth2/account/password', passwordPost(s));
  router.post('/oauth2/account/totp', totpPost(s));
  router.post('/oauth2/token', tokenHandler(s));
  router.post('/oauth2/introspect', introspectHandler(s));
  router.post('/oauth2/revoke', revokeHandler(s));
  router.post('/oauth2/launch', launchPost(s));
  router.get('/oauth2/clients', clientsGet(s));
  router.post('/oauth2/clients', clientsPost(s));
  router.delete('/oauth2/clients/:id', clientsDelete(s));
  router.all('/oauth2/{*rest}', (ctx) => json(ctx, 404, { error: 'invalid_request', error_description: 'Unknown authorization server endpoint' }));
  return router;
}
