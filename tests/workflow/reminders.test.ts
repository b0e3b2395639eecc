// Reminders with a controllable clock (no sleeping for a day): a consult in FOLLOW_UP reminds its
// owner daily, a referral nobody acted on reminds the receiving department daily; each reminder is
// a notification (Communication) for the right recipient, sent once per day even when two workers
// (two queue instances: BullMQ on one Redis when there is one, else two in-process queues on one
// database) and duplicate deliveries run the same job, and none comes once the state changed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBullmqQueue } from '../../server/jobs/bullmq.ts';
import { createInProcessQueue } from '../../server/jobs/inprocess.ts';
import type { AddOptions, JobQueue } from '../../server/jobs/queue.ts';
import { createLogger } from '../../server/logger.ts';
import { REMINDER_QUEUE, reminderJobId, remind } from '../../server/workflow/engine.ts';
import { startWorkflow, type WorkflowRuntimeHandle } from '../../server/workflow/index.ts';
import { WORKFLOW_COMMUNICATION_SYSTEM } from '../../server/workflow/model.ts';
import { testRedisUrl, uniquePrefix } from '../jobs/support.ts';
import { call, clock, op, setupWorld, waitFor, type World } from './support.ts';

const log = createLogger('silent');
const DAY = 24 * 3600_000;
const redisUrl = process.env.DATABASE_URL ? await testRedisUrl() : undefined;
let w: World;
const workers: { jobs: JobQueue; wf: WorkflowRuntimeHandle }[] = [];
const added: { jobId?: string; delayMs?: number; done: Promise<unknown> }[] = [];

function recording(q: JobQueue): JobQueue {
  return {
    kind: q.kind,
    add: <T>(queue: string, data: T, options?: AddOptions) => {
      const done = q.add(queue, data, options);
      if (queue === REMINDER_QUEUE) added.push({ jobId: options?.jobId, delayMs: options?.delayMs, done: done.catch(() => undefined) });
      return done;
    },
    remove: (queue, id) => q.remove(queue, id),
    process: (queue, handler, options) => q.process(queue, handler, options),
    close: () => q.close(),
  };
}

beforeAll(async () => {
  w = await setupWorld();
  const prefix = uniquePrefix();
  for (let i = 0; i < 2; i++) {
    const inner = redisUrl ? createBullmqQueue({ redisUrl, log, prefix }) : createInProcessQueue({ db: w.db, log, pollMs: 50 });
    const jobs = recording(inner);
    workers.push({ jobs, wf: await startWorkflow({ db: w.db, log, jobs, fhirBase: 'http://test.local/fhir', now: clock.now, sweep: false }) });
  }
});
afterAll(async () => {
  for (const { wf, jobs } of workers) {
    await wf.stop();
    await jobs.close();
  }
  await w?.close();
});

/** The reminders about a request (category reminder, basedOn its ServiceRequest). */
async function reminders(srRef: string): Promise<any[]> {
  const res = await call(w.admin, 'GET', `Communication?based-on=${srRef}&category=${WORKFLOW_COMMUNICATION_SYSTEM}|reminder&_count=100`);
  expect(res.status).toBe(200);
  return (res.body.entry ?? []).map((e: any) => e.resource);
}

/** Time passes; both workers' start sweeps re-create the timers (a due reminder runs now). */
async function dayPasses(ms = DAY + 1000): Promise<void> {
  clock.advance(ms);
  await Promise.all(workers.map(({ wf }) => wf.sweep()));
}

const lastDelay = (taskId: string) => added.filter((a) => a.jobId === reminderJobId(taskId)).at(-1)?.delayMs;

/**
 * Waits until the reminder job that sent a reminder has scheduled the next day's slot (it does so
 * after its transaction commits, so the reminder is visible a moment before). Without this, a
 * test that goes on at once can have its own rescheduling (a state change, a sweep) overtaken by
 * that late add, which postpones the due job by a real day.
 */
async function nextSlotScheduled(taskId: string, from: number): Promise<void> {
  const next = await waitFor(async () => added.slice(from).find((a) => a.jobId === reminderJobId(taskId) && (a.delayMs ?? 0) > DAY / 2));
  await next.done;
}

