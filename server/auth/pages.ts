// The server-rendered pages of sign-in: plain, accessible HTML (labels on every field, one
// heading per page, no script), every form carrying a CSRF token. Text is escaped here, once.
import { timingSafeEqual } from 'node:crypto';
import type { Context } from 'koa';
import { randomToken } from './passwords.ts';

const CSRF_COOKIE = 'wl_csrf';

export function escapeHtml(s: unknown): string {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

/** The CSRF token of this browser (double-submit: a cookie and the same value in each form). */
export function csrfToken(ctx: Context): string {
  let token = ctx.cookies.get(CSRF_COOKIE);
  if (!token || !/^[A-Za-z0-9_-]{43}$/.test(token)) {
    token = randomToken();
    ctx.cookies.set(CSRF_COOKIE, token, { httpOnly: true, sameSite: 'lax', secure: ctx.secure, path: '/oauth2', overwrite: true });
  }
  return token;
}

export function csrfValid(ctx: Context, submitted: string | null): boolean {
  const cookie = ctx.cookies.get(CSRF_COOKIE);
  if (!cookie || !submitted || cookie.length !== submitted.length) return false;
  return timingSafeEqual(Buffer.from(cookie), Buffer.from(submitted));
}

const STYLE = `body{font-family:system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1a1a1a}
label{display:block;margin-top:1rem;font-weight:600}input[type=text],input[type=password],input[type=search]{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}
button{margin-top:1.25rem;padding:.5rem 1.25rem;font-size:1rem;margin-right:.5rem}.error{color:#a00000;border-left:4px solid #a00000;padding-left:.75rem}
.note{color:#444}fieldset{border:1px solid #ccc;margin-top:1rem}li{margin:.25rem 0}code{word-break:break-all}`;

export function page(ctx: Context, status: number, title: string, body: string): void {
  ctx.status = status;
  ctx.type = 'text/html; charset=utf-8';
  ctx.set('Cache-Control', 'no-store');
  ctx.set('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'");
  ctx.body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} - Wardlink</title><style>${STYLE}</style></head>
<body><main><h1>${escapeHtml(title)}</h1>
${body}
</main></body></html>`;
}

export function errorBlock(message: string | undefined): string {
  return message ? `<p class="error" role="alert">${escapeHtml(message)}</p>` : '';
}

export function hidden(name: string, value: string | undefined): string {
  return value === undefined ? '' : `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`;
}

export function errorPage(ctx: Context, status: number, title: string, message: string): void {
  page(ctx, status, title, `<p>${escapeHtml(message)}</p>`);
}

export function signInPage(ctx: Context, status: number, o: { request?: string; error?: string; username?: string; clientName?: string }): void {
  const intro = o.clientName ? `<p>Sign in to let <strong>${escapeHtml(o.clientName)}</strong> use your Wardlink account.</p>` : '';
  page(
    ctx,
    status,
    'Sign in',
    `${intro}${errorBlock(o.error)}
<form method="post" action="/oauth2/signin">
${hidden('csrf', csrfToken(ctx))}${hidden('request', o.request)}
<label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" required value="${escapeHtml(o.username ?? '')}">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<label for="otp">One-time code <span class="note">(if two-factor sign-in is on for you)</span></label>
<input type="text" id="otp" name="otp" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]*">
<button type="submit">Sign in</button>
</form>`,
  );
}

export interface PatientChoice {
  id: string;
  name: string;
  birthDate?: string;
}

export function pickerPage(ctx: Context, o: { request: string; q: string; patients: PatientChoice[]; clientName: string; error?: string }): void {
  const list = o.patients.length
    ? `<fieldset><legend>Patients</legend>${o.patients
        .map(
          (p, i) =>
            `<div><input type="radio" name="patient" id="p${i}" value="${escapeHtml(p.id)}"${i === 0 ? ' required' : ''}> <label for="p${i}" style="display:inline;font-weight:normal">${escapeHtml(p.name)}${p.birthDate ? `, born ${escapeHtml(p.birthDate)}` : ''}</label></div>`,
        )
        .join('\n')}</fieldset><button type="submit">Continue with this patient</button>`
    : '<p>No patient matches.</p>';
  page(
    ctx,
    200,
    'Choose a patient',
    `<p><strong>${escapeHtml(o.clientName)}</strong> asks for a patient to work with.</p>${errorBlock(o.error)}
<form method="get" action="/oauth2/pick-patient">${hidden('request', o.request)}
<label for="q">Search by name</label><input type="search" id="q" name="q" value="${escapeHtml(o.q)}"><button type="submit">Search</button></form>
<form method="post" action="/oauth2/pick-patient">${hidden('csrf', csrfToken(ctx))}${hidden('request', o.request)}
${list}</form>`,
  );
}

const SCOPE_WORDS: Record<string, string> = {
  openid: 'Know who you are (your name and Wardlink identity)',
  fhirUser: 'Know which person record is yours',
  profile: 'Know your name',
  launch: 'Open in the context of the record you are working on',
  'launch/patient': 'Know which patient is in context',
  'launch/encounter': 'Know which encounter is in context',
  offline_access: 'Keep access when you are not signed in (until you revoke it)',
  online_access: 'Keep access while you stay signed in',
};

function describeScope(scope: string): string {
  if (SCOPE_WORDS[scope]) return SCOPE_WORDS[scope];
  const m = /^(patient|user|system)\/(\*|\w+)\.([a-z*]+)(\?.*)?$/.exec(scope);
  if (!m) return scope;
  const [, context, type, action, query] = m;
  const verbs = action === 'read' ? 'read and search' : action === 'write' ? 'create, update and delete' : action === '*' ? 'read and write' : [...action].map((c) => ({ c: 'create', r: 'read', u: 'update', d: 'delete', s: 'search' })[c]).join(', ');
  const what = type === '*' ? 'all kinds of records' : `${type} records`;
  const whose = context === 'patient' ? "of the patient in context" : context === 'user' ? 'you have access to' : 'on the whole server';
  return `${verbs[0].toUpperCase()}${verbs.slice(1)} ${what} ${whose}${query ? ` (only ${query.slice(1)})` : ''}`;
}

export function consentPage(ctx: Context, o: { request: string; clientName: string; scopes: string[]; patientName?: string }): void {
  page(
    ctx,
    200,
    'Allow access?',
    `<p><strong>${escapeHtml(o.clientName)}</strong> asks to:</p>
<ul>${o.scopes.map((s) => `<li>${escapeHtml(describeScope(s))} <code class="note">${escapeHtml(s)}</code></li>`).join('')}</ul>
${o.patientName ? `<p>Patient: <strong>${escapeHtml(o.patientName)}</strong></p>` : ''}
<form method="post" action="/oauth2/consent">${hidden('csrf', csrfToken(ctx))}${hidden('request', o.request)}
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>`,
  );
}

export function accountPage(
  ctx: Context,
  status: number,
  o: { username: string; fhirUser: string; hasTotp: boolean; isAdmin: boolean; message?: string; error?: string; newTotpSecret?: string; otpauth?: string },
): void {
  const csrf = hidden('csrf', csrfToken(ctx));
  const totp = o.hasTotp
    ? `<p>Two-factor sign-in is on.</p>${
        o.isAdmin ? '<p class="note">Administrators must keep it on.</p>' : `<form method="post" action="/oauth2/account/totp">${csrf}${hidden('action', 'off')}<button type="submit">Turn two-factor sign-in off</button></form>`
      }`
    : o.newTotpSecret
      ? `<p>Add this key to your authenticator app, then enter the code it shows.</p><p>Key: <code>${escapeHtml(o.newTotpSecret)}</code></p><p class="note">Or open <code>${escapeHtml(o.otpauth)}</code></p>
<form method="post" action="/oauth2/account/totp">${csrf}${hidden('action', 'confirm')}${hidden('secret', o.newTotpSecret)}
<label for="code">Code from the app</label><input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required>
<button type="submit">Turn on</button></form>`
      : `<p>Two-factor sign-in is off.</p><form method="post" action="/oauth2/account/totp">${csrf}${hidden('action', 'start')}<button type="submit">Set up two-factor sign-in</button></form>`;
  page(
    ctx,
    status,
    'Your account',
    `${o.message ? `<p role="status">${escapeHtml(o.message)}</p>` : ''}${errorBlock(o.error)}
<p>Signed in as <strong>${escapeHtml(o.username)}</strong> (${escapeHtml(o.fhirUser)}).</p>
<h2>Change password</h2>
<form method="post" action="/oauth2/account/password">${csrf}
<label for="current">Current password</label><input type="password" id="current" name="current" autocomplete="current-password" required>
<label for="next">New password (at least 10 characters)</label><input type="password" id="next" name="next" autocomplete="new-password" required minlength="10">
<button type="submit">Change password</button></form>
<h2>Two-factor sign-in</h2>${totp}
<form method="post" action="/oauth2/signout">${csrf}<button type="submit">Sign out</button></form>`,
  );
}
