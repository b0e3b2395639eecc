// The embedded job queue (no REDIS_URL): jobs run in this process, and every pending job is a
// row of the `job` table (migration 002_jobs), so a restart loses no timer: whatever is pending
// when the queue starts is simply due (or not yet) in that table.
//
// It shares the server's Db (the embedded PGlite allows one connection) and keeps each query a
// single short statement. Timing uses the database clock (run_at), so several processes on one
// database agree; every query is one autocommit statement, so now() is the statement's time (and,
// unlike clock_timestamp(), lets run_at <= now() walk the job_due index). A local timer wakes the
// loop at the next due time, with a poll (pollMs) as a safety net for jobs added by other
// processes. A job being run is leased (locked_until, renewed while its handler runs), so with
// several processes on one database a job still runs once at a time, and a job whose process
// died is taken up again once its lease lapses.
import { randomUUID } from 'node:crypto';
import type { Db } from '../db/pool.ts';
import type { Logger } from '../logger.ts';
import {
  assertQueueName,
  backoffDelay,
  normaliseAddOptions,
  type AddOptions,
  type Job,
  type JobHandler,
  type JobQueue,
  type ProcessOptions,
} from './queue.ts';

export interface InProcessQueueOptions {
  db: Db;
  log: Logger;
  /** Longest sleep between looks at the table (jobs added by other processes). Default 1000. */
  pollMs?: number;
  /** Lease on a running job; renewed every third of it while the handler runs. Default 30000. */
  leaseMs?: number;
}

interface Registration {
  handler: JobHandler<unknown>;
  concurrency: number;
  running: number;
}

interface ClaimedRow {
  id: string;
  data: unknown;
  attempts_made: number;
  max_attempts: number;
  backoff_ms: number;
  generation: number;
}

const MS = `* interval '1 millisecond'`;

export class InProcessJobQueue implements JobQueue {
  readonly kind = 'inprocess' as const;
  private readonly db: Db;
  private readonly log: Logger;
  private readonly pollMs: number;
  private readonly leaseMs: number;
  /** Identifies this runtime's leases. */
  private readonly owner = randomUUID();
  private readonly registrations = new Map<string, Registration>();
  private readonly inFlight = new Set<Promise<void>>();
  /** Jobs whose handler runs now, by queue + id: their leases are renewed. */
  private readonly running = new Map<string, { queue: string; id: string }>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private leaseTimer: NodeJS.Timeout | undefined;
  private pumping: Promise<void> | undefined;
  private pumpAgain = false;
  private closed = false;

  constructor(options: InProcessQueueOptions) {
    this.db = options.db;
    this.log = options.log;
    this.pollMs = options.pollMs ?? 1000;
    this.leaseMs = options.leaseMs ?? 30_000;
  }

  async add<T>(queue: string, data: T, options?: AddOptions): Promise<string> {
    assertQueueName(queue);
    if (this.closed) throw new Error('job queue is closed');
    const o = normaliseAddOptions(options);
    const id = o.jobId ?? randomUUID();
    // Re-adding an id replaces the pending job (new data, delay, attempts). If that job is
    // running, its row stays leased: the new generation runs once the running one finishes.
    await this.db.query(
      `INSERT INTO job (queue, id, data, run_at, max_attempts, backoff_ms)
       VALUES ($1, $2, $3::jsonb, now() + $4 ${MS}, $5, $6)
       ON CONFLICT (queue, id) DO UPDATE SET data = EXCLUDED.data, run_at = EXCLUDED.run_at,
         attempts_made = 0, max_attempts = EXCLUDED.max_attempts, backoff_ms = EXCLUDED.backoff_ms,
         generation = job.generation + 1, failed_at = NULL, last_error = NULL`,
      [queue, id, JSON.stringify(data ?? null), o.delayMs, o.attempts, o.backoffMs],
    );
    if (this.registrations.has(queue)) this.wakeIn(o.delayMs);
    return id;
  }

  async remove(queue: string, jobId: string): Promise<boolean> {
    // A running job is not interrupted, but with its row gone it is neither retried nor rerun.
    const res = await this.db.query(`DELETE FROM job WHERE queue = $1 AND id = $2 AND failed_at IS NULL`, [queue, jobId]);
    return (res.rowCount ?? 0) > 0;
  }

  process<T>(queue: string, handler: JobHandler<T>, options: ProcessOptions = {}): void {
    assertQueueName(queue);
    if (this.closed) throw new Error('job queue is closed');
    if (this.registrations.has(queue)) throw new Error(`queue "${queue}" already has a handler in this process`);
    this.registrations.set(queue, {
      handler: handler as JobHandler<unknown>,
      concurrency: Math.max(1, Math.floor(options.concurrency ?? 1)),
      running: 0,
    });
    this.leaseTimer ??= setInterval(() => void this.renewLeases(), Math.max(50, Math.floor(this.leaseMs / 3)));
    this.leaseTimer.unref();
    this.wakeIn(0);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    // A look under way may still start the jobs it claimed; they are waited for below.
    await this.pumping;
    // Running handlers finish (and record their outcome) before close resolves.
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    this.leaseTimer = undefined;
  }

  // ---------------------------------------------------------------- the loop

