// Consult and referral lifecycles over the FHIR router with AuthContexts of the right roles:
// the state machines, who may do what (403), illegal transitions (409 naming the allowed ones),
// Provenance, notifications and the outbox (one Task event per transition, none on failure).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setWorkflowRuntime } from '../../server/workflow/engine.ts';
import { EXT_FIRST_RESPONSE, EXT_LAST_EVENT, WORKFLOW_STATUS_SYSTEM } from '../../server/workflow/model.ts';
import { allowedActions, transition } from '../../server/workflow/state-machine.ts';
import { call, clock, op, setupWorld, type World } from './support.ts';

let w: World;
const seedOf = (task: any) => task.businessStatus.coding.find((c: any) => c.system === WORKFLOW_STATUS_SYSTEM).code;
const taskOf = (res: any) => res.body.parameter.find((p: any) => p.name === 'task').resource;

beforeAll(async () => {
  w = await setupWorld();
  setWorkflowRuntime({ now: clock.now });
});
afterAll(async () => w?.close());

async function newConsult(priority = 'urgent', dept = 'cardiology', extra: Record<string, unknown> = {}) {
  const res = await op(w.as('requester'), 'ServiceRequest/$request', {
    workflow: 'consult',
    patient: `Patient/${w.ids.patient}`,
    department: `Organization/${w.ids[dept]}`,
    priority,
    reason: 'Chest pain, troponin up',
    ...extra,
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return taskOf(res);
}

async function outboxCount(type: string, id: string): Promise<number> {
  const r = await w.db.query<{ n: string }>('SELECT count(*) AS n FROM outbox WHERE resource_type = $1 AND resource_id = $2', [type, id]);
  return Number(r.rows[0].n);
}

async function communications(taskId: string): Promise<any[]> {
  // R4 has no Communication?about: the notes and notifications are basedOn the ServiceRequest.
  const task = (await call(w.admin, 'GET', `Task/${taskId}`)).body;
  const r = await call(w.admin, 'GET', `Communication?based-on=${task.focus.reference}&_count=100`);
  return (r.body.entry ?? []).map((e: any) => e.resource).filter((c: any) => c.about?.[0]?.reference === `Task/${taskId}`);
}

describe('state machine (pure)', () => {
  it('answers the next state or what is allowed', () => {
    const ok = transition('consult', 'requested', 'PENDING', 'accept');
    expect(ok).toMatchObject({ ok: true, transition: { status: 'accepted', seed: 'ASSIGNED', event: 'accepted' } });
    const bad = transition('consult', 'requested', 'PENDING', 'complete');
    expect(bad.ok).toBe(false);
    expect(allowedActions('consult', 'completed')).toEqual([]);
    expect(allowedActions('referral', 'draft')).toEqual(['send', 'cancel', 'reprioritize']);
    expect(transition('consult', 'requested', 'PENDING', 'send').ok).toBe(false);
  });
});

describe('creating a request', () => {
  it('creates ServiceRequest + Task in one call with the due time from the department SLA and priority', async () => {
    const before = clock.now().getTime();
    const task = await newConsult('stat');
    const after = clock.now().getTime();
    expect(task.status).toBe('requested');
    expect(seedOf(task)).toBe('PENDING');
    expect(task.owner.reference).toBe(`Organization/${w.ids.cardiology}`);
    const due = new Date(task.restriction.period.end).getTime();
    expect(due).toBeGreaterThanOrEqual(before + 30 * 60_000 - 1000);
    expect(due).toBeLessThanOrEqual(after + 30 * 60_000 + 1000);
    const sr = (await call(w.admin, 'GET', task.focus.reference)).body;
    expect(sr.category[0].coding[0].code).toBe('consult');
    expect(sr.meta.profile[0]).toContain('wardlink-consult-servicerequest');
    expect(sr.requester.reference).toBe(`Practitioner/${w.ids.requester}`);
    // Defaults where the department sets no SLA: routine 1380 min.
    const neuro = await newConsult('routine', 'neurology');
    const authored = new Date(neuro.authoredOn).getTime();
    expect(new Date(neuro.restriction.period.end).getTime() - authored).toBe(1380 * 60_000);
    // Overdue worklist search works on the custom Task-due parameter.
    const soon = new Date(before + 31 * 60_000).toISOString();
    const overdue = await call(w.admin, 'GET', `Task?due=lt${soon}&_id=${task.id},${neuro.id}`);
    expect(overdue.body.entry.map((e: any) => e.resource.id)).toEqual([task.id]);
    // The department is notified.
    const notes = await communications(task.id);
    expect(notes.map((c) => c.recipient.map((r: any) => r.reference)).flat()).toContain(`Organization/${w.ids.cardiology}`);
  });

  it('stores attachments as Binary + DocumentReference', async () => {
    const res = await op(w.as('requester'), 'ServiceRequest/$request', {
      workflow: 'referral',
      patient: `Patient/${w.ids.patient}`,
      department: `Organization/${w.ids.otherHospital}`,
    });
    expect(res.status).toBe(201);
    const withDoc = await call(w.as('requester'), 'POST', 'ServiceRequest/$request', {
      resourceType: 'Parameters',
      parameter: [
        { name: 'workflow', valueCode: 'consult' },
        { name: 'patient', valueReference: { reference: `Patient/${w.ids.patient}` } },
        { name: 'department', valueReference: { reference: `Organization/${w.ids.cardiology}` } },
        { name: 'attachment', valueAttachment: { contentType: 'text/plain', data: Buffer.from('ECG report').toString('base64'), title: 'ECG' } },
      ],
    });
    expect(withDoc.status).toBe(201);
    const sr = withDoc.body.parameter.find((p: any) => p.name === 'serviceRequest').resource;
    const doc = (await call(w.admin, 'GET', sr.supportingInfo[0].reference)).body;
    expect(doc.content[0].attachment.url).toMatch(/^Binary\//);
  });

  it('refuses roles that may not request (403)', async () => {
    const res = await op(w.as('nurse'), 'ServiceRequest/$request', {
      workflow: 'consult',
      patient: `Patient/${w.ids.patient}`,
      department: `Organization/${w.ids.cardiology}`,
    });
    expect(res.status).toBe(403);
  });
});

describe('consult lifecycle', () => {
  it('PENDING -> ASSIGNED -> (first note) IN_PROGRESS -> FOLLOW_UP -> COMPLETED, with Provenance and notifications', async () => {
    let task = await newConsult();
    const id = task.id;
    const accepted = await op(w.as('cardDoc'), `Task/${id}/$accept`);
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(200);
    task = accepted.body;
    expect([task.status, seedOf(task), task.owner.reference]).toEqual(['accepted', 'ASSIGNED', `Practitioner/${w.ids.cardDoc}`]);

    const note = await op(w.as('cardDoc'), `Task/${id}/$add-note`, { text: 'Seen, ECG ordered' });
    expect(note.status).toBe(201);
    expect(note.body.resourceType).toBe('Communication');
    task = (await call(w.admin, 'GET', `Task/${id}`)).body;
    expect([task.status, seedOf(task)]).toEqual(['in-progress', 'IN_PROGRESS']);
    expect(task.extension.find((e: any) => e.url === EXT_FIRST_RESPONSE).valueDateTime).toBeTruthy();
    expect(task.executionPeriod.start).toBeTruthy();

    task = (await op(w.as('cardDoc'), `Task/${id}/$follow-up`)).body;
    expect(seedOf(task)).toBe('FOLLOW_UP');
    const done = await op(w.as('cardDoc'), `Task/${id}/$transition`, { action: 'complete' });
    expect(done.status).toBe(200);
    expect([done.body.status, seedOf(done.body)]).toEqual(['completed', 'COMPLETED']);
    const sr = (await call(w.admin, 'GET', done.body.focus.reference)).body;
    expect(sr.status).toBe('completed');

    // One Provenance per change: create, accept, note, follow-up, complete.
    expect(done.body.relevantHistory).toHaveLength(5);
    const prov = await call(w.admin, 'GET', done.body.relevantHistory[4].reference);
    expect(prov.body.activity.coding[0].code).toBe('completed');
    expect(prov.body.agent[0].who.reference).toBe(`Practitioner/${w.ids.cardDoc}`);
    expect(prov.body.target[0].reference).toBe(`Task/${id}/_history/${done.body.meta.versionId}`);

    const comms = await communications(id);
    const notes = comms.filter((c) => c.category[0].coding[0].code === 'note');
    expect(notes).toHaveLength(1);
    expect(notes[0].basedOn[0].reference).toBe(task.focus.reference);
    const toRequester = comms.filter((c) => c.category[0].coding[0].code === 'notification' && c.recipient.some((r: any) => r.reference === `Practitioner/${w.ids.requester}`));
    expect(toRequester.map((c) => c.category[1].coding[0].code).sort()).toEqual(['accepted', 'completed', 'follow-up', 'note-added']);
  });

  it('head assigns to a doctor; declines need a reason; requester cancels', async () => {
    const a = await newConsult();
    const assigned = await op(w.as('cardHead'), `Task/${a.id}/$assign`, { owner: `Practitioner/${w.ids.cardDoc}` });
    expect(assigned.status, JSON.stringify(assigned.body)).toBe(200);
    expect(assigned.body.owner.reference).toBe(`Practitioner/${w.ids.cardDoc}`);
    expect((await op(w.as('cardDoc'), `Task/${a.id}/$start`)).body.status).toBe('in-progress');

    const b = await newConsult();
    const noReason = await op(w.as('cardDoc'), `Task/${b.id}/$decline`);
    expect(noReason.status).toBe(400);
    const declined = await op(w.as('cardDoc'), `Task/${b.id}/$decline`, { reason: 'Not a cardiology question' });
    expect([declined.body.status, declined.body.statusReason.text]).toEqual(['rejected', 'Not a cardiology question']);

    const c = await newConsult();
    expect((await op(w.as('requester'), `Task/${c.id}/$cancel`, { reason: 'Patient discharged' })).body.status).toBe('cancelled');
  });

  it('refuses illegal transitions with 409 naming the allowed ones', async () => {
    const t = await newConsult();
    const res = await op(w.as('cardDoc'), `Task/${t.id}/$complete`);
    expect(res.status).toBe(409);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue[0].diagnostics).toContain('complete is allowed from accepted, in-progress');
    expect(res.body.issue[0].diagnostics).toContain('allowed from requested: accept, assign, decline, cancel, escalate, reprioritize');
    expect(res.body.issue[0].details.text).toContain('accept');
    const send = await op(w.as('requester'), `Task/${t.id}/$send`);
    expect(send.status).toBe(409);
    await op(w.as('requester'), `Task/${t.id}/$cancel`);
    const after = await op(w.as('cardDoc'), `Task/${t.id}/$accept`);
    expect(after.status).toBe(409);
    expect(after.body.issue[0].diagnostics).toContain('cancelled is final');
  });

  it('refuses the wrong party with 403', async () => {
    const t = await newConsult();
    // Another department's clinician may not accept; the target department may not cancel.
    expect((await op(w.as('neuroDoc'), `Task/${t.id}/$accept`)).status).toBe(403);
    expect((await op(w.as('nurse'), `Task/${t.id}/$accept`)).status).toBe(403);
    expect((await op(w.as('cardDoc'), `Task/${t.id}/$cancel`)).status).toBe(403);
    // Only the head (or an admin) assigns.
    expect((await op(w.as('cardDoc'), `Task/${t.id}/$assign`, { owner: `Practitioner/${w.ids.cardDoc}` })).status).toBe(403);
    await op(w.as('cardDoc'), `Task/${t.id}/$accept`);
    // Only the owner (or head) completes.
    expect((await op(w.as('neuroDoc'), `Task/${t.id}/$complete`)).status).toBe(403);
    expect((await op(w.as('neuroDoc'), `Task/${t.id}/$add-note`, { text: 'hi' })).status).toBe(403);
    expect((await op(w.as('cardHead'), `Task/${t.id}/$complete`)).status).toBe(200);
  });

  it('writes exactly one Task outbox event per transition, and nothing when it fails', async () => {
    const t = await newConsult();
    expect(await outboxCount('Task', t.id)).toBe(1);
    const commsBefore = (await communications(t.id)).length;
    expect((await op(w.as('cardDoc'), `Task/${t.id}/$complete`)).status).toBe(409);
    expect((await op(w.as('neuroDoc'), `Task/${t.id}/$accept`)).status).toBe(403);
    expect(await outboxCount('Task', t.id)).toBe(1);
    expect((await op(w.as('cardDoc'), `Task/${t.id}/$accept`)).status).toBe(200);
    expect(await outboxCount('Task', t.id)).toBe(2);
    const task = (await call(w.admin, 'GET', `Task/${t.id}`)).body;
    expect(task.extension.find((e: any) => e.url === EXT_LAST_EVENT).valueCode).toBe('accepted');
    expect((await communications(t.id)).length).toBe(commsBefore + 1);
  });
});

describe('referral lifecycle', () => {
  async function newReferral(draft: boolean) {
    const res = await op(w.as('requester'), 'ServiceRequest/$request', {
      workflow: 'referral',
      patient: `Patient/${w.ids.patient}`,
      department: `Organization/${w.ids.otherHospital}`,
      priority: 'routine',
      draft,
    });
    expect(res.status).toBe(201);
    return taskOf(res);
  }

  it('Draft -> Sent -> Viewed -> Accepted -> In progress -> Completed with BSeR businessStatus', async () => {
    const t = await newReferral(true);
    expect([t.status, seedOf(t)]).toEqual(['draft', 'DRAFT']);
    expect((await op(w.as('refDoc'), `Task/${t.id}/$send`)).status).toBe(403);
    const sent = await op(w.as('requester'), `Task/${t.id}/$send`);
    expect([sent.body.status, seedOf(sent.body)]).toEqual(['requested', 'SENT']);
    // The receiving provider's staff (their organisation) act on it; the sender's colleagues do not.
    expect((await op(w.as('cardDoc'), `Task/${t.id}/$receive`)).status).toBe(403);
    expect((await op(w.as('refDoc'), `Task/${t.id}/$receive`)).body.status).toBe('received');
    const acc = await op(w.as('refDoc'), `Task/${t.id}/$accept`);
    expect(acc.body.businessStatus.coding.map((c: any) => c.code)).toEqual(['ACCEPTED', '3.0']);
    expect((await op(w.as('refDoc'), `Task/${t.id}/$start`)).body.status).toBe('in-progress');
    const done = await op(w.as('refDoc'), `Task/${t.id}/$complete`);
    expect(done.body.businessStatus.coding.map((c: any) => c.code)).toEqual(['COMPLETED', '7.0']);
  });

  it('Declined needs a reason and is final', async () => {
    const t = await newReferral(false);
    expect(t.status).toBe('requested');
    expect((await op(w.as('refDoc'), `Task/${t.id}/$decline`)).status).toBe(400);
    const d = await op(w.as('refDoc'), `Task/${t.id}/$decline`, { reason: 'No capacity' });
    expect(d.body.businessStatus.coding.map((c: any) => c.code)).toEqual(['DECLINED', '4.0']);
    expect((await op(w.as('refDoc'), `Task/${t.id}/$accept`)).status).toBe(409);
  });
});
