// Environment -> one typed, validated config object. Read once at start; a bad value stops
// start-up with a message naming the variable, so operators never run on a silent default.

export interface Config {
  port: number;
  host: string;
  /** Public base URL of the server, without trailing slash (e.g. http://localhost:8080). */
  baseUrl: string;
  /** Absent: start the embedded PostgreSQL (PGlite) under dataDir. */
  databaseUrl?: string;
  /** Absent: run jobs in-process. */
  redisUrl?: string;
  dataDir: string;
  hl7Port: number;
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

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

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
    dataDir: env.DATA_DIR?.trim() || './data',
    hl7Port: int(env, 'HL7_PORT', 2575, 0, 65535),
    logLevel,
    maxJsonBytes: int(env, 'MAX_JSON_BYTES', 16 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    maxBinaryBytes: int(env, 'MAX_BINARY_BYTES', 32 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    dbPoolSize: int(env, 'DB_POOL_SIZE', 10, 1, 500),
    maxPageSize: int(env, 'MAX_PAGE_SIZE', 1000, 1, 100000),
    defaultPageSize: int(env, 'DEFAULT_PAGE_SIZE', 20, 1, 100000),
    seedDemo: bool(env, 'SEED_DEMO', databaseUrl === undefined),
  };
}
