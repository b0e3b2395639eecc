// Every workflow change is one transaction holding exactly one Task event in the outbox (what the
// subscriptions deliver), its Provenance and the notification (Communication) for the right
// people; a change that fails part-way writes none of them. Checked for every kind of event of
// both workflows, rows of one transaction recognised by their shared outbox.created_at (now() is
// the transaction's start time). The part-way failure is real: a database trigger refuses the
// notification insert, after the Task row was written in the same transaction.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setWorkflowRuntime } from '../../server/workflow/engine.ts';
import { WORKFLOW_EVENT_SYSTEM } from '../../server/workflow/model.ts';
import { call, clock, op, setupWorld, type World } from './support.ts';

let w: World;
beforeAll(async () => {
  w = await setupWorld();
  setWorkflowRuntime({ now: clock.now });
});
afterAll(async () => w?.close());

const ref = (key: string) => (key.startsWith('Organization') ? key : `Practitioner/${w.ids[key]}`);
const org = (key: string) => `Organization/${w.ids[key]}`;

async function lastOutboxId(): Promise<number> {
  const r = await w.db.query<{ id: string | null }>('SELECT max(id) AS id FROM outbox');
  return Number(r.rows[0].id ?? 0);
}

interface Written {
  task: number;
  provenance: number;
  notifications: any[];
  notes: any[];
  transactions: number;
}

/** What a change wrote to the outbox after `since`, for one Task. */
async function written(since: number, taskId: string): Promise<Written> {
  const rows = (await w.db.query<{ resource_type: string; resource_id: string; created_at: string }>('SELECT resource_type, resource_id, created_at::text FROM outbox WHERE id > $1 ORDER BY id', [since])).rows;
  const comms = [];
  for (const r of rows.filter((x) => x.resource_type === 'Communication')) comms.push((await call(w.admin, 'GET', `Communication/${r.resource_id}`)).body);
  const kind = (c: any) => c.category?.[0]?.coding?.[0]?.code;
  return {
    task: rows.filter((r) => r.resource_type === 'Task' && r.resource_id === taskId).length,
    provenance: rows.filter((r) => r.resource_type === 'Provenance').length,
    notifications: comms.filter((c) => kind(c) === 'notification' && c.about?.[0]?.reference === `Task/${taskId}`),
    notes: comms.filter((c) => kind(c) === 'note'),
    transactions: new Set(rows.map((r) => r.created_at)).size,
  };
}

/** Runs an operation and checks the one transaction it wrote: one Task event, one Provenance, the notification. */
async function step(who: string, taskId: string, operation: string, params: Record<string, unknown>, event: string, recipients: string[]) {
  const since = await lastOutboxId();
  const res = await op(w.as(who), `Task/${taskId}/${operation}`, params);
  expect([200, 201], `${operation}: ${JSON.stringify(res.body)}`).toContain(res.status); // $add-note answers 201 (the note)
  const out = await written(since, taskId);
  expect(out.task, `${operation}: Task events`).toBe(1);
  expect(out.provenance, `${operation}: Provenance`).toBe(1);
  expect(out.transactions, `${operation}: one transaction`).toBe(1);
  if (recipients.length === 0) {
    expect(out.notifications).toHaveLength(0);
  } else {
    expect(out.notifications, `${operation}: one notification`).toHaveLength(1);
    const n = out.notifications[0];
    expect(n.category.find((c: any) => c.coding[0].system === WORKFLOW_EVENT_SYSTEM).coding[0].code).toBe(event);
    expect(n.recipient.map((r: any) => r.reference).sort(), `${operation}: recipients`).toEqual(recipients.map(ref).sort());
    expect(n.status).toBe('in-progress');
  }
  return { res, out };
}

async function create(workflow: string, department: string, extra: Record<string, unknown> = {}) {
  const since = await lastOutboxId();
  const res = await op(w.as('requester'), 'ServiceRequest/$request', { workflow, patient: `Patient/${w.ids.patient}`, department: org(department), priority: 'urgent', ...extra });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  const task = res.body.parameter.find((p: any) => p.name === 'task').resource;
  return { task, out: await written(since, task.id) };
}