describe('follow-up reminders', () => {
  it('remind the owner of a FOLLOW_UP consult daily, once per day, and stop when it is completed', async () => {
    const res = await op(w.as('requester'), 'ServiceRequest/$request', { workflow: 'consult', patient: `Patient/${w.ids.patient}`, department: `Organization/${w.ids.cardiology}`, priority: 'routine' });
    const task = res.body.parameter.find((p: any) => p.name === 'task').resource;
    const sr = task.focus.reference;
    for (const step of ['$accept', '$start', '$follow-up']) expect((await op(w.as('cardDoc'), `Task/${task.id}/${step}`)).status).toBe(200);
    // Entering FOLLOW_UP schedules the first reminder a day later.
    expect(lastDelay(task.id)).toBeGreaterThan(DAY - 60_000);
    expect(lastDelay(task.id)).toBeLessThanOrEqual(DAY);

    let mark = added.length;
    await dayPasses();
    const first = await waitFor(async () => {
      const r = await reminders(sr);
      return r.length > 0 && r;
    });
    await nextSlotScheduled(task.id, mark);
    expect(first[0].recipient.map((r: any) => r.reference)).toEqual([`Practitioner/${w.ids.cardDoc}`]);
    expect(first[0].about[0].reference).toBe(`Task/${task.id}`);
    expect(first[0].status).toBe('in-progress'); // unread
    // The same day's job run again by both workers at once (duplicate delivery): no second reminder.
    const again = await Promise.all(workers.map(({ wf }) => remind(wf.ctx, { taskId: task.id, kind: 'follow-up' })));
    expect(again).toEqual(['already-sent', 'already-sent']);
    await new Promise((r) => setTimeout(r, 300));
    expect(await reminders(sr)).toHaveLength(1);
    // The next reminder is scheduled for the next day.
    expect(lastDelay(task.id)).toBeGreaterThan(DAY - 5_000);

    mark = added.length;
    await dayPasses();
    await waitFor(async () => (await reminders(sr)).length === 2);
    await nextSlotScheduled(task.id, mark);

    expect((await op(w.as('cardDoc'), `Task/${task.id}/$complete`)).status).toBe(200);
    await dayPasses();
    await new Promise((r) => setTimeout(r, 500));
    expect(await reminders(sr)).toHaveLength(2);
    expect(await remind(workers[0].wf.ctx, { taskId: task.id, kind: 'follow-up' })).toBe('stopped');
  });
});

describe('referrals not acted on', () => {
  it('remind the receiving department daily while requested or received, and stop once accepted', async () => {
    const res = await op(w.as('requester'), 'ServiceRequest/$request', { workflow: 'referral', patient: `Patient/${w.ids.patient}`, department: `Organization/${w.ids.otherHospital}`, priority: 'routine' });
    expect(res.status).toBe(201);
    const task = res.body.parameter.find((p: any) => p.name === 'task').resource;
    const sr = task.focus.reference;
    // Not a day yet: nothing, and the job, run early, sends nothing.
    clock.advance(DAY / 2);
    expect(await remind(workers[1].wf.ctx, { taskId: task.id, kind: 'not-acted' })).toBe('not-due');
    let mark = added.length;
    await dayPasses(DAY / 2 + 1000);
    const first = await waitFor(async () => {
      const r = await reminders(sr);
      return r.length > 0 && r;
    });
    await nextSlotScheduled(task.id, mark);
    expect(first[0].recipient.map((r: any) => r.reference)).toEqual([`Organization/${w.ids.otherHospital}`]);
    // Viewed but not accepted: still not acted on; the day counts from the last change.
    expect((await op(w.as('refDoc'), `Task/${task.id}/$receive`)).status).toBe(200);
    mark = added.length;
    await dayPasses();
    await waitFor(async () => (await reminders(sr)).length === 2);
    await nextSlotScheduled(task.id, mark);
    expect((await op(w.as('refDoc'), `Task/${task.id}/$accept`)).status).toBe(200);
    await dayPasses();
    await new Promise((r) => setTimeout(r, 500));
    expect(await reminders(sr)).toHaveLength(2);
    expect(await remind(workers[0].wf.ctx, { taskId: task.id, kind: 'not-acted' })).toBe('stopped');
  });
});
