// The authorization endpoint and the pages behind it: GET/POST /oauth2/authorize checks the
// request (client, exact redirect_uri, PKCE S256, aud, launch), then the browser goes through
// sign-in, the patient picker (standalone launch/patient) and consent, and comes back to the
// app's redirect_uri with a one-time code.
import { randomUUID } from 'node:crypto';
import type { Patient, RelatedPerson, HumanName } from '@medplum/fhirtypes';
import type { Context } from 'koa';
import { Repository } from '../fhir/repository.ts';
import { search } from '../fhir/search/search.ts';
import { AccessPolicy } from './access.ts';
import { getClient, type ClientRecord } from './clients.ts';
import { OAuthError } from './errors.ts';
import { consentPage, csrfValid, errorPage, pickerPage, signInPage, type PatientChoice } from './pages.ts';
import { randomToken, sha256 } from './passwords.ts';
import { grantScopes, splitScopes, type ScopeContext } from './scope-grants.ts';
import { readForm, type AuthServices } from './service.ts';
import { currentSession, endSession, startSession, type Session } from './sessions.ts';
import type { GrantDetails } from './token-endpoint.ts';
import { rateKeys } from './token-endpoint.ts';
import { signIn } from './users.ts';

const REQUEST_MINUTES = 15;
const CODE_SECONDS = 120;

/** The authorization request as checked, kept between the redirects of sign-in, picker, consent. */
interface PendingRequest {
  clientId: string;
  redirectUri: string;
  scopes: string[];
  state: string;
  codeChallenge: string;
  nonce?: string;
  launch?: { id: string; patient?: string; encounter?: string; createdBy?: string };
  /** Chosen in the picker. */
  patient?: string;
  consented?: boolean;
}

function redirectWith(ctx: Context, base: string, params: Record<string, string | undefined>, status = 302): void {
  const url = new URL(base);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) url.searchParams.set(k, v);
  ctx.set('Cache-Control', 'no-store');
  ctx.status = status;
  ctx.redirect(url.toString());
}

function displayName(name: HumanName[] | undefined): string {
  const n = name?.find((x) => x.use === 'official') ?? name?.[0];
  if (!n) return '(no name)';
  return n.text ?? [...(n.given ?? []), n.family].filter(Boolean).join(' ');
}

export function authorizeHandler(s: AuthServices) {
  return async (ctx: Context) => {
    const params = ctx.method === 'POST' ? await readForm(ctx).catch(() => new URLSearchParams()) : new URLSearchParams(ctx.querystring);
    const get = (n: string) => {
      const all = params.getAll(n);
      return all.length === 1 && all[0] !== '' ? all[0] : undefined;
    };
    // Errors about the client or redirect URI are shown here: never redirect to an unchecked URI.
    const clientId = get('client_id');
    const client = clientId ? await getClient(s.db, clientId) : undefined;
    if (!client) return errorPage(ctx, 400, 'Unknown application', 'The application (client_id) is not registered with this server.');
    const redirectUri = get('redirect_uri');
    if (!redirectUri || !client.redirectUris.includes(redirectUri)) {
      return errorPage(ctx, 400, 'Wrong redirect address', 'The redirect_uri is missing or is not one registered for this application.');
    }
    const state = get('state');
    const fail = (error: string, description: string) => redirectWith(ctx, redirectUri, { error, error_description: description, state });
    if (get('response_type') !== 'code') return fail('unsupported_response_type', 'response_type must be code');
    if (!client.grantTypes.includes('authorization_code')) return fail('unauthorized_client', 'This client may not use the authorization code flow');
    if (!state) return fail('invalid_request', 'state is required');
    const method = get('code_challenge_method');
    const challenge = get('code_challenge');
    if (!challenge) return fail('invalid_request', 'PKCE is required: send code_challenge with code_challenge_method=S256');
    if (method !== 'S256') return fail('invalid_request', 'code_challenge_method must be S256 (plain is not accepted)');
    if (!/^[A-Za-z0-9\-_]{43}$/.test(challenge)) return fail('invalid_request', 'code_challenge must be a base64url SHA-256 (43 characters)');
    const aud = get('aud')?.replace(/\/+$/, '');
    if (aud !== s.tokens.fhirBase) return fail('invalid_request', `aud must be this server's FHIR base URL (${s.tokens.fhirBase})`);
    const scopes = splitScopes(get('scope'));
    if (scopes.length === 0) return fail('invalid_scope', 'scope is required');
    const pending: PendingRequest = { clientId: client.clientId, redirectUri, scopes, state, codeChallenge: challenge, nonce: get('nonce') };
    const launchId = get('launch');
    if (launchId) {
      const { rows } = await s.db.query<{ patient: string | null; encounter: string | null; created_by: string | null; client_id: string | null }>(
        'SELECT patient, encounter, created_by, client_id FROM auth_launch WHERE id = $1 AND expires_at > now()',
        [launchId],
      );
      const l = rows[0];
      if (!l || (l.client_id && l.client_id !== client.clientId)) return fail('invalid_request', 'The launch parameter is unknown or has expired');
      pending.launch = { id: launchId, patient: l.patient ?? undefined, encounter: l.encounter ?? undefined, createdBy: l.created_by ?? undefined };
    }
    const id = randomToken();
    await s.db.query(`INSERT INTO auth_request (id, params, expires_at) VALUES ($1, $2, now() + make_interval(mins => $3))`, [
      id,
      JSON.stringify(pending),
      REQUEST_MINUTES,
    ]);
    await sweep(s);
    await continueAuthorization(s, ctx, id, 302);
  };
}

