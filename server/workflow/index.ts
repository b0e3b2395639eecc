// Starts the consult / referral workflow runtime: the SLA timer and reminder processors on the
// job queue (BullMQ or in-process), a sweep re-creating the timer of every open request (nothing
// is lost across restarts: re-adding a jobId replaces the pending job), and, with the outbox
// relay, re-scheduling when a Task's due time is changed by a plain update.
import type { Task } from '@medplum/fhirtypes';
import { createDb, type Db } from '../db/pool.ts';
import { Repository } from '../fhir/repository.ts';
import type { FhirContext } from '../fhir/request.ts';
import type { OutboxRelay } from '../jobs/outbox-relay.ts';
import type { JobQueue } from '../jobs/queue.ts';
import type { Logger } from '../logger.ts';
import {
  REMINDER_QUEUE,
  SLA_QUEUE,
  escalateIfOverdue,
  remind,
  scheduleTimers,
  scheduledVersion,
  setWorkflowRuntime,
  sweepTimers,
  workflowOf,
  type ReminderJobData,
  type SlaJobData,
} from './engine.ts';

export { seedWorkflowDemo, type WorkflowSeedOptions } from './seed.ts';

export interface WorkflowDeps {
  db: Db;
  log: Logger;
  jobs: JobQueue;
  fhirBase: string;
  /** The outbox relay: Task updates made outside the operations re-schedule their timers. */
  outbox?: OutboxRelay;
  /** The clock (tests). */
  now?: () => Date;
  secondTierMinutes?: number;
  /** Fallback administrator (Practitioner/...) for the second escalation tier. */
  administrator?: string;
  reminderMs?: number;
  /**
   * SLA timers handled at once by this process (default 8). Each is a short transaction on its own
   * Task (version-checked), so they run in parallel safely; one at a time, a burst of due timers
   * queues behind each other (tests/bench/workflow.ts: lateness p50 81 ms at 1, 24 ms at 8).
   */
  slaConcurrency?: number;
  /** Skip the start sweep (tests that drive it themselves). */
  sweep?: boolean;
  /**
   * Connections of the timers' own pool (default slaConcurrency + 1; 0: share `db`). SLA timers
   * and reminders then never wait for a connection behind a burst of HTTP requests holding the
   * server's pool: lateness is what the SLA is judged on. Only with BullMQ (production, a real
   * PostgreSQL); the embedded database takes one connection.
   */
  timerPoolSize?: number;
}

export interface WorkflowRuntimeHandle {
  /** The trusted context the timers act with. */
  ctx: FhirContext;
  /** Re-creates missing timers (run at start). */
  sweep(): Promise<number>;
  stop(): Promise<void>;
}

export async function startWorkflow(deps: WorkflowDeps): Promise<WorkflowRuntimeHandle> {
  const log = deps.log.child({ component: 'workflow' });
  setWorkflowRuntime({
    now: deps.now ?? (() => new Date()),
    jobs: deps.jobs,
    log,
    secondTierMinutes: deps.secondTierMinutes,
    administrator: deps.administrator,
    reminderMs: deps.reminderMs,
  });
  const ctx: FhirContext = {
    repo: new Repository(deps.db, { baseUrl: deps.fhirBase }, deps.db),
    fhirBase: deps.fhirBase,
    defaultCount: 50,
    maxCount: 1000,
    maxBinaryBytes: 10 * 1024 * 1024,
    log,
  };
  const slaConcurrency = deps.slaConcurrency ?? 8;
  const poolSize = deps.timerPoolSize ?? slaConcurrency + 1;
  const connectionString = deps.db.pool.options.connectionString;
  const timerDb = poolSize > 0 && deps.jobs.kind === 'bullmq' && connectionString ? createDb(connectionString, poolSize) : undefined;
  const timerCtx: FhirContext = timerDb ? { ...ctx, repo: new Repository(timerDb, { baseUrl: deps.fhirBase }, timerDb) } : ctx;
  // While stopping, handlers still running on the timer pool finish; new ones use the server's
  // pool (closed only after the job queue), so closing the timer pool never fails a job.
  let stopping = false;
  let inFlight = 0;
  let drained: (() => void) | undefined;
  const onTimerPool = async <T>(fn: (c: FhirContext) => Promise<T>): Promise<T> => {
    if (stopping || !timerDb) return fn(ctx);
    inFlight++;
    try {
      return await fn(timerCtx);
    } finally {
      if (--inFlight === 0) drained?.();
    }
  };
  deps.jobs.process<SlaJobData>(SLA_QUEUE, async (job) => {
    const result = await onTimerPool((c) => escalateIfOverdue(c, job.data.taskId));
    log.debug({ task: job.data.taskId, result }, 'SLA timer fired');
  }, { concurrency: slaConcurrency });
  deps.jobs.process<ReminderJobData>(REMINDER_QUEUE, async (job) => {
    await onTimerPool((c) => remind(c, job.data));
  });
  let unsubscribe: (() => void) | undefined;
  if (deps.outbox) {
    unsubscribe = deps.outbox.onResourceEvent(async (event) => {
      if (event.resourceType !== 'Task' || event.action === 'delete') return;
      // Written by the operations in this process: its timers were scheduled with the write.
      if ((scheduledVersion(event.resourceId) ?? 0) >= event.version) return;
      const v = await ctx.repo.vread('Task', event.resourceId, String(event.version)).catch(() => undefined);
      if (!v?.json) return;
      const task = JSON.parse(v.json) as Task;
      if (!workflowOf(task)) return;
      const current = await ctx.repo.readVersion('Task', event.resourceId).catch(() => undefined);
      if (current?.version !== event.version) return; // a newer version has its own event
      await scheduleTimers(task);
    });
  }
  const sweep = () => sweepTimers(ctx);
  if (deps.sweep !== false) {
    const n = await sweep();
    log.info({ timers: n }, 'workflow timers re-created');
  }
  return {
    ctx,
    sweep,
    async stop() {
      unsubscribe?.();
      stopping = true;
      if (inFlight > 0) await new Promise<void>((resolve) => (drained = resolve));
      await timerDb?.close();
    },
  };
}
