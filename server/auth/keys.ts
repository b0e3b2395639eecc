// The keys that sign access and ID tokens. From AUTH_SIGNING_KEY when given (every process
// gets the same key from its environment); otherwise generated once and kept in the database
// (auth_key), so every process that shares the database signs with and accepts the same keys.
// Retired keys stay in the JWKS (and keep verifying) for two days after rotation.
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import type { AuthConfig } from '../config.ts';
import type { Queryable } from '../db/pool.ts';

export interface SigningKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey | KeyObject;
}

interface VerifyKey {
  kid: string;
  alg: string;
  publicJwk: JWK;
  key: CryptoKey | KeyObject | Uint8Array;
}

const RETIRED_KEPT_SQL = `active OR retired_at > now() - interval '2 days'`;
const RELOAD_MIN_MS = 5_000;

function algFor(key: KeyObject): string {
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'ES256';
    if (curve === 'secp384r1') return 'ES384';
  }
  throw new Error('AUTH_SIGNING_KEY must be an RSA (2048+ bits) or EC P-256 / P-384 private key');
}

export class KeyStore {
  private readonly db: Queryable;
  private readonly config: AuthConfig;
  private signing?: SigningKey;
  private verify = new Map<string, VerifyKey>();
  private lastLoad = 0;
  private loading?: Promise<void>;

  constructor(db: Queryable, config: AuthConfig) {
    this.db = db;
    this.config = config;
  }

  /** Loads (or creates) the signing key. Call once at start. */
  async init(): Promise<void> {
    if (this.config.signingKey) {
      const raw = this.config.signingKey;
      const privateKey = raw.startsWith('{') ? createPrivateKey({ key: JSON.parse(raw) as import('node:crypto').JsonWebKey, format: 'jwk' }) : createPrivateKey(raw);
      const alg = algFor(privateKey);
      const publicJwk = { ...(createPublicKey(privateKey).export({ format: 'jwk' }) as JWK) };
      const kid = await calculateJwkThumbprint(publicJwk);
      Object.assign(publicJwk, { kid, alg, use: 'sig' });
      this.signing = { kid, alg, privateKey };
      this.verify.set(kid, { kid, alg, publicJwk, key: createPublicKey(privateKey) });
      return;
    }
    await this.ensureDatabaseKey();
    await this.load();
  }

  private async ensureDatabaseKey(): Promise<void> {
    const existing = await this.db.query('SELECT 1 FROM auth_key WHERE active');
    if (existing.rowCount) return;
    const { publicKey, privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
    const publicJwk = await exportJWK(publicKey);
    const privateJwk = await exportJWK(privateKey);
    const kid = await calculateJwkThumbprint(publicJwk);
    // Two processes starting together: the unique index on the active key keeps one.
    await this.db.query(
      `INSERT INTO auth_key (kid, alg, private_jwk, public_jwk) VALUES ($1, 'RS256', $2, $3) ON CONFLICT DO NOTHING`,
      [kid, JSON.stringify(privateJwk), JSON.stringify({ ...publicJwk, kid, alg: 'RS256', use: 'sig' })],
    );
  }

  private async load(): Promise<void> {
    if (this.config.signingKey) return;
    this.loading ??= (async () => {
      try {
        const { rows } = await this.db.query<{ kid: string; alg: string; private_jwk: JWK; public_jwk: JWK; active: boolean }>(
          `SELECT kid, alg, private_jwk, public_jwk, active FROM auth_key WHERE ${RETIRED_KEPT_SQL} ORDER BY created_at`,
        );
        const verify = new Map<string, VerifyKey>();
        for (const row of rows) {
          const known = this.verify.get(row.kid);
          verify.set(row.kid, known ?? { kid: row.kid, alg: row.alg, publicJwk: row.public_jwk, key: await importJWK(row.public_jwk, row.alg) });
          if (row.active && this.signing?.kid !== row.kid) {
            this.signing = { kid: row.kid, alg: row.alg, privateKey: (await importJWK(row.private_jwk, row.alg)) as CryptoKey };
          }
        }
        this.verify = verify;
        this.lastLoad = Date.now();
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  get signingKey(): SigningKey {
    if (!this.signing) throw new Error('signing key not loaded');
    return this.signing;
  }

  /** The key for a token's kid; an unknown kid reloads from the database (rotation by another process), at most every 5 s. */
  async keyFor(kid: string | undefined): Promise<VerifyKey | undefined> {
    if (!kid) return undefined;
    const known = this.verify.get(kid);
    if (known) return known;
    if (Date.now() - this.lastLoad > RELOAD_MIN_MS) {
      await this.load();
      return this.verify.get(kid);
    }
    return undefined;
  }

  /** The public JWKS (signing key and recently retired ones). */
  async jwks(): Promise<{ keys: JWK[] }> {
    if (Date.now() - this.lastLoad > 60_000) await this.load();
    return { keys: [...this.verify.values()].map((k) => k.publicJwk) };
  }
}

/** Retires the active database key and creates a new one (admin CLI: rotate-signing-key). */
export async function rotateSigningKey(db: Queryable): Promise<string> {
  await db.query(`UPDATE auth_key SET active = false, retired_at = now() WHERE active`);
  const store = new KeyStore(db, { signingKey: undefined } as AuthConfig);
  await store.init();
  return store.signingKey.kid;
}