  /** Makes the loop look at the table within ms (sooner if it already would). */
  private wakeIn(ms: number): void {
    if (this.closed) return;
    const at = Date.now() + Math.max(0, ms);
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      void this.pump();
    }, Math.max(0, ms));
  }

  /** Looks at the table and starts what is due; one look at a time (a call during one repeats it). */
  private pump(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.pumping) {
      this.pumpAgain = true;
      return this.pumping;
    }
    this.pumping = this.look().finally(() => (this.pumping = undefined));
    return this.pumping;
  }

  private async look(): Promise<void> {
    let next = this.pollMs;
    try {
      do {
        this.pumpAgain = false;
        next = this.pollMs;
        const queues = [...this.registrations.keys()];
        if (queues.length === 0) return;
        // Per queue: how long until its next job is due (<= 0: due now).
        // (An index walk per queue along job_due, so 100,000 pending timers cost no more.)
        const due = await this.db.query<{ queue: string; wait_ms: number }>(
          `SELECT q.queue, (EXTRACT(EPOCH FROM n.run_at - now()) * 1000)::float8 AS wait_ms
           FROM unnest($1::text[]) AS q(queue)
           CROSS JOIN LATERAL (SELECT run_at FROM job
             WHERE job.queue = q.queue AND failed_at IS NULL
               AND (locked_until IS NULL OR locked_until < now())
             ORDER BY run_at LIMIT 1) n`,
          [queues],
        );
        for (const row of due.rows) {
          const reg = this.registrations.get(row.queue);
          if (!reg) continue;
          if (row.wait_ms > 0) {
            next = Math.min(next, Math.ceil(row.wait_ms));
            continue;
          }
          const free = reg.concurrency - reg.running;
          if (free <= 0 || this.closed) continue; // a finishing handler pumps again
          // Takes what is due up to the free slots; a finishing handler pumps again for the rest.
          for (const job of await this.claim(row.queue, free)) this.start(row.queue, reg, job);
        }
      } while (this.pumpAgain && !this.closed);
    } catch (err) {
      if (!this.closed) this.log.error({ err }, 'in-process job queue: polling failed');
    }
    this.wakeIn(next);
  }

  private async claim(queue: string, limit: number): Promise<ClaimedRow[]> {
    const res = await this.db.query<ClaimedRow>(
      `UPDATE job j SET locked_by = $3, locked_until = now() + $4 ${MS}, attempts_made = j.attempts_made + 1
       FROM (SELECT queue, id FROM job
             WHERE queue = $1 AND failed_at IS NULL AND run_at <= now()
               AND (locked_until IS NULL OR locked_until < now())
             ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED) c
       WHERE j.queue = c.queue AND j.id = c.id
       RETURNING j.id, j.data, j.attempts_made, j.max_attempts, j.backoff_ms, j.generation`,
      [queue, limit, this.owner, this.leaseMs],
    );
    return res.rows;
  }

  private start(queue: string, reg: Registration, row: ClaimedRow): void {
    reg.running++;
    const job: Job<unknown> = { queue, id: row.id, data: row.data, attempt: row.attempts_made, attempts: row.max_attempts };
    const key = `${queue}\u0000${row.id}\u0000${row.generation}`;
    this.running.set(key, { queue, id: row.id });
    const run = this.run(reg, job, row).finally(() => {
      reg.running--;
      this.running.delete(key);
      this.inFlight.delete(run);
      if (!this.closed) void this.pump();
    });
    this.inFlight.add(run);
  }

  private async run(reg: Registration, job: Job<unknown>, row: ClaimedRow): Promise<void> {
    let error: unknown;
    let failed = false;
    try {
      await reg.handler(job);
    } catch (err) {
      failed = true;
      error = err;
    }
    try {
      let res;
      if (!failed) {
        res = await this.db.query(`DELETE FROM job WHERE queue = $1 AND id = $2 AND generation = $3`, [job.queue, job.id, row.generation]);
      } else {
        const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
        const retry = row.attempts_made < row.max_attempts;
        const wait = backoffDelay(row.backoff_ms, row.attempts_made);
        if (retry) this.log.warn({ queue: job.queue, jobId: job.id, attempt: job.attempt, err: error }, 'job failed; will retry');
        else this.log.error({ queue: job.queue, jobId: job.id, attempt: job.attempt, err: error }, 'job failed; no attempts left');
        res = retry
          ? await this.db.query(
              `UPDATE job SET run_at = now() + $4 ${MS}, locked_by = NULL, locked_until = NULL, last_error = $5
               WHERE queue = $1 AND id = $2 AND generation = $3`,
              [job.queue, job.id, row.generation, wait, message.slice(0, 4000)],
            )
          : await this.db.query(
              `UPDATE job SET failed_at = now(), locked_by = NULL, locked_until = NULL, last_error = $4
               WHERE queue = $1 AND id = $2 AND generation = $3`,
              [job.queue, job.id, row.generation, message.slice(0, 4000)],
            );
        if (retry) this.wakeIn(wait);
      }
      if ((res.rowCount ?? 0) === 0) {
        // Re-added while it ran (a newer generation waits) or removed: free the row for it.
        await this.db.query(`UPDATE job SET locked_by = NULL, locked_until = NULL WHERE queue = $1 AND id = $2 AND locked_by = $3`, [
          job.queue,
          job.id,
          this.owner,
        ]);
      }
    } catch (err) {
      // The lease lapses and the job runs again: handlers are idempotent.
      this.log.error({ err, queue: job.queue, jobId: job.id }, 'in-process job queue: could not record the outcome of a job');
    }
  }

  private async renewLeases(): Promise<void> {
    if (this.running.size === 0) return;
    const jobs = [...this.running.values()];
    try {
      await this.db.query(
        `UPDATE job j SET locked_until = now() + $2 ${MS}
         FROM unnest($3::text[], $4::text[]) AS r(queue, id)
         WHERE j.queue = r.queue AND j.id = r.id AND j.locked_by = $1`,
        [this.owner, this.leaseMs, jobs.map((j) => j.queue), jobs.map((j) => j.id)],
      );
    } catch (err) {
      this.log.warn({ err }, 'in-process job queue: could not renew leases');
    }
  }
}

export function createInProcessQueue(options: InProcessQueueOptions): JobQueue {
  return new InProcessJobQueue(options);
}
