// The outbox relay: every resource write puts a row in `outbox` in the same SQL transaction
// (server/fhir/repository.ts), and this relay hands those rows, in order, to in-process listeners
// (subscriptions, HL7 outbound, audit) and marks them processed. Nothing is lost if a process
// dies between a commit and its notification: the row waits until some relay delivers it.
//
// Guarantees: each event is delivered at least once (a crash before marking processed delivers
// it again, so listeners must be idempotent), and the events of one resource in id order, with
// any number of server processes sharing the table:
// - A claim is a lease (claimed_by / claimed_until) taken in one call of wl_outbox_claim
//   (migration 008: one round trip, on the path of every notification); the listeners
//   run outside any transaction, so they may use the database (the embedded PGlite has a single
//   connection, which a transaction held during delivery would starve).
// - Claims are serialised by a transaction-scoped advisory lock and never take a row while an
//   earlier row of the same resource is claimed by someone (or waits for a retry), so two
//   processes never deliver one resource's events out of order. Rows of a dead process's lapsed
//   lease are claimed again.
// - A listener that throws makes its event (and the later events of that resource in the batch)
//   wait and be redelivered to every listener, with exponential backoff; after maxAttempts the
//   event is set aside (processed, last_error kept) so one poison event cannot block a resource
//   forever. Listeners should be quick and hand slow work (HTTP delivery...) to the job queue.
// - Batch listeners (onResourceBatch) get all events of a batch at once, in id order, so they
//   can do their work with a few queries per batch rather than per event (subscriptions match
//   a batch against every Subscription and number the matches in one statement). They run
//   beside the per-event listeners; one that throws makes the whole batch wait and be
//   redelivered (to every listener) as above.
//
// Wake-up is by polling (pollMs, default 100 ms; a full batch loops at once). LISTEN/NOTIFY is
// left out on purpose: NOTIFY takes a database-wide lock at every commit that sends one, which
// serialises resource writes under load, and PGlite has no LISTEN over its socket; wake() lets
// in-process writers nudge the relay instead.
import { randomUUID } from 'node:crypto';
import { instantSql, type Db } from '../db/pool.ts';
import type { Logger } from '../logger.ts';

export type ResourceAction = 'create' | 'update' | 'delete';

export interface ResourceEvent {
  /** The outbox row id (a bigint, as a string): increasing in commit order per resource. */
  eventId: string;
  resourceType: string;
  resourceId: string;
  /** The version the change produced (read it with Repository.vread; a delete has no content). */
  version: number;
  action: ResourceAction;
  /** When the change was written (its transaction's time, a FHIR instant). */
  at: string;
  /** 1 on first delivery, more when redelivered after a listener failed. */
  attempt: number;
}

export type ResourceEventListener = (event: ResourceEvent) => void | Promise<void>;

/** Gets every event of a batch at once, in outbox id order (so in order per resource). */
export type ResourceBatchListener = (events: readonly ResourceEvent[]) => void | Promise<void>;

export interface OutboxRelayOptions {
  db: Db;
  log: Logger;
  /** Sleep between looks when idle. Default 100. */
  pollMs?: number;
  /** Rows claimed at once (a batch is one lease and one update). Default 250. */
  batchSize?: number;
  /** Claim lease: after this, another process takes over undelivered rows. Default 60000. */
  leaseMs?: number;
  /** First retry wait after a listener failed (doubles each time, capped at 5 min). Default 1000. */
  retryMs?: number;
  /** Deliveries before an event is set aside. Default 10. */
  maxAttempts?: number;
  /** Processed rows older than this are deleted. Default 24 h. */
  retentionMs?: number;
  /** How often to prune. Default 60000. */
  pruneEveryMs?: number;
  /**
   * This relay is the only one on the database (the embedded PGlite, one process by nature):
   * rows are read rather than leased, which halves the writes per event on a database whose
   * single connection the relay shares with every request. Never set it with several processes.
   */
  exclusive?: boolean;
  /**
   * TEST HOOK ONLY (tests/subscriptions/crash.test.ts): rows are not delivered until they are
   * this old, which opens a window between a commit and its delivery in which a test can kill
   * the process. Default: the environment variable WARDLINK_TEST_HOLD_OUTBOX_MS, else 0 (off).
   * Never set it in production.
   */
  testHoldMs?: number;
}