let lastSweep = 0;

/** Deletes what has expired (requests, codes, launches, sessions, refresh tokens), at most once a minute. */
async function sweep(s: AuthServices): Promise<void> {
  if (Date.now() - lastSweep < 60_000) return;
  lastSweep = Date.now();
  await s.db.query('DELETE FROM auth_request WHERE expires_at < now()');
  await s.db.query(`DELETE FROM auth_code WHERE expires_at < now() - interval '1 day'`);
  await s.db.query('DELETE FROM auth_launch WHERE expires_at < now()');
  await s.db.query(`DELETE FROM auth_session WHERE last_seen < now() - interval '2 days'`);
  await s.db.query(`DELETE FROM auth_refresh WHERE expires_at < now() - interval '1 day'`);
  await s.db.query(`DELETE FROM auth_revocation WHERE expires_at < now()`);
}

async function loadRequest(s: AuthServices, id: string | undefined | null): Promise<PendingRequest | undefined> {
  if (!id || id.length > 100) return undefined;
  const { rows } = await s.db.query<{ params: PendingRequest }>('SELECT params FROM auth_request WHERE id = $1 AND expires_at > now()', [id]);
  return rows[0]?.params;
}

async function saveRequest(s: AuthServices, id: string, p: PendingRequest): Promise<void> {
  await s.db.query('UPDATE auth_request SET params = $2 WHERE id = $1', [id, JSON.stringify(p)]);
}

function expired(ctx: Context): void {
  errorPage(ctx, 400, 'Sign-in expired', 'This sign-in request has expired or is not known. Go back to the application and start again.');
}

