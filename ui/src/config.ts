// Where the app finds its server: the same origin that serves it (the UI is a SMART app of its
// own server), and the timings of the session.
export const ORIGIN = location.origin;
export const FHIR_BASE = `${ORIGIN}/fhir`;
export const APP_BASE = '/app';
export const CLIENT_ID = 'wardlink-ui';
export const REDIRECT_URI = `${ORIGIN}${APP_BASE}/callback`;
/** Where the server's sign-out sends the browser back to (the app shows "You are signed out."). */
export const SIGNED_OUT_URI = `${ORIGIN}${APP_BASE}/?signed-out`;
/**
 * online_access: the refresh token lives as long as the server sign-in session, not 30 days.
 * Staff are granted the user/ scopes, patients only the patient/ ones (for their own record).
 */
export const SCOPES = 'openid fhirUser online_access user/*.cruds patient/*.cruds';

/** Signed out after this long without a key press, click or touch. */
export const IDLE_TIMEOUT_MS = 15 * 60_000;
/** The warning dialog shows this long before the idle sign-out. */
export const IDLE_WARNING_MS = 60_000;
/** Access tokens are refreshed this long before they expire. */
export const REFRESH_EARLY_MS = 60_000;
/**
 * ...and at least this often: an online_access refresh token lives only while the server's
 * sign-in session does (SESSION_IDLE_MINUTES, 15 by default), and a refresh is what keeps that
 * session alive (FHIR calls do not), so a working user is never cut off at the next refresh.
 */
export const SESSION_KEEPALIVE_MS = 4 * 60_000;
