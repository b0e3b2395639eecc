// The production job queue (REDIS_URL set): BullMQ on Redis. Any number of server and worker
// processes share the queues: BullMQ locks a job while one worker runs it (a job runs once across
// processes; a stalled job whose process died is run again), retries with exponential backoff,
// and keeps failed jobs (removeOnFail) for inspection.
//
// A caller's jobId is a BullMQ deduplication id rather than the BullMQ job id, because BullMQ
// job ids are forever-unique (an id whose job is kept as failed could never be scheduled again)
// while ours must replace: deduplication with `replace` swaps a delayed job for the newer one,
// and `keepLastIfActive` keeps the newer one until a running one finishes. A *waiting* job (due,
// not yet taken) is not replaced by BullMQ, so add() removes it first (BullMQ's removal refuses a
// job that a worker has locked meanwhile, and then keepLastIfActive applies).
import { Queue, Worker, type Job as BullJob, type JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import type { Logger } from '../logger.ts';
import {
  assertQueueName,
  normaliseAddOptions,
  type AddOptions,
  type JobHandler,
  type JobQueue,
  type ProcessOptions,
} from './queue.ts';

export interface BullmqQueueOptions {
  redisUrl: string;
  log: Logger;
  /** Namespace of every Redis key (BullMQ's `prefix`). Default "wardlink". */
  prefix?: string;
  /** Failed jobs are kept this long for inspection (default 7 days), at most keepFailed of them. */
  keepFailedSeconds?: number;
  keepFailed?: number;
}

export class BullmqJobQueue implements JobQueue {
  readonly kind = 'bullmq' as const;
  readonly prefix: string;
  private readonly log: Logger;
  private readonly connection: Redis;
  private readonly queues = new Map<string, Queue>();
  private readonly workers = new Map<string, Worker>();
  private readonly removeOnFail: { age: number; count: number };
  private closed = false;

  constructor(options: BullmqQueueOptions) {
    this.log = options.log;
    this.prefix = options.prefix ?? 'wardlink';
    this.removeOnFail = { age: options.keepFailedSeconds ?? 7 * 24 * 3600, count: options.keepFailed ?? 10_000 };
    // One connection for commands, shared by every Queue and Worker (workers duplicate it for
    // their blocking reads). maxRetriesPerRequest null: BullMQ workers require it.
    this.connection = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
    this.connection.on('error', (err: Error) => this.log.error({ err }, 'redis connection error'));
  }

  /** The BullMQ Queue behind a queue name (for inspection and tests). */
  queue(name: string): Queue {
    assertQueueName(name);
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue(name, { connection: this.connection, prefix: this.prefix });
      q.on('error', (err: Error) => this.log.error({ err, queue: name }, 'bullmq queue error'));
      this.queues.set(name, q);
    }
    return q;
  }

  async add<T>(queue: string, data: T, options?: AddOptions): Promise<string> {
    if (this.closed) throw new Error('job queue is closed');
    const o = normaliseAddOptions(options);
    const q = this.queue(queue);
    const opts: JobsOptions = {
      delay: o.delayMs,
      attempts: o.attempts,
      backoff: { type: 'exponential', delay: o.backoffMs },
      removeOnComplete: true,
      removeOnFail: this.removeOnFail,
    };
    if (o.jobId !== undefined) {
      const current = await q.getDeduplicationJobId(o.jobId);
      if (current) {
        const state = await q.getJobState(current);
        if (state === 'waiting' || state === 'prioritized') await q.remove(current);
      }
      opts.deduplication = { id: o.jobId, replace: true, keepLastIfActive: true };
    }
    const job = await q.add(queue, data ?? null, opts);
    return o.jobId ?? String(job.id);
  }

  async remove(queue: string, jobId: string): Promise<boolean> {
    const q = this.queue(queue);
    let removed = false;
    const current = await q.getDeduplicationJobId(jobId);
    if (current) {
      // 0 when a worker holds it: a running job finishes.
      removed = (await q.remove(current)) === 1;
    } else {
      const job = await q.getJob(jobId);
      if (job && !job.deduplicationId && !(await job.isFailed())) removed = (await q.remove(jobId)) === 1;
    }
    // A newer job kept to run after a running one (keepLastIfActive) is cancelled too.
    const next = await this.connection.del(q.toKey(`dn:${jobId}`));
    return removed || next > 0;
  }

  process<T>(queue: string, handler: JobHandler<T>, options: ProcessOptions = {}): void {
    assertQueueName(queue);
    if (this.closed) throw new Error('job queue is closed');
    if (this.workers.has(queue)) throw new Error(`queue "${queue}" already has a handler in this process`);
    const worker = new Worker<T>(
      queue,
      async (job: BullJob<T>) => {
        await handler({
          queue,
          id: job.deduplicationId ?? String(job.id),
          data: job.data,
          attempt: job.attemptsMade + 1,
          attempts: job.opts.attempts ?? 1,
        });
      },
      { connection: this.connection, prefix: this.prefix, concurrency: Math.max(1, Math.floor(options.concurrency ?? 1)) },
    );
    worker.on('failed', (job: BullJob<T> | undefined, err: Error) => {
      const final = job ? job.attemptsMade >= (job.opts.attempts ?? 1) : true;
      const fields = { err, queue, jobId: job?.deduplicationId ?? job?.id, attempt: job?.attemptsMade };
      if (final) this.log.error(fields, 'job failed; no attempts left');
      else this.log.warn(fields, 'job failed; will retry');
    });
    worker.on('error', (err: Error) => this.log.error({ err, queue }, 'bullmq worker error'));
    this.workers.set(queue, worker);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Worker.close() waits for the jobs it is running.
    await Promise.allSettled([...this.workers.values()].map((w) => w.close()));
    await Promise.allSettled([...this.queues.values()].map((q) => q.close()));
    await this.connection.quit().catch(() => this.connection.disconnect());
  }
}

export function createBullmqQueue(options: BullmqQueueOptions): BullmqJobQueue {
  return new BullmqJobQueue(options);
}
