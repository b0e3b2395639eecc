// SLA timers with a controllable clock: escalation fires once at the due time (re-reading the
// Task), the second tier goes to the administrator, a priority change re-schedules the timer, and
// a restart (new queue + start sweep) still fires a timer whose due time passed while down.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createInProcessQueue } from '../../server/jobs/inprocess.ts';
import type { AddOptions, JobQueue } from '../../server/jobs/queue.ts';
import { createLogger } from '../../server/logger.ts';
import { escalateIfOverdue, slaJobId } from '../../server/workflow/engine.ts';
import { startWorkflow, type WorkflowRuntimeHandle } from '../../server/workflow/index.ts';
import { EXT_DEPARTMENT_SLA, EXT_ESCALATED_TO, EXT_ESCALATION_LEVEL, WORKFLOW_STATUS_SYSTEM } from '../../server/workflow/model.ts';
import { BASE, call, clock, op, setupWorld, waitFor, type World } from './support.ts';

const log = createLogger('silent');
let w: World;
let jobs: JobQueue;
let wf: WorkflowRuntimeHandle;
const added: { queue: string; jobId?: string; delayMs?: number }[] = [];

function recording(q: JobQueue): JobQueue {
  return {
    kind: q.kind,
    add: <T>(queue: string, data: T, options?: AddOptions) => {
      added.push({ queue, jobId: options?.jobId, delayMs: options?.delayMs });
      return q.add(queue, data, options);
    },
    remove: (queue, id) => q.remove(queue, id),
    process: (queue, handler, options) => q.process(queue, handler, options),
    close: () => q.close(),
  };
}

async function start(): Promise<void> {
  jobs = recording(createInProcessQueue({ db: w.db, log, pollMs: 50 }));
  wf = await startWorkflow({ db: w.db, log, jobs, fhirBase: BASE, now: clock.now });
}

beforeAll(async () => {
  w = await setupWorld();
  await start();
});
afterAll(async () => {
  await wf?.stop();
  await jobs?.close();
  await w?.close();
});

const seed = (t: any) => t.businessStatus.coding.find((c: any) => c.system === WORKFLOW_STATUS_SYSTEM).code;
const readTask = async (id: string) => (await call(w.admin, 'GET', `Task/${id}`)).body;

async function consult(priority: string) {
  const res = await op(w.as('requester'), 'ServiceRequest/$request', {
    workflow: 'consult',
    patient: `Patient/${w.ids.patient}`,
    department: `Organization/${w.ids.cardiology}`,
    priority,
  });
  expect(res.status).toBe(201);
  return res.body.parameter.find((p: any) => p.name === 'task').resource;
}

async function escalations(id: string): Promise<number> {
  const task = await readTask(id);
  let n = 0;
  for (const h of task.relevantHistory ?? []) {
    const p = (await call(w.admin, 'GET', h.reference)).body;
    if (p.activity.coding[0].code === 'escalated') n++;
  }
  return n;
}

