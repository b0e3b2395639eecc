// The signed-in user's own account page: change password, turn TOTP two-factor sign-in on
// (or off, except for administrators).
import type { Context } from 'koa';
import { accountPage, csrfValid, errorPage } from './pages.ts';
import { readForm, type AuthServices } from './service.ts';
import { currentSession, type Session } from './sessions.ts';
import { generateTotpSecret, matchTotp, otpauthUri } from './totp.ts';
import { changePassword, setTotp } from './users.ts';

function show(ctx: Context, session: Session, status: number, extra: { message?: string; error?: string; newTotpSecret?: string } = {}): void {
  const u = session.user;
  accountPage(ctx, status, {
    username: u.username,
    fhirUser: u.fhirUser,
    hasTotp: u.hasTotp,
    isAdmin: u.role === 'admin',
    ...extra,
    otpauth: extra.newTotpSecret ? otpauthUri(extra.newTotpSecret, u.username) : undefined,
  });
}

async function sessionOrSignIn(s: AuthServices, ctx: Context): Promise<Session | undefined> {
  const session = await currentSession(s.db, ctx, s.config.auth.sessionIdleMinutes);
  if (!session) {
    ctx.status = 303;
    ctx.redirect(`${s.config.baseUrl}/oauth2/signin`);
  }
  return session;
}

export function accountGet(s: AuthServices) {
  return async (ctx: Context) => {
    const session = await sessionOrSignIn(s, ctx);
    if (session) show(ctx, session, 200);
  };
}

export function passwordPost(s: AuthServices) {
  return async (ctx: Context) => {
    const form = await readForm(ctx).catch(() => new URLSearchParams());
    if (!csrfValid(ctx, form.get('csrf'))) return errorPage(ctx, 403, 'Form expired', 'The form has expired. Go back and try again.');
    const session = await sessionOrSignIn(s, ctx);
    if (!session) return;
    const problem = await changePassword(s.db, session.user.id, form.get('current') ?? '', form.get('next') ?? '');
    if (problem) return show(ctx, session, 400, { error: problem });
    (ctx.state.log ?? s.log).info({ userId: session.user.id }, 'password changed');
    show(ctx, session, 200, { message: 'Your password is changed.' });
  };
}

export function totpPost(s: AuthServices) {
  return async (ctx: Context) => {
    const form = await readForm(ctx).catch(() => new URLSearchParams());
    if (!csrfValid(ctx, form.get('csrf'))) return errorPage(ctx, 403, 'Form expired', 'The form has expired. Go back and try again.');
    const session = await sessionOrSignIn(s, ctx);
    if (!session) return;
    const action = form.get('action');
    if (action === 'start') return show(ctx, session, 200, { newTotpSecret: generateTotpSecret() });
    if (action === 'confirm') {
      const secret = form.get('secret') ?? '';
      if (!/^[A-Z2-7]{32}$/.test(secret) || matchTotp(secret, form.get('code') ?? '') === undefined) {
        return show(ctx, session, 400, { error: 'The code does not match. Check the time on your device and try again.', newTotpSecret: /^[A-Z2-7]{32}$/.test(secret) ? secret : generateTotpSecret() });
      }
      await setTotp(s.db, session.user.id, secret);
      session.user.hasTotp = true;
      return show(ctx, session, 200, { message: 'Two-factor sign-in is on.' });
    }
    if (action === 'off' && session.user.role !== 'admin') {
      await setTotp(s.db, session.user.id, null);
      session.user.hasTotp = false;
      return show(ctx, session, 200, { message: 'Two-factor sign-in is off.' });
    }
    show(ctx, session, 400, { error: 'Unknown action.' });
  };
}
