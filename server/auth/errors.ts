// OAuth 2.0 errors (RFC 6749 §5.2, RFC 6750 §3.1): a status plus the error code the specs name.
// The token endpoints answer them as JSON; verifyAccessToken throws them for the FHIR doors.

export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'access_denied'
  | 'unsupported_response_type'
  | 'server_error'
  | 'invalid_token'
  | 'insufficient_scope'
  | 'unsupported_token_type'
  | 'slow_down';

export class OAuthError extends Error {
  readonly status: number;
  readonly error: OAuthErrorCode;
  readonly description: string;
  /** Seconds, for 429. */
  retryAfter?: number;

  constructor(status: number, error: OAuthErrorCode, description: string) {
    super(description);
    this.status = status;
    this.error = error;
    this.description = description;
  }

  /** The body RFC 6749 §5.2 names. */
  toJSON(): { error: string; error_description: string } {
    return { error: this.error, error_description: this.description };
  }

  /** WWW-Authenticate value for a refused bearer token (RFC 6750 §3). */
  bearerChallenge(realm = 'wardlink'): string {
    const desc = this.description.replace(/["\\]/g, '');
    return `Bearer realm="${realm}", error="${this.error}", error_description="${desc}"`;
  }
}

export const invalidRequest = (d: string) => new OAuthError(400, 'invalid_request', d);
export const invalidClient = (d: string) => new OAuthError(401, 'invalid_client', d);
export const invalidGrant = (d: string) => new OAuthError(400, 'invalid_grant', d);
export const invalidScope = (d: string) => new OAuthError(400, 'invalid_scope', d);
export const invalidToken = (d: string) => new OAuthError(401, 'invalid_token', d);
export const unauthorizedClient = (d: string) => new OAuthError(400, 'unauthorized_client', d);

export function tooManyRequests(retryAfter: number): OAuthError {
  const e = new OAuthError(429, 'slow_down', 'Too many requests; try again later');
  e.retryAfter = retryAfter;
  return e;
}
