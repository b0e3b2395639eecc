// Access tokens (JWT, RFC 9068 profile, signed with a key from the JWKS), ID tokens (OpenID
// Connect, with the fhirUser claim), and their verification for every FHIR request: the
// signature is checked with cached keys, and revocations are kept in memory, synced from the
// database at most every 2 s (so a revocation in another process takes effect within 2 s).
// Verified tokens are cached until they expire, so a repeated token costs a map lookup.
import { randomUUID } from 'node:crypto';
import { decodeProtectedHeader, errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import type { Config } from '../config.ts';
import type { Queryable } from '../db/pool.ts';
import { ROLES, type AuthContext, type Role } from './context.ts';
import { invalidToken, OAuthError } from './errors.ts';
import type { KeyStore } from './keys.ts';

export interface AccessTokenInput {
  subject: string;
  clientId: string;
  scopes: string[];
  fhirUser?: string;
  role?: Role;
  organization?: string;
  patient?: string;
  encounter?: string;
  grantId?: string;
}

interface AccessClaims {
  sub: string;
  client_id: string;
  scope: string;
  jti: string;
  exp: number;
  iat: number;
  fhirUser?: string;
  role?: string;
  org?: string;
  patient?: string;
  encounter?: string;
  grant?: string;
}

const SYNC_MS = 2_000;
const CACHE_MAX = 10_000;

export class TokenService {
  private readonly db: Queryable;
  private readonly config: Config;
  readonly keys: KeyStore;
  private revokedJti = new Map<string, number>();
  private revokedGrant = new Map<string, number>();
  private syncedAt = 0;
  private cursor?: string;
  private syncing?: Promise<void>;
  private cache = new Map<string, { auth: AuthContext; exp: number; grant?: string }>();

  constructor(db: Queryable, config: Config, keys: KeyStore) {
    this.db = db;
    this.config = config;
    this.keys = keys;
  }

  get issuer(): string {
    return this.config.auth.issuer ?? this.config.baseUrl;
  }

  get fhirBase(): string {
    return `${this.config.baseUrl}/fhir`;
  }

  get tokenUrl(): string {
    return `${this.config.baseUrl}/oauth2/token`;
  }

  async issueAccessToken(input: AccessTokenInput): Promise<{ token: string; jti: string; expiresIn: number }> {
    const key = this.keys.signingKey;
    const jti = randomUUID();
    const ttl = this.config.auth.accessTokenTtl;
    const claims: Record<string, unknown> = { client_id: input.clientId, scope: input.scopes.join(' ') };
    if (input.fhirUser) claims.fhirUser = `${this.fhirBase}/${input.fhirUser}`;
    if (input.role) claims.role = input.role;
    if (input.organization) claims.org = input.organization;
    if (input.patient) claims.patient = input.patient;
    if (input.encounter) claims.encounter = input.encounter;
    if (input.grantId) claims.grant = input.grantId;
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt' })
      .setIssuer(this.issuer)
      .setSubject(input.subject)
      .setAudience(this.fhirBase)
      .setIssuedAt()
      .setExpirationTime(`${ttl}s`)
      .setJti(jti)
      .sign(key.privateKey);
    return { token, jti, expiresIn: ttl };
  }

  async issueIdToken(input: { subject: string; clientId: string; fhirUser: string; nonce?: string; authTime?: number; name?: string }): Promise<string> {
    const key = this.keys.signingKey;
    const claims: Record<string, unknown> = { fhirUser: `${this.fhirBase}/${input.fhirUser}` };
    if (input.nonce) claims.nonce = input.nonce;
    if (input.authTime) claims.auth_time = input.authTime;
    if (input.name) claims.name = input.name;
    return new SignJWT(claims)
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
      .setIssuer(this.issuer)
      .setSubject(input.subject)
      .setAudience(input.clientId)
      .setIssuedAt()
      .setExpirationTime(`${this.config.auth.accessTokenTtl}s`)
      .sign(key.privateKey);
  }

  /**
   * The caller an access token stands for. Throws OAuthError 401 invalid_token (expired,
   * tampered, wrong issuer or audience, revoked).
   */
  async verifyAccessToken(token: string): Promise<AuthContext> {
    if (Date.now() - this.syncedAt > SYNC_MS) await this.syncRevocations();
    const now = Date.now() / 1000;
    const cached = this.cache.get(token);
    if (cached && cached.exp > now) {
      this.checkRevoked(cached.auth.jti, cached.grant);
      return cached.auth;
    }
    if (cached) this.cache.delete(token);
    const claims = await this.verifyJwt(token);
    this.checkRevoked(claims.jti, claims.grant);
    const auth = toAuthContext(claims, this.fhirBase);
    if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(token, { auth, exp: claims.exp, grant: claims.grant });
    return auth;
  }

  /** Signature, issuer, audience, type and lifetime, without the revocation check (introspection adds it). */
  async verifyJwt(token: string): Promise<AccessClaims> {
    if (typeof token !== 'string' || token.length > 8192 || token.split('.').length !== 3) throw invalidToken('The access token is malformed');
    let kid: string | undefined;
    try {
      kid = decodeProtectedHeader(token).kid;
    } catch {
      throw invalidToken('The access token is malformed');
    }
    const key = await this.keys.keyFor(kid);
    if (!key) throw invalidToken('The access token was not signed by this server');
    try {
      const { payload } = await jwtVerify(token, key.key, {
        issuer: this.issuer,
        audience: this.fhirBase,
        algorithms: [key.alg],
        typ: 'at+jwt',
        requiredClaims: ['sub', 'exp', 'jti', 'client_id', 'scope'],
      });
      return payload as unknown as AccessClaims;
    } catch (e) {
      if (e instanceof joseErrors.JWTExpired) throw invalidToken('The access token has expired');
      throw invalidToken('The access token is not valid');
    }
  }

  /** Active-token check for introspection: valid and not revoked. */
  async activeClaims(token: string): Promise<AccessClaims | undefined> {
    try {
      await this.syncRevocations();
      const claims = await this.verifyJwt(token);
      this.checkRevoked(claims.jti, claims.grant);
      return claims;
    } catch (e) {
      if (e instanceof OAuthError) return undefined;
      throw e;
    }
  }

  private checkRevoked(jti: string, grant: string | undefined): void {
    if (this.revokedJti.has(jti) || (grant && this.revokedGrant.has(grant))) throw invalidToken('The access token has been revoked');
  }

  async revokeAccessToken(jti: string, exp: number): Promise<void> {
    await this.db.query(`INSERT INTO auth_revocation (kind, value, expires_at) VALUES ('jti', $1, to_timestamp($2))`, [jti, exp]);
    this.revokedJti.set(jti, exp);
  }

  /** Revokes a grant: every access token from it, its refresh tokens and any unused code. */
  async revokeGrant(grantId: string): Promise<void> {
    const ttl = this.config.auth.accessTokenTtl;
    await this.db.query(`UPDATE auth_grant SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, [grantId]);
    await this.db.query(`UPDATE auth_refresh SET used_at = COALESCE(used_at, now()), expires_at = now() WHERE grant_id = $1`, [grantId]);
    await this.db.query(`INSERT INTO auth_revocation (kind, value, expires_at) VALUES ('grant', $1, now() + make_interval(secs => $2))`, [grantId, ttl + 60]);
    this.revokedGrant.set(grantId, Date.now() / 1000 + ttl + 60);
  }

  /** Pulls revocations made since the last sync (by any process). */
  async syncRevocations(): Promise<void> {
    this.syncing ??= (async () => {
      try {
        const { rows } = await this.db.query<{ kind: string; value: string; exp: number; db_now: string }>(
          `SELECT kind, value, extract(epoch FROM expires_at)::float8 AS exp, now()::text AS db_now FROM auth_revocation
           WHERE expires_at > now() AND ($1::timestamptz IS NULL OR created_at > $1::timestamptz - interval '30 seconds')
           UNION ALL SELECT null, null, null, now()::text`,
          [this.cursor ?? null],
        );
        for (const r of rows) {
          if (r.kind === 'jti') this.revokedJti.set(r.value, r.exp);
          else if (r.kind === 'grant') this.revokedGrant.set(r.value, r.exp);
          this.cursor = r.db_now;
        }
        const now = Date.now() / 1000;
        for (const m of [this.revokedJti, this.revokedGrant]) for (const [k, exp] of m) if (exp < now) m.delete(k);
        this.syncedAt = Date.now();
      } finally {
        this.syncing = undefined;
      }
    })();
    return this.syncing;
  }
}

function toAuthContext(c: AccessClaims, fhirBase: string): AuthContext {
  const auth: AuthContext = { subject: c.sub, clientId: c.client_id, scopes: c.scope.split(' ').filter(Boolean), jti: c.jti };
  if (c.fhirUser) auth.fhirUser = c.fhirUser.startsWith(fhirBase + '/') ? c.fhirUser.slice(fhirBase.length + 1) : c.fhirUser;
  if (c.role && (ROLES as readonly string[]).includes(c.role)) auth.role = c.role as Role;
  if (c.org) auth.organization = c.org;
  if (c.patient) auth.patient = c.patient;
  if (c.encounter) auth.encounter = c.encounter;
  return auth;
}
