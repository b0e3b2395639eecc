// The one job-queue interface ("one code path, two ways to run"): BullMQ on Redis in production
// (bullmq.ts, REDIS_URL set), in-process with pending jobs persisted in Postgres in the embedded
// default (inprocess.ts). Feature code (SLA timers, reminders, notifications, HL7 outbound,
// audit batches) only ever sees JobQueue, so it behaves the same in both modes.
//
// Semantics both implementations keep (tests/jobs/queue.test.ts runs one suite against both):
// - Job data is JSON: it goes through JSON.stringify on the way in.
// - A job runs at least once and, across any number of processes, never twice at the same time;
//   a handler that throws is retried up to `attempts` times in all, waiting backoffMs, 2 x
//   backoffMs, 4 x backoffMs... between tries; a job that exhausts its attempts is kept (failed)
//   for inspection. Handlers must be idempotent (a crash mid-run reruns the job).
// - A jobId names the job within its queue. Adding a job with the id of a pending (waiting or
//   delayed) job replaces it: only the newer one runs, with its data and its delay. This is how
//   an SLA timer is re-scheduled. If the job with that id is running right now, it is not
//   interrupted; the newer one runs after it finishes (only the latest such addition is kept).
// - remove(queue, jobId) cancels the pending job with that id (and any replacement waiting for a
//   running one); a running job finishes.
// - close() stops taking new jobs and waits for running handlers to finish.
import type { Logger } from '../logger.ts';

export interface AddOptions {
  /** Names the job in its queue: re-adding replaces the pending one (see above). */
  jobId?: string;
  /** Run no earlier than this many milliseconds from now (default 0). */
  delayMs?: number;
  /** Tries in all, including the first (default 3). */
  attempts?: number;
  /** Wait before the first retry; doubles for each further retry (default 1000). */
  backoffMs?: number;
}

export interface ProcessOptions {
  /** Handlers of this queue running at once in this process (default 1). */
  concurrency?: number;
}

/** What a handler gets. */
export interface Job<T> {
  queue: string;
  /** The caller's jobId, or an id the queue made up. */
  id: string;
  data: T;
  /** 1 on the first try, 2 on the first retry... */
  attempt: number;
  /** Tries in all (AddOptions.attempts). */
  attempts: number;
}

export type JobHandler<T> = (job: Job<T>) => Promise<void>;

export interface JobQueue {
  readonly kind: 'bullmq' | 'inprocess';
  /** Schedules a job; resolves once it is durably stored. Returns the job id. */
  add<T>(queue: string, data: T, options?: AddOptions): Promise<string>;
  /** Cancels the pending job with this id; true if there was one. */
  remove(queue: string, jobId: string): Promise<boolean>;
  /** Runs the queue's jobs in this process with handler (one handler per queue and process). */
  process<T>(queue: string, handler: JobHandler<T>, options?: ProcessOptions): void;
  /** Stops taking jobs, waits for running handlers, releases connections. */
  close(): Promise<void>;
}

export const DEFAULT_ATTEMPTS = 3;
export const DEFAULT_BACKOFF_MS = 1000;

/** Validated, defaulted add options shared by both implementations. */
export function normaliseAddOptions(options: AddOptions = {}): Required<Omit<AddOptions, 'jobId'>> & { jobId?: string } {
  const delayMs = Math.max(0, Math.round(options.delayMs ?? 0));
  const attempts = Math.max(1, Math.floor(options.attempts ?? DEFAULT_ATTEMPTS));
  const backoffMs = Math.max(0, Math.round(options.backoffMs ?? DEFAULT_BACKOFF_MS));
  if (!Number.isFinite(delayMs) || !Number.isFinite(attempts) || !Number.isFinite(backoffMs)) {
    throw new TypeError('delayMs, attempts and backoffMs must be finite numbers');
  }
  if (options.jobId !== undefined && (options.jobId === '' || options.jobId.length > 500)) {
    throw new TypeError('jobId must be a non-empty string of at most 500 characters');
  }
  return { jobId: options.jobId, delayMs, attempts, backoffMs };
}

/** Wait before try number `attempt + 1` after `attempt` failed tries: backoff x 2^(attempt-1). */
export function backoffDelay(backoffMs: number, failedAttempts: number): number {
  return backoffMs * 2 ** Math.max(0, failedAttempts - 1);
}

export interface JobQueueOptions {
  log: Logger;
}

export function assertQueueName(queue: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(queue)) {
    throw new TypeError(`queue name "${queue}" must be 1-100 letters, digits, '.', '_' or '-'`);
  }
}
