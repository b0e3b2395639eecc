// Rate limits on the token and sign-in endpoints: fixed one-minute windows counted in the
// database, so every process behind a load balancer counts against the same limit. One round
// trip checks all the keys of a request (per client and per IP).
import type { Queryable } from '../db/pool.ts';
import { tooManyRequests } from './errors.ts';

const WINDOW_MS = 60_000;

export class RateLimiter {
  private readonly db: Queryable;
  private lastSweep = 0;

  constructor(db: Queryable) {
    this.db = db;
  }

  /** Counts one request against each [key, limit]; throws 429 (with Retry-After) if any is over. */
  async hit(keys: [string, number][]): Promise<void> {
    if (keys.length === 0) return;
    const now = Date.now();
    const window = Math.floor(now / WINDOW_MS);
    const values = keys.map((_, i) => `($${i + 2}, $1, 1)`).join(', ');
    const { rows } = await this.db.query<{ key: string; count: number }>(
      `INSERT INTO auth_rate (key, window_start, count) VALUES ${values}
       ON CONFLICT (key, window_start) DO UPDATE SET count = auth_rate.count + 1 RETURNING key, count`,
      [window, ...keys.map(([k]) => k)],
    );
    if (now - this.lastSweep > WINDOW_MS) {
      this.lastSweep = now;
      await this.db.query('DELETE FROM auth_rate WHERE window_start < $1', [window - 1]);
    }
    const limits = new Map(keys);
    if (rows.some((r) => r.count > (limits.get(r.key) ?? Infinity))) {
      throw tooManyRequests(Math.max(1, Math.ceil(((window + 1) * WINDOW_MS - now) / 1000)));
    }
  }
}
