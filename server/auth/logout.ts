// Ending the sign-in session from an app: OpenID Connect RP-Initiated Logout 1.0
// (GET/POST /oauth2/logout, advertised as end_session_endpoint). Revoking an app's tokens does
// not end the person's sign-in on this computer; this does.
//
// - With an id_token_hint we issued, for the person signed in here (or nobody), the session ends
//   at once: the app proves the request is its own.
// - Without one, the person is asked to confirm on a CSRF-protected page, so a link on another
//   site can't sign anyone out (logout CSRF).
// - post_logout_redirect_uri is followed only when it is on the origin of one of the client's
//   registered redirect URIs (no open redirect); `state` is passed back.
import type { Context } from 'koa';
import { compactVerify, decodeProtectedHeader } from 'jose';
import { getClient } from './clients.ts';
import { csrfToken, csrfValid, errorPage, escapeHtml, hidden, page } from './pages.ts';
import { readForm, type AuthServices } from './service.ts';
import { currentSession, endSession } from './sessions.ts';

interface LogoutRequest {
  idTokenHint?: string;
  clientId?: string;
  postLogoutRedirectUri?: string;
  state?: string;
}

function logoutRequest(p: URLSearchParams | Record<string, unknown>): LogoutRequest {
  const get = (k: string) => {
    const v = p instanceof URLSearchParams ? p.get(k) : p[k];
    return typeof v === 'string' && v.length > 0 && v.length <= 8192 ? v : undefined;
  };
  return { idTokenHint: get('id_token_hint'), clientId: get('client_id'), postLogoutRedirectUri: get('post_logout_redirect_uri'), state: get('state') };
}

/** The subject and client of an id token this server signed. Expired hints are fine (the spec allows them). */
async function verifyHint(s: AuthServices, token: string): Promise<{ sub: string; aud: string } | undefined> {
  try {
    const key = await s.keys.keyFor(decodeProtectedHeader(token).kid);
    if (!key) return undefined;
    const { payload } = await compactVerify(token, key.key, { algorithms: [key.alg] });
    const claims = JSON.parse(new TextDecoder().decode(payload)) as { iss?: string; sub?: string; aud?: string | string[] };
    const aud = Array.isArray(claims.aud) ? claims.aud[0] : claims.aud;
    if (claims.iss !== s.tokens.issuer || !claims.sub || !aud) return undefined;
    return { sub: claims.sub, aud };
  } catch {
    return undefined;
  }
}

/** Where to send the browser afterwards, if the client registered that origin; an error text otherwise. */
async function redirectTarget(s: AuthServices, r: LogoutRequest, clientId: string | undefined): Promise<{ url?: string; error?: string }> {
  if (!r.postLogoutRedirectUri) return {};
  if (!clientId) return { error: 'post_logout_redirect_uri needs client_id or id_token_hint to say which application asks.' };
  const client = await getClient(s.db, clientId);
  let target: URL;
  try {
    target = new URL(r.postLogoutRedirectUri);
  } catch {
    return { error: 'post_logout_redirect_uri is not an absolute URL.' };
  }
  const origins = new Set((client?.redirectUris ?? []).map((u) => new URL(u).origin));
  if (!client || client.disabled || !origins.has(target.origin)) {
    return { error: 'post_logout_redirect_uri is not registered for this application.' };
  }
  if (r.state) target.searchParams.set('state', r.state);
  return { url: target.toString() };
}

function signedOut(ctx: Context, url: string | undefined): void {
  if (url) {
    ctx.set('Cache-Control', 'no-store');
    ctx.status = 303;
    ctx.redirect(url);
    return;
  }
  errorPage(ctx, 200, 'Signed out', 'You are signed out.');
}

/** GET or POST /oauth2/logout (the app's request). */
export function logoutHandler(s: AuthServices) {
  return async (ctx: Context) => {
    const r = logoutRequest(ctx.method === 'POST' ? await readForm(ctx).catch(() => new URLSearchParams()) : ctx.query);
    const hint = r.idTokenHint ? await verifyHint(s, r.idTokenHint) : undefined;
    if (r.idTokenHint && !hint) return errorPage(ctx, 400, 'Sign-out refused', 'The id_token_hint was not issued by this server.');
    if (hint && r.clientId && hint.aud !== r.clientId) return errorPage(ctx, 400, 'Sign-out refused', 'client_id does not match the id_token_hint.');
    const clientId = hint?.aud ?? r.clientId;
    const target = await redirectTarget(s, r, clientId);
    if (target.error) return errorPage(ctx, 400, 'Sign-out refused', target.error);

    const session = await currentSession(s.db, ctx, s.config.auth.sessionIdleMinutes);
    if (!session || (hint && hint.sub === session.user.id)) {
      if (session) await endSession(s.db, ctx);
      return signedOut(ctx, target.url);
    }
    // No proof the app asked for it (or a hint for someone else): the person decides.
    page(
      ctx,
      200,
      'Sign out?',
      `<p>An application asks to sign you out of Wardlink on this computer.</p>
<form method="post" action="/oauth2/signout">${hidden('csrf', csrfToken(ctx))}${hidden('client_id', clientId)}${hidden('post_logout_redirect_uri', r.postLogoutRedirectUri)}${hidden('state', r.state)}<button type="submit">Sign out</button></form>
<p class="note">Signed in as ${escapeHtml(session.user.username)}.</p>`,
    );
  };
}

/** POST /oauth2/signout: the account page's button and the confirmation above. */
export function signOutPost(s: AuthServices) {
  return async (ctx: Context) => {
    const form = await readForm(ctx).catch(() => new URLSearchParams());
    if (!csrfValid(ctx, form.get('csrf'))) return errorPage(ctx, 403, 'Form expired', 'The form has expired. Go back and try again.');
    const r = logoutRequest(form);
    const target = await redirectTarget(s, r, r.clientId);
    await endSession(s.db, ctx);
    signedOut(ctx, target.url);
  };
}
