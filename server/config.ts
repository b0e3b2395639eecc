// Environment -> one typed, validated config object. Read once at start; a bad value stops
// start-up with a message naming the variable, so operators never run on a silent default.
import { availableParallelism } from 'node:os';

export interface Config {
  port: number;
  host: string;
  /** Public base URL of the server, without trailing slash (e.g. http://localhost:8080). */
  baseUrl: string;
  /** Absent: start the embedded PostgreSQL (PGlite) under dataDir. */
  databaseUrl?: string;
  /** Absent: run jobs in-process. */
  redisUrl?: string;
  /**
   * WARDLINK_REDIS_PREFIX: namespace of every BullMQ key in Redis (default "wardlink"). Lets
   * several deployments (or test runs) share one Redis without seeing each other's jobs.
   */
  redisPrefix: string;
  dataDir: string;
  hl7Port: number;
  /** Start the HL7 v2 MLLP listener (default on). */
  hl7Enabled: boolean;
  /** Close MLLP connections idle this long, in ms (HL7_IDLE_TIMEOUT_MS, default 10 min; 0 never). */
  hl7IdleTimeoutMs: number;
  /** HL7 v2 groups written at once (HL7_GROUP_CONCURRENCY, default 2; 0: no group commit). */
  hl7GroupConcurrency: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Largest accepted request body for FHIR JSON, in bytes. */
  maxJsonBytes: number;
  /** Largest accepted Binary upload, in bytes. */
  maxBinaryBytes: number;
  /** Connections in the pg pool (production mode; the embedded database always uses 1). */
  dbPoolSize: number;
  /** Largest _count a search may ask for. */
  maxPageSize: number;
  defaultPageSize: number;
  /** Seed the demo hospital on start (default: on in embedded mode). */
  seedDemo: boolean;
  /**
   * Test-only: serve the FHIR API without tokens (the auth-overhead benchmark compares against
   * it). Never set in a deployment; start-up logs a warning when it is.
   */
  authDisabled: boolean;
  /** Trust X-Forwarded-For / -Proto from a reverse proxy (client IPs for rate limits and audit). */
  trustProxy: boolean;
  /** Sign-in and tokens (server/auth). */
  auth: AuthConfig;
  /** Topic-based subscriptions (server/subscriptions). */
  subscriptions: SubscriptionConfig;
}

export interface SubscriptionConfig {
  /**
   * SUBSCRIPTION_ALLOWED_HOSTS: host names / addresses a rest-hook endpoint may use even when they
   * are loopback or private (SSRF protection refuses those otherwise).
   */
  allowedHosts: string[];
  /** SUBSCRIPTION_RETRY_ATTEMPTS: rest-hook delivery tries before the dead letter (default 6). */
  retryAttempts: number;
  /** SUBSCRIPTION_RETRY_BACKOFF_MS: first retry wait, doubled each time (default 2000). */
  retryBackoffMs: number;
  /** SUBSCRIPTION_WS_TOKEN_TTL: websocket binding token lifetime in seconds (default 600). */
  wsTokenTtl: number;
}

export interface AuthConfig {
  /** OAuth/OpenID issuer; absent: the base URL (read at use: with PORT=0 it is known late). */
  issuer?: string;
  /** Access token lifetime, seconds. */
  accessTokenTtl: number;
  /** offline_access refresh token lifetime, days. */
  refreshTokenDays: number;
  /** A signed-in browser session ends after this many idle minutes. */
  sessionIdleMinutes: number;
  /** A private JWK (JSON) or PKCS#8 PEM to sign tokens with; absent: one generated and kept in the database. */
  signingKey?: string;
  /** Registered (or updated) at start as a confidential system client (client_secret_basic). */
  bootstrapClientId?: string;
  bootstrapClientSecret?: string;
  /** Failed sign-ins in a row that lock an account, and for how long. */
  maxFailedSignIns: number;
  lockoutMinutes: number;
  /** Requests per minute on the token endpoint per client, and on token + sign-in per IP. */
  tokenRatePerClient: number;
  rateLimitPerIp: number;
  /** Sign-in form posts per minute per IP. */
  signInRatePerIp: number;
}

export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, def: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be a whole number, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

function url(env: Env, name: string, protocols: string[]): string | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(`${name} is not a valid URL`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(`${name} must start with ${protocols.map((p) => p + '//').join(' or ')}`);
  }
  return raw;
}