interface OutboxRow {
  id: string;
  resource_type: string;
  resource_id: string;
  version: number;
  action: ResourceAction;
  at: string;
  attempts: number;
}

/** Key of the advisory lock that serialises claims (any fixed bigint; "wl outbox"). */
const CLAIM_LOCK = 0x776c5f6f7574626fn.toString();
const MS = `* interval '1 millisecond'`;

/**
 * Rows a relay may take: unprocessed, not leased (or the lease lapsed), and no earlier event of
 * the same resource is leased or waiting for a retry (that keeps each resource in order).
 */
const CLAIMABLE = `c.processed_at IS NULL AND (c.claimed_until IS NULL OR c.claimed_until < clock_timestamp())
  AND NOT EXISTS (SELECT 1 FROM outbox p
    WHERE p.resource_type = c.resource_type AND p.resource_id = c.resource_id AND p.id < c.id
      AND p.processed_at IS NULL AND p.claimed_until IS NOT NULL AND p.claimed_until >= clock_timestamp())`;

/** The columns of an OutboxRow; attempts counts the delivery about to happen. */
const COLUMNS = (t: string, attemptOffset = 0): string =>
  `${t}.id, ${t}.resource_type, ${t}.resource_id, ${t}.version, ${t}.action, ${instantSql(`${t}.created_at`)} AS at, ` +
  `${t}.attempts + ${attemptOffset} AS attempts`;

export class OutboxRelay {
  private readonly db: Db;
  private readonly log: Logger;
  private readonly pollMs: number;
  private readonly batchSize: number;
  private readonly leaseMs: number;
  private readonly retryMs: number;
  private readonly maxAttempts: number;
  private readonly retentionMs: number;
  private readonly pruneEveryMs: number;
  private readonly exclusive: boolean;
  private readonly claimable: string;
  private readonly holdMs: number;
  /** Rows delivered by the last batch, marked processed by the next claim (one round trip less). */
  private deferredDone: string[] = [];
  private readonly owner = randomUUID();
  private readonly listeners = new Set<ResourceEventListener>();
  private readonly batchListeners = new Set<ResourceBatchListener>();
  private loop: Promise<void> | undefined;
  private stopped = true;
  private sleeping: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  private woken = false;
  private pruneTimer: NodeJS.Timeout | undefined;
  private pruning: Promise<unknown> | undefined;

  constructor(options: OutboxRelayOptions) {
    this.db = options.db;
    this.log = options.log;
    this.pollMs = options.pollMs ?? 100;
    this.batchSize = options.batchSize ?? 250;
    this.leaseMs = options.leaseMs ?? 60_000;
    this.retryMs = options.retryMs ?? 1000;
    this.maxAttempts = options.maxAttempts ?? 10;
    this.retentionMs = options.retentionMs ?? 24 * 3600_000;
    this.pruneEveryMs = options.pruneEveryMs ?? 60_000;
    this.exclusive = options.exclusive ?? false;
    const hold = Math.max(0, Math.floor(options.testHoldMs ?? (Number(process.env.WARDLINK_TEST_HOLD_OUTBOX_MS) || 0)));
    if (hold > 0) this.log.warn({ holdMs: hold }, 'TEST HOOK: outbox delivery held (WARDLINK_TEST_HOLD_OUTBOX_MS)');
    this.holdMs = hold;
    this.claimable = hold > 0 ? `${CLAIMABLE} AND c.created_at < clock_timestamp() - ${hold} ${MS}` : CLAIMABLE;
  }

  /** Registers a listener for every resource event; returns a function that unregisters it. */
  onResourceEvent(listener: ResourceEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Registers a listener for whole batches (see the header); returns a function that unregisters it. */
  onResourceBatch(listener: ResourceBatchListener): () => void {
    this.batchListeners.add(listener);
    return () => this.batchListeners.delete(listener);
  }

  /**
   * Starts relaying. Register listeners first: events relayed while nobody listens are marked
   * processed all the same.
   */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop = this.run();
    this.pruneTimer = setInterval(() => void this.pruneInBackground(), this.pruneEveryMs);
    this.pruneTimer.unref();
    void this.pruneInBackground();
  }

  /** Looks at the outbox now rather than after the poll interval. */
  wake(): void {
    this.woken = true;
    if (this.sleeping) {
      clearTimeout(this.sleeping.timer);
      this.sleeping.resolve();
    }
  }