describe('one outbox event and the right notifications per change, in one transaction', () => {
  it('consult: created, accepted, note added, follow-up, completed', async () => {
    const { task, out } = await create('consult', 'cardiology');
    expect([out.task, out.provenance, out.transactions]).toEqual([1, 1, 1]);
    expect(out.notifications[0].recipient.map((r: any) => r.reference).sort()).toEqual([org('cardiology'), ref('cardHead')].sort());
    await step('cardDoc', task.id, '$accept', {}, 'accepted', ['requester']);
    const note = await step('cardDoc', task.id, '$add-note', { text: 'Seen, echo tomorrow' }, 'note-added', ['requester']);
    expect(note.out.notes).toHaveLength(1);
    expect(note.res.body.id).toBe(note.out.notes[0].id); // $add-note answers the stored note
    await step('cardDoc', task.id, '$follow-up', {}, 'follow-up', ['requester']);
    await step('cardDoc', task.id, '$complete', {}, 'completed', ['requester']);
  });

  it('consult: assigned by the head, reprioritized, escalated, cancelled', async () => {
    const { task } = await create('consult', 'cardiology');
    await step('cardHead', task.id, '$assign', { owner: ref('cardDoc') }, 'assigned', ['cardDoc', 'requester']);
    await step('requester', task.id, '$reprioritize', { priority: 'stat' }, 'reprioritized', ['cardDoc', 'cardHead']);
    await step('requester', task.id, '$escalate', { reason: 'No answer' }, 'escalated', ['cardHead', 'cardDoc']);
    await step('requester', task.id, '$cancel', { reason: 'Transferred' }, 'cancelled', ['cardDoc']);
  });

  it('referral: drafted (nobody told), sent, received, declined', async () => {
    const { task, out } = await create('referral', 'otherHospital', { draft: true });
    expect([out.task, out.notifications.length]).toEqual([1, 0]);
    await step('requester', task.id, '$send', {}, 'sent', [org('otherHospital')]);
    await step('refDoc', task.id, '$receive', {}, 'received', ['requester']);
    await step('refDoc', task.id, '$decline', { reason: 'No capacity' }, 'declined', ['requester']);
  });

  it('a change that fails part-way writes nothing: no Task event, no Provenance, no notification', async () => {
    const { task } = await create('consult', 'cardiology', { reason: 'FAIL-ON-NOTIFY' });
    await w.db.query(`CREATE OR REPLACE FUNCTION wl_test_refuse_notification() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.content::text LIKE '%FAIL-ON-NOTIFY%' AND NEW.content::text LIKE '%"code": "accepted"%' THEN
          RAISE EXCEPTION 'notification refused (test trigger)';
        END IF;
        RETURN NEW;
      END $$`);
    await w.db.query(`CREATE TRIGGER wl_test_refuse BEFORE INSERT ON "Communication" FOR EACH ROW EXECUTE FUNCTION wl_test_refuse_notification()`);
    try {
      const since = await lastOutboxId();
      const provenanceBefore = (await call(w.admin, 'GET', `Provenance?target=Task/${task.id}&_summary=count`)).body.total;
      // The router passes a database error on (the HTTP layer answers 500 with an OperationOutcome).
      await expect(op(w.as('cardDoc'), `Task/${task.id}/$accept`)).rejects.toThrow(/notification refused/);
      const out = await written(since, task.id);
      expect([out.task, out.provenance, out.notifications.length]).toEqual([0, 0, 0]);
      const after = (await call(w.admin, 'GET', `Task/${task.id}`)).body;
      expect([after.status, after.meta.versionId]).toEqual(['requested', task.meta.versionId]);
      expect((await call(w.admin, 'GET', `Provenance?target=Task/${task.id}&_summary=count`)).body.total).toBe(provenanceBefore);
    } finally {
      await w.db.query('DROP TRIGGER wl_test_refuse ON "Communication"');
      await w.db.query('DROP FUNCTION wl_test_refuse_notification()');
    }
    // Once the database accepts it again, the same change goes through whole.
    await step('cardDoc', task.id, '$accept', {}, 'accepted', ['requester']);
  });
});