describe('SLA timers', () => {
  it('schedules a timer keyed by the Task at the due time', async () => {
    const t = await consult('stat');
    const add = added.filter((a) => a.jobId === slaJobId(t.id)).at(-1);
    expect(add?.queue).toBe('workflow-sla');
    expect(add!.delayMs!).toBeGreaterThan(29 * 60_000);
    expect(add!.delayMs!).toBeLessThanOrEqual(30 * 60_000);
  });

  it('escalates exactly once at the due time, to the head, then to the administrator', async () => {
    const t = await consult('stat');
    // Not due yet: the handler re-reads the Task and does nothing.
    expect(await escalateIfOverdue(wf.ctx, t.id)).toBe('not-due');
    // Time passes (the clock jumps to 200 ms before the due time); re-scheduling gives a short real delay.
    clock.advance(30 * 60_000 - 200);
    await wf.sweep();
    const escalated = await waitFor(async () => {
      const task = await readTask(t.id);
      return seed(task) === 'ESCALATED' && task;
    });
    expect(escalated.extension.find((e: any) => e.url === EXT_ESCALATION_LEVEL).valueInteger).toBe(1);
    expect(escalated.extension.filter((e: any) => e.url === EXT_ESCALATED_TO).map((e: any) => e.valueReference.reference)).toEqual([`Practitioner/${w.ids.cardHead}`]);
    // Nobody had claimed it: the head now owns it.
    expect(escalated.owner.reference).toBe(`Practitioner/${w.ids.cardHead}`);
    // Running the timer again (a duplicate delivery, another process) changes nothing.
    expect(await escalateIfOverdue(wf.ctx, t.id)).toBe('not-due');
    await wf.sweep();
    await new Promise((r) => setTimeout(r, 300));
    expect(await escalations(t.id)).toBe(1);
    // The head got an in-app notification.
    const notes = await call(w.admin, 'GET', `Communication?recipient=Practitioner/${w.ids.cardHead}&based-on=${t.focus.reference}`);
    expect(notes.body.entry.map((e: any) => e.resource.category[1].coding[0].code)).toContain('escalated');

    // Second tier: 15 minutes later (the department's setting), the administrator.
    clock.advance(15 * 60_000);
    await wf.sweep();
    const tier2 = await waitFor(async () => {
      const task = await readTask(t.id);
      return task.extension.find((e: any) => e.url === EXT_ESCALATION_LEVEL).valueInteger === 2 && task;
    });
    expect(tier2.extension.filter((e: any) => e.url === EXT_ESCALATED_TO).map((e: any) => e.valueReference.reference)).toEqual([
      `Practitioner/${w.ids.cardHead}`,
      `Practitioner/${w.ids.adminUser}`,
    ]);
    expect(await escalations(t.id)).toBe(2);
    expect(await escalateIfOverdue(wf.ctx, t.id)).toBe('already');
  });

  it('does not escalate a Task completed before its due time', async () => {
    const t = await consult('stat');
    await op(w.as('cardDoc'), `Task/${t.id}/$accept`);
    await op(w.as('cardDoc'), `Task/${t.id}/$complete`);
    clock.advance(31 * 60_000);
    expect(await escalateIfOverdue(wf.ctx, t.id)).toBe('closed');
    expect(await escalations(t.id)).toBe(0);
  });

  it('re-schedules when the priority changes', async () => {
    const t = await consult('routine');
    const before = added.filter((a) => a.jobId === slaJobId(t.id)).at(-1)!;
    expect(before.delayMs!).toBeGreaterThan(599 * 60_000);
    const res = await op(w.as('requester'), `Task/${t.id}/$reprioritize`, { priority: 'stat' });
    expect(res.status).toBe(200);
    expect(new Date(res.body.restriction.period.end).getTime() - new Date(res.body.authoredOn).getTime()).toBe(30 * 60_000);
    const after = added.filter((a) => a.jobId === slaJobId(t.id)).at(-1)!;
    expect(after.delayMs!).toBeLessThanOrEqual(30 * 60_000);
    clock.advance(30 * 60_000);
    expect(await escalateIfOverdue(wf.ctx, t.id)).toBe('escalated-1');
  });

  it('survives a restart: the sweep at start re-creates the timer and it fires', async () => {
    const t = await consult('stat');
    await wf.stop();
    await jobs.close();
    // Down while the due time passes.
    clock.advance(31 * 60_000);
    await start();
    const task = await waitFor(async () => {
      const x = await readTask(t.id);
      return seed(x) === 'ESCALATED' && x;
    });
    expect(task.extension.find((e: any) => e.url === EXT_ESCALATION_LEVEL).valueInteger).toBe(1);
    expect(await escalations(t.id)).toBe(1);
  });
});

describe('demo seed', () => {
  it('seeds departments, people and requests in every state, once', async () => {
    const { seedWorkflowDemo } = await import('../../server/workflow/seed.ts');
    expect(await seedWorkflowDemo({ db: w.db, fhirBase: BASE })).toBe(true);
    expect(await seedWorkflowDemo({ db: w.db, fhirBase: BASE })).toBe(false);
    const tasks = await call(w.admin, 'GET', 'Task?code=http://wardlink.org/fhir/CodeSystem/request-category|consult,http://wardlink.org/fhir/CodeSystem/request-category|referral&_count=200');
    const states = new Set(tasks.body.entry.map((e: any) => `${e.resource.code.coding[0].code} ${seed(e.resource)}`));
    for (const s of ['PENDING', 'ASSIGNED', 'IN_PROGRESS', 'FOLLOW_UP', 'COMPLETED', 'ESCALATED', 'DECLINED', 'CANCELLED']) {
      expect(states.has(`consult ${s}`), `consult ${s}`).toBe(true);
    }
    for (const s of ['DRAFT', 'SENT', 'VIEWED', 'ACCEPTED', 'IN_PROGRESS', 'DECLINED', 'COMPLETED', 'CANCELLED', 'ESCALATED']) {
      expect(states.has(`referral ${s}`), `referral ${s}`).toBe(true);
    }
    // Five departments, each with its SLA settings and a head who is a member.
    const depts = await call(w.admin, 'GET', 'Organization?identifier=urn:wardlink:demo|&_count=50');
    const withSla = depts.body.entry.map((e: any) => e.resource).filter((o: any) => o.extension?.some((x: any) => x.url === EXT_DEPARTMENT_SLA));
    expect(withSla.length).toBeGreaterThanOrEqual(5);
    for (const d of withSla) {
      const head = d.extension.find((x: any) => x.url === EXT_DEPARTMENT_SLA).extension.find((x: any) => x.url === 'head').valueReference.reference;
      const roles = await call(w.admin, 'GET', `PractitionerRole?practitioner=${head}&organization=Organization/${d.id}`);
      expect(roles.body.entry?.length, d.name).toBe(1);
      const staff = await call(w.admin, 'GET', `PractitionerRole?organization=Organization/${d.id}&_count=50`);
      expect(staff.body.entry.map((e: any) => e.resource.code[0].text).sort(), d.name).toEqual(['doctor', 'doctor', 'head', 'nurse']);
    }
  });
});