  /** Stops after the batch being delivered (it is marked processed first). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.wake();
    await this.loop;
    await this.flushDone().catch((err: unknown) => this.log.warn({ err }, 'could not mark the last outbox batch processed; it will be redelivered'));
    await this.pruning;
  }

  /**
   * Claims and delivers one batch; returns how many events it claimed (0: nothing to do). The
   * background loop calls it; tests and tools may too.
   */
  relayBatch(): Promise<number> {
    return this.relayOnce(true);
  }

  /** look: a cheap look before claiming (a poll); skipped when woken, as there is work. */
  private async relayOnce(look: boolean): Promise<number> {
    if (this.deferredDone.length > 0 && (look || this.exclusive)) await this.flushDone();
    if (!this.exclusive && look) {
      // A cheap look first, so an idle relay costs one indexed query per poll, not a transaction.
      const pending = await this.db.query(
        `SELECT 1 FROM outbox WHERE processed_at IS NULL AND (claimed_until IS NULL OR claimed_until < clock_timestamp()) LIMIT 1`,
      );
      if (pending.rowCount === 0) return 0;
    }
    const t0 = performance.now();
    const rows = this.exclusive ? await this.peek() : await this.claim();
    if (rows.length === 0) return 0;
    const claimMs = performance.now() - t0;
    rows.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));

    const events: ResourceEvent[] = rows.map((row) => ({
      eventId: row.id,
      resourceType: row.resource_type,
      resourceId: row.resource_id,
      version: row.version,
      action: row.action,
      at: row.at,
      attempt: row.attempts,
    }));
    // Batch listeners run beside the per-event ones (neither waits for the other).
    const batchRun = this.batchListeners.size
      ? Promise.all([...this.batchListeners].map(async (l) => l(events))).then(
          () => undefined,
          (err: unknown) => err ?? new Error('batch listener failed'),
        )
      : Promise.resolve(undefined);

    const done: OutboxRow[] = [];
    const failed: { row: OutboxRow; error: string }[] = [];
    const held: string[] = [];
    const blocked = new Set<string>();
    const listeners = [...this.listeners];
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i];
      const key = `${row.resource_type}/${row.resource_id}`;
      if (blocked.has(key)) {
        held.push(row.id); // an earlier event of this resource failed: keep the order
        continue;
      }
      try {
        for (const listener of listeners) await listener(events[i]);
        done.push(row);
      } catch (err) {
        blocked.add(key);
        failed.push({ row, error: this.failure(err, row) });
      }
    }
    const batchError = await batchRun;
    if (batchError !== undefined) {
      // The batch listener's work is redone for every event of the batch.
      this.log.warn({ err: batchError, events: done.length }, 'outbox batch listener failed; the batch will be redelivered');
      const error = batchError instanceof Error ? (batchError.stack ?? batchError.message) : String(batchError);
      for (const row of done) failed.push({ row, error });
      done.length = 0;
    }

    const listenersMs = performance.now() - t0 - claimMs;
    if (done.length > 0) {
      // More work waiting (woken meanwhile, or a full batch): the next claim marks these
      // processed in its own round trip. Otherwise mark them now.
      this.deferredDone = done.map((r) => r.id);
      if (this.exclusive || this.stopped || !(this.woken || rows.length >= this.batchSize)) await this.flushDone();
    }
    if (held.length > 0 && !this.exclusive) {
      await this.db.query(`UPDATE outbox SET claimed_until = NULL, attempts = attempts - 1 WHERE id = ANY($1::bigint[])`, [held]);
    }
    if (failed.length > 0) {
      // One statement for every failed row: set aside (processed) or wait for a retry.
      const ids = failed.map((f) => f.row.id);
      const attempts = failed.map((f) => f.row.attempts);
      const errors = failed.map((f) => f.error.slice(0, 4000));
      const waits = failed.map((f) => (f.row.attempts >= this.maxAttempts ? -1 : Math.min(this.retryMs * 2 ** (f.row.attempts - 1), 300_000)));
      await this.db.query(
        `UPDATE outbox o SET attempts = f.attempts, last_error = f.error, claimed_by = $5,
           processed_at = CASE WHEN f.wait < 0 THEN clock_timestamp() END,
           claimed_until = CASE WHEN f.wait < 0 THEN NULL ELSE clock_timestamp() + f.wait ${MS} END
         FROM unnest($1::bigint[], $2::int[], $3::text[], $4::int[]) AS f(id, attempts, error, wait)
         WHERE o.id = f.id`,
        [ids, attempts, errors, waits, this.owner],
      );
    }
    // Where a batch's time goes (LOG_LEVEL=debug): the claim, the listeners, the bookkeeping.
    this.log.debug(
      { events: rows.length, lookMs: look ? undefined : 0, claimMs: +claimMs.toFixed(2), listenersMs: +listenersMs.toFixed(2), totalMs: +(performance.now() - t0).toFixed(2) },
      'outbox batch relayed',
    );
    return rows.length;
  }

  private failure(err: unknown, row: OutboxRow): string {
    const final = row.attempts >= this.maxAttempts;
    const key = `${row.resource_type}/${row.resource_id}`;
    this.log[final ? 'error' : 'warn'](
      { err, eventId: row.id, resource: key, version: row.version, attempt: row.attempts },
      final ? 'outbox event set aside: a listener kept failing' : 'outbox listener failed; the event will be redelivered',
    );
    return err instanceof Error ? (err.stack ?? err.message) : String(err);
  }

  /** Claims the next batch (a lease), serialised with other processes by an advisory lock. */
  private async flushDone(): Promise<void> {
    const ids = this.deferredDone;
    this.deferredDone = [];
    if (ids.length > 0) await this.db.query(`UPDATE outbox SET processed_at = clock_timestamp(), claimed_until = NULL WHERE id = ANY($1::bigint[])`, [ids]);
  }

  /**
   * Claims the next batch (a lease) in one round trip: wl_outbox_claim (migration 008) takes
   * the advisory lock that serialises claims, then leases the claimable rows; it first marks the
   * previous batch's rows processed when they were deferred.
   */
  private async claim(): Promise<OutboxRow[]> {
    const done = this.deferredDone;
    this.deferredDone = [];
    try {
      const res = await this.db.query<OutboxRow>({
        name: 'outbox:claim',
        text: `SELECT * FROM wl_outbox_claim($1, $2, $3, $4, $5, $6::bigint[])`,
        values: [this.owner, this.leaseMs, this.batchSize, this.holdMs, CLAIM_LOCK, done],
      });
      return res.rows;
    } catch (err) {
      this.deferredDone = [...done, ...this.deferredDone]; // not marked: try again
      throw err;
    }
  }

  /** The next batch when this relay is the only one (exclusive): no lease to write. */
  private async peek(): Promise<OutboxRow[]> {
    const res = await this.db.query<OutboxRow>(
      `SELECT ${COLUMNS('c', 1)} FROM outbox c WHERE ${this.claimable} ORDER BY c.id LIMIT $1`,
      [this.batchSize],
    );
    return res.rows;
  }

  /** Deletes processed rows older than the retention; returns how many. */
  async prune(): Promise<number> {
    let total = 0;
    for (;;) {
      const res = await this.db.query(
        `DELETE FROM outbox WHERE id IN (
           SELECT id FROM outbox WHERE processed_at < clock_timestamp() - $1 ${MS} LIMIT 5000)`,
        [this.retentionMs],
      );
      total += res.rowCount ?? 0;
      if ((res.rowCount ?? 0) < 5000 || this.stopped) return total;
    }
  }

  private pruneInBackground(): void {
    if (this.pruning || this.stopped) return;
    this.pruning = this.prune()
      .catch((err: unknown) => this.log.warn({ err }, 'outbox prune failed'))
      .finally(() => (this.pruning = undefined));
  }

  private async run(): Promise<void> {
    let eager = false; // woken or a full batch: there is work, claim without looking first
    while (!this.stopped) {
      this.woken = false;
      let claimed = 0;
      let failed = false;
      try {
        claimed = await this.relayOnce(!eager);
      } catch (err) {
        failed = true;
        if (!this.stopped) this.log.error({ err }, 'outbox relay failed; retrying');
      }
      if (this.stopped) break;
      eager = !failed && (claimed >= this.batchSize || this.woken);
      if (!eager) eager = (await this.sleep(this.pollMs)) && !failed;
    }
  }

  /** Resolves true when woken before the time is up. */
  private sleep(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.sleeping = undefined;
        resolve(false);
      }, ms);
      this.sleeping = {
        timer,
        resolve: () => {
          this.sleeping = undefined;
          resolve(true);
        },
      };
    });
  }
}

export function createOutboxRelay(options: OutboxRelayOptions): OutboxRelay {
  return new OutboxRelay(options);
}