/** Takes the request as far as it can go: sign-in, picker, consent, then the code. */
async function continueAuthorization(s: AuthServices, ctx: Context, requestId: string, status: number): Promise<void> {
  const p = await loadRequest(s, requestId);
  if (!p) return expired(ctx);
  const client = await getClient(s.db, p.clientId);
  if (!client) return expired(ctx);
  const back = (error: string, description: string) => redirectWith(ctx, p.redirectUri, { error, error_description: description, state: p.state }, status);
  const session = await currentSession(s.db, ctx, s.config.auth.sessionIdleMinutes);
  if (!session) return redirectWith(ctx, `${s.config.baseUrl}/oauth2/signin`, { request: requestId }, status);
  if (p.launch?.createdBy && p.launch.createdBy !== session.user.id) {
    return back('access_denied', 'The launch belongs to another user');
  }

  const user = session.user;
  const contexts: ScopeContext[] = user.role === 'patient' ? ['patient'] : ['patient', 'user'];
  let granted = grantScopes(p.scopes, client.scopes, contexts);

  let patient = p.launch?.patient;
  const encounter = p.launch?.encounter;
  if (!p.launch) granted = granted.filter((x) => x !== 'launch');
  if (user.role === 'patient') {
    patient = await ownPatient(s, user.fhirUser);
  } else if (!p.launch && granted.includes('launch/patient')) {
    if (!p.patient) return redirectWith(ctx, `${s.config.baseUrl}/oauth2/pick-patient`, { request: requestId }, status);
    patient = p.patient;
  }
  if (!patient) granted = granted.filter((x) => !x.startsWith('patient/') && x !== 'launch/patient');
  if (!encounter) granted = granted.filter((x) => x !== 'launch/encounter');
  if (!granted.some((x) => /^(patient|user)\//.test(x) || x === 'openid')) {
    return back('invalid_scope', 'None of the requested scopes may be granted');
  }

  if (!client.trusted && !p.consented) return redirectWith(ctx, `${s.config.baseUrl}/oauth2/consent`, { request: requestId }, status);

  const grantId = randomUUID();
  const code = randomToken();
  const details: GrantDetails = {
    scopes: granted,
    userId: user.id,
    fhirUser: user.fhirUser,
    role: user.role,
    organization: user.organization,
    patient,
    encounter,
    nonce: p.nonce,
    authTime: Math.floor(Date.now() / 1000),
    sessionId: session.id,
    codeChallenge: p.codeChallenge,
    ehrLaunch: !!p.launch,
  };
  await s.db.query('INSERT INTO auth_grant (id, client_id, user_id, session_id) VALUES ($1, $2, $3, $4)', [grantId, client.clientId, user.id, session.id]);
  await s.db.query(
    `INSERT INTO auth_code (code_hash, grant_id, client_id, redirect_uri, details, expires_at) VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))`,
    [sha256(code), grantId, client.clientId, p.redirectUri, JSON.stringify(details), CODE_SECONDS],
  );
  await s.db.query('DELETE FROM auth_request WHERE id = $1', [requestId]);
  if (p.launch) await s.db.query('DELETE FROM auth_launch WHERE id = $1', [p.launch.id]);
  (ctx.state.log ?? s.log).info({ clientId: client.clientId, userId: user.id, scopes: granted }, 'authorization granted');
  redirectWith(ctx, p.redirectUri, { code, state: p.state }, status);
}

/** The patient a patient-role user stands for: themself, or the patient a RelatedPerson is for. */
async function ownPatient(s: AuthServices, fhirUser: string): Promise<string | undefined> {
  const [type, id] = fhirUser.split('/');
  if (type === 'Patient') return id;
  if (type !== 'RelatedPerson') return undefined;
  try {
    const rp = await repo(s).readResource<RelatedPerson>('RelatedPerson', id);
    return rp.patient?.reference?.replace(/^Patient\//, '');
  } catch {
    return undefined;
  }
}

function repo(s: AuthServices): Repository {
  return new Repository(s.db, { baseUrl: `${s.config.baseUrl}/fhir` }, s.db);
}

// ------------------------------------------------------------------------------------ sign-in

export function signInGet(s: AuthServices) {
  return async (ctx: Context) => {
    const requestId = ctx.query.request as string | undefined;
    const p = requestId ? await loadRequest(s, requestId) : undefined;
    if (requestId && !p) return expired(ctx);
    const client = p ? await getClient(s.db, p.clientId) : undefined;
    signInPage(ctx, 200, { request: requestId, clientName: client?.name });
  };
}

const REASONS: Record<string, string> = {
  invalid: 'The username, password or one-time code is not right.',
  'totp-required': 'Enter the one-time code from your authenticator app.',
  locked: 'This account is locked after too many failed sign-ins. Try again later or ask an administrator.',
  disabled: 'This account is disabled.',
  'totp-setup-required': 'Administrators must use two-factor sign-in. Ask another administrator to set it up for you (npm run admin -- enable-totp).',
};

export function signInPost(s: AuthServices) {
  return async (ctx: Context) => {
    const form = await readForm(ctx).catch(() => new URLSearchParams());
    const requestId = form.get('request') ?? undefined;
    const username = (form.get('username') ?? '').slice(0, 64);
    try {
      await s.limiter.hit([
        [`signin:${ctx.ip}`, s.config.auth.signInRatePerIp],
        ...rateKeys(s, ctx, undefined),
      ]);
    } catch (e) {
      if (e instanceof OAuthError && e.retryAfter) ctx.set('Retry-After', String(e.retryAfter));
      return signInPage(ctx, 429, { request: requestId, username, error: 'Too many sign-in attempts from here. Wait a minute and try again.' });
    }
    if (!csrfValid(ctx, form.get('csrf'))) return signInPage(ctx, 403, { request: requestId, username, error: 'The form has expired. Please sign in again.' });
    const result = await signIn(s.db, s.config.auth, username, form.get('password') ?? '', form.get('otp') ?? undefined);
    const log = ctx.state.log ?? s.log;
    if (!result.ok) {
      log.info({ username, reason: result.reason, ip: ctx.ip }, 'sign-in refused');
      s.audit?.login({ success: false, username, address: ctx.ip, reason: result.reason });
      const status = result.reason === 'locked' ? 423 : result.reason === 'disabled' || result.reason === 'totp-setup-required' ? 403 : 401;
      return signInPage(ctx, status, { request: requestId, username, error: REASONS[result.reason] });
    }
    log.info({ userId: result.user.id, fhirUser: result.user.fhirUser }, 'signed in');
    s.audit?.login({ success: true, username, fhirUser: result.user.fhirUser, address: ctx.ip });
    await endSession(s.db, ctx);
    await startSession(s.db, ctx, result.user.id);
    if (requestId) {
      // The new session cookie is set on this response; the next request carries it.
      ctx.status = 303;
      ctx.redirect(`${s.config.baseUrl}/oauth2/authorize/continue?request=${encodeURIComponent(requestId)}`);
      return;
    }
    ctx.status = 303;
    ctx.redirect(`${s.config.baseUrl}/oauth2/account`);
  };
}

export function continueGet(s: AuthServices) {
  return async (ctx: Context) => continueAuthorization(s, ctx, String(ctx.query.request ?? ''), 302);
}

// ----------------------------------------------------------------------------- patient picker

async function requireSession(s: AuthServices, ctx: Context): Promise<Session | undefined> {
  return currentSession(s.db, ctx, s.config.auth.sessionIdleMinutes);
}

/**
 * The checks every page of a pending authorization (picker, consent) starts with: the request is
 * still pending and the user is signed in. Answers the request itself when one fails.
 */
async function pendingStepPage(s: AuthServices, ctx: Context) {
  const requestId = String(ctx.query.request ?? '');
  const p = await loadRequest(s, requestId);
  if (!p) return void expired(ctx);
  const session = await requireSession(s, ctx);
  if (!session) return void redirectWith(ctx, `${s.config.baseUrl}/oauth2/signin`, { request: requestId });
  return { requestId, p, session };
}

export function pickerGet(s: AuthServices) {
  return async (ctx: Context) => {
    const step = await pendingStepPage(s, ctx);
    if (!step) return;
    const { requestId, p, session } = step;
    const client = (await getClient(s.db, p.clientId)) as ClientRecord;
    const q = String(ctx.query.q ?? '').slice(0, 100);
    pickerPage(ctx, { request: requestId, q, patients: await findPatients(s, session, { name: q }), clientName: client?.name ?? p.clientId });
  };
}

/**
 * The patients the signed-in user may pick: the access rules of a user-level Patient search
 * (access.ts: a clinician sees their organisation's patients, not every patient on the server).
 */
async function findPatients(s: AuthServices, session: Session, by: { name?: string; id?: string }): Promise<PatientChoice[]> {
  const params: [string, string][] = [['_count', '20']];
  if (by.name?.trim()) params.push(['name', by.name.trim()]);
  if (by.id !== undefined) params.push(['_id', by.id]);
  const u = session.user;
  const policy = new AccessPolicy({ subject: u.id, clientId: '', scopes: ['user/Patient.rs'], fhirUser: u.fhirUser, role: u.role, organization: u.organization, jti: '' });
  const restriction = policy.check('Patient', 's');
  const fhirBase = `${s.config.baseUrl}/fhir`;
  const access = (type: string) => (type === 'Patient' ? restriction : undefined);
  const bundle = JSON.parse(await search(s.db, { resourceType: 'Patient', params }, { fhirBase, defaultCount: 20, maxCount: 50, strict: false, access })) as {
    entry?: { resource?: Patient }[];
  };
  return (bundle.entry ?? [])
    .map((e) => e.resource)
    .filter((r): r is Patient => r?.resourceType === 'Patient')
    .map((r) => ({ id: r.id as string, name: displayName(r.name), birthDate: r.birthDate }));
}

/**
 * The checks every form step of a pending authorization (patient picker, consent) starts with:
 * the request is still pending, the form is ours (CSRF), the user is signed in. Answers the
 * request itself and returns undefined when one fails.
 */
async function pendingStepForm(s: AuthServices, ctx: Context) {
  const form = await readForm(ctx).catch(() => new URLSearchParams());
  const requestId = form.get('request') ?? '';
  const p = await loadRequest(s, requestId);
  if (!p) return void expired(ctx);
  if (!csrfValid(ctx, form.get('csrf'))) return void errorPage(ctx, 403, 'Form expired', 'The form has expired. Go back and try again.');
  const session = await requireSession(s, ctx);
  if (!session) return void redirectWith(ctx, `${s.config.baseUrl}/oauth2/signin`, { request: requestId }, 303);
  return { form, requestId, p, session };
}

export function pickerPost(s: AuthServices) {
  return async (ctx: Context) => {
    const step = await pendingStepForm(s, ctx);
    if (!step) return;
    const { form, requestId, p, session } = step;
    const patientId = form.get('patient') ?? '';
    // Only a patient the picker would have listed for this user (a forged form can't widen it).
    const allowed = /^[A-Za-z0-9\-.]{1,64}$/.test(patientId) && (await findPatients(s, session, { id: patientId })).length === 1;
    if (!allowed) {
      const client = await getClient(s.db, p.clientId);
      return pickerPage(ctx, { request: requestId, q: '', patients: await findPatients(s, session, {}), clientName: client?.name ?? p.clientId, error: 'Choose a patient from the list.' });
    }
    p.patient = patientId;
    await saveRequest(s, requestId, p);
    await continueAuthorization(s, ctx, requestId, 303);
  };
}

// ------------------------------------------------------------------------------------ consent

export function consentGet(s: AuthServices) {
  return async (ctx: Context) => {
    const step = await pendingStepPage(s, ctx);
    if (!step) return;
    const { requestId, p, session } = step;
    const client = await getClient(s.db, p.clientId);
    if (!client) return expired(ctx);
    const contexts: ScopeContext[] = session.user.role === 'patient' ? ['patient'] : ['patient', 'user'];
    const scopes = grantScopes(p.scopes, client.scopes, contexts);
    let patientName: string | undefined;
    const patientId = p.launch?.patient ?? p.patient;
    if (patientId) {
      try {
        patientName = displayName((await repo(s).readResource<Patient>('Patient', patientId)).name);
      } catch {
        patientName = undefined;
      }
    }
    consentPage(ctx, { request: requestId, clientName: client.name, scopes, patientName });
  };
}

export function consentPost(s: AuthServices) {
  return async (ctx: Context) => {
    const step = await pendingStepForm(s, ctx);
    if (!step) return;
    const { form, requestId, p } = step;
    if (form.get('decision') !== 'allow') {
      await s.db.query('DELETE FROM auth_request WHERE id = $1', [requestId]);
      return redirectWith(ctx, p.redirectUri, { error: 'access_denied', error_description: 'The user denied access', state: p.state }, 303);
    }
    p.consented = true;
    await saveRequest(s, requestId, p);
    await continueAuthorization(s, ctx, requestId, 303);
  };
}