function bool(env: Env, name: string, def: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got "${raw}"`);
}

function redisPrefix(env: Env): string {
  const raw = env.WARDLINK_REDIS_PREFIX?.trim();
  if (!raw) return 'wardlink';
  if (!/^[A-Za-z0-9\-_.:]{1,64}$/.test(raw)) throw new ConfigError('WARDLINK_REDIS_PREFIX may use letters, digits and - _ . : (at most 64)');
  return raw;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * PostgreSQL connections per process when DB_POOL_SIZE is not set: twice this machine's cores,
 * between 4 and 10. Active connections beyond about twice the database's cores only contend:
 * on the 2-core bench machine (PostgreSQL on the same host) a pool of 10 spent 25-35% more
 * PostgreSQL CPU per search than a pool of 4, with worse p99s at 10 concurrent clients.
 * Deployments with a larger database server raise it (or run more processes).
 */
export function defaultPoolSize(): number {
  return Math.min(10, Math.max(4, 2 * availableParallelism()));
}

export function loadConfig(env: Env = process.env): Config {
  const port = int(env, 'PORT', 8080, 0, 65535);
  const host = env.HOST?.trim() || '0.0.0.0';
  const baseUrlRaw = url(env, 'BASE_URL', ['http:', 'https:']);
  const displayHost = host === '0.0.0.0' || host === '::' ? 'localhost' : host;
  const baseUrl = (baseUrlRaw ?? `http://${displayHost}:${port}`).replace(/\/+$/, '');
  const logLevel = (env.LOG_LEVEL?.trim() || 'info') as Config['logLevel'];
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${env.LOG_LEVEL}"`);
  }
  const databaseUrl = url(env, 'DATABASE_URL', ['postgres:', 'postgresql:']);
  return {
    port,
    host,
    baseUrl,
    databaseUrl,
    redisUrl: url(env, 'REDIS_URL', ['redis:', 'rediss:']),
    redisPrefix: redisPrefix(env),
    dataDir: env.DATA_DIR?.trim() || './data',
    hl7Port: int(env, 'HL7_PORT', 2575, 0, 65535),
    hl7Enabled: bool(env, 'HL7_ENABLED', true),
    hl7IdleTimeoutMs: int(env, 'HL7_IDLE_TIMEOUT_MS', 600_000, 0, 86_400_000),
    hl7GroupConcurrency: int(env, 'HL7_GROUP_CONCURRENCY', 2, 0, 16),
    logLevel,
    maxJsonBytes: int(env, 'MAX_JSON_BYTES', 16 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    maxBinaryBytes: int(env, 'MAX_BINARY_BYTES', 32 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    dbPoolSize: int(env, 'DB_POOL_SIZE', defaultPoolSize(), 1, 500),
    maxPageSize: int(env, 'MAX_PAGE_SIZE', 1000, 1, 100000),
    defaultPageSize: int(env, 'DEFAULT_PAGE_SIZE', 20, 1, 100000),
    seedDemo: bool(env, 'SEED_DEMO', databaseUrl === undefined),
    authDisabled: bool(env, 'AUTH_DISABLED', false),
    trustProxy: bool(env, 'TRUST_PROXY', false),
    auth: loadAuthConfig(env),
    subscriptions: {
      allowedHosts: (env.SUBSCRIPTION_ALLOWED_HOSTS ?? '')
        .split(',')
        .map((h) => h.trim().toLowerCase().replace(/^\[|\]$/g, ''))
        .filter((h) => h !== ''),
      retryAttempts: int(env, 'SUBSCRIPTION_RETRY_ATTEMPTS', 6, 1, 100),
      retryBackoffMs: int(env, 'SUBSCRIPTION_RETRY_BACKOFF_MS', 2000, 0, 3_600_000),
      wsTokenTtl: int(env, 'SUBSCRIPTION_WS_TOKEN_TTL', 600, 1, 86_400),
    },
  };
}

function loadAuthConfig(env: Env): AuthConfig {
  const bootstrapClientId = env.BOOTSTRAP_CLIENT_ID?.trim() || undefined;
  const bootstrapClientSecret = env.BOOTSTRAP_CLIENT_SECRET || undefined;
  if (!!bootstrapClientId !== !!bootstrapClientSecret) {
    throw new ConfigError('BOOTSTRAP_CLIENT_ID and BOOTSTRAP_CLIENT_SECRET must be set together');
  }
  if (bootstrapClientId && !/^[A-Za-z0-9\-_.:]{1,128}$/.test(bootstrapClientId)) {
    throw new ConfigError('BOOTSTRAP_CLIENT_ID may use letters, digits and - _ . : (at most 128)');
  }
  if (bootstrapClientSecret && bootstrapClientSecret.length < 16) {
    throw new ConfigError('BOOTSTRAP_CLIENT_SECRET must be at least 16 characters');
  }
  const signingKey = env.AUTH_SIGNING_KEY?.trim() || undefined;
  if (signingKey && !signingKey.startsWith('{') && !signingKey.includes('-----BEGIN PRIVATE KEY-----')) {
    throw new ConfigError('AUTH_SIGNING_KEY must be a private JWK (JSON) or a PKCS#8 PEM private key');
  }
  return {
    issuer: url(env, 'AUTH_ISSUER', ['http:', 'https:'])?.replace(/\/+$/, ''),
    accessTokenTtl: int(env, 'ACCESS_TOKEN_TTL', 3600, 60, 86400),
    refreshTokenDays: int(env, 'REFRESH_TOKEN_DAYS', 30, 1, 3650),
    sessionIdleMinutes: int(env, 'SESSION_IDLE_MINUTES', 15, 1, 1440),
    signingKey,
    bootstrapClientId,
    bootstrapClientSecret,
    maxFailedSignIns: int(env, 'SIGNIN_MAX_FAILURES', 5, 1, 100),
    lockoutMinutes: int(env, 'SIGNIN_LOCKOUT_MINUTES', 15, 1, 10080),
    tokenRatePerClient: int(env, 'RATE_LIMIT_TOKEN_PER_CLIENT', 300, 1, 1_000_000),
    rateLimitPerIp: int(env, 'RATE_LIMIT_PER_IP', 600, 1, 1_000_000),
    signInRatePerIp: int(env, 'RATE_LIMIT_SIGNIN_PER_IP', 30, 1, 1_000_000),
  };
}
