// A transaction on a pipelined PostgreSQL connection (pg's `pipeline` client option): BEGIN goes
// out together with the first statement and COMMIT together with the last, so the original-mode
// write of a message waits on four round trips instead of six. Only for real PostgreSQL: the
// embedded PGlite socket is used without pipelining (the caller falls back to db.transaction).
import pg from 'pg';
import type { Queryable } from '../db/pool.ts';

export function createPipelinedPool(connectionString: string, max: number): pg.Pool {
  const pool = new pg.Pool({ connectionString, max, idleTimeoutMillis: 30_000, pipeline: true });
  // An idle client that errors (server restart) must not crash the process.
  pool.on('error', () => {});
  return pool;
}

export class PipelinedTransaction implements Queryable {
  private readonly client: pg.PoolClient;
  /** BEGIN's result, awaited with the first statement. */
  private begin?: Promise<unknown>;
  private broken = false;

  private constructor(client: pg.PoolClient) {
    this.client = client;
    this.begin = this.send('BEGIN');
    // Its failure surfaces through the first statement.
    this.begin.catch(() => {});
  }

  /**
   * Sends a statement, held back (the socket corked) until the end of this turn of the event
   * loop: BEGIN leaves with the first statement and COMMIT with the last, in one write each.
   * A socket write is a system call, and on the bench machine (a VM) the writes were a quarter
   * of the process's CPU on the HL7 path.
   */
  private send<R extends pg.QueryResultRow>(sql: string | pg.QueryConfig, params?: unknown[]): Promise<pg.QueryResult<R>> {
    const stream = (this.client as unknown as { connection?: { stream?: { cork?: () => void; uncork?: () => void } } }).connection?.stream;
    if (!stream?.cork || !stream.uncork) return this.client.query<R>(sql as string, params as unknown[]);
    stream.cork();
    try {
      return this.client.query<R>(sql as string, params as unknown[]);
    } finally {
      setImmediate(() => stream.uncork?.());
    }
  }

  static async open(pool: pg.Pool): Promise<PipelinedTransaction> {
    return new PipelinedTransaction(await pool.connect());
  }

  query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string | pg.QueryConfig, params?: unknown[]): Promise<pg.QueryResult<R>> {
    const result = this.send<R>(sql, params);
    const begin = this.begin;
    if (!begin) return result;
    this.begin = undefined;
    return Promise.all([begin, result]).then(([, r]) => r);
  }

  /**
   * Sends COMMIT right behind `last` (a statement already sent) and waits for both. If `last`
   * failed, the transaction was aborted and the COMMIT rolls it back: last's error is thrown.
   */
  async commitWith<T>(last: Promise<T>): Promise<T> {
    const commit = this.send('COMMIT');
    const [a, c] = await Promise.allSettled([last, commit]);
    if (a.status === 'rejected') throw a.reason;
    if (c.status === 'rejected') {
      this.broken = true;
      throw c.reason;
    }
    return a.value;
  }

  async rollback(): Promise<void> {
    await this.client.query('ROLLBACK').catch(() => {
      this.broken = true;
    });
  }

  /** Returns the connection to the pool (dropped if it failed mid-transaction). */
  release(): void {
    this.client.release(this.broken ? true : undefined);
  }
}
