// Consult and referral lifecycles over HTTP with real SMART tokens (the sign-in flow of the
// authorization server, one user per role): create with ServiceRequest/$request, assign, first
// note, complete; a referral sent, received and declined by the receiving provider; illegal
// transitions (409 naming the allowed ones); wrong-role attempts (403); the requester cancels;
// and the notifications (Communication) are readable over HTTP by the people they are for.
// The workflow runtime runs on the in-process queue, so the SLA timers are really scheduled.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Organization, Patient, PractitionerRole } from '@medplum/fhirtypes';
import { registerClient } from '../../server/auth/clients.ts';
import type { Role } from '../../server/auth/context.ts';
import { createInProcessQueue } from '../../server/jobs/inprocess.ts';
import type { AddOptions, JobQueue } from '../../server/jobs/queue.ts';
import { createLogger } from '../../server/logger.ts';
import { SLA_QUEUE, slaJobId } from '../../server/workflow/engine.ts';
import { startWorkflow, type WorkflowRuntimeHandle } from '../../server/workflow/index.ts';
import { EXT_DEPARTMENT_SLA, EXT_FIRST_RESPONSE, WORKFLOW_STATUS_SYSTEM } from '../../server/workflow/model.ts';
import { makeUser, startAuthTestServer, type AuthTestServer } from '../auth/support.ts';
import { CLIENT, REDIRECT, SCOPE, fhirCall, signIn } from './http-support.ts';
const log = createLogger('silent');

let srv: AuthTestServer;
let jobs: JobQueue;
let wf: WorkflowRuntimeHandle;
const scheduled: { queue: string; jobId?: string; op: 'add' | 'remove' }[] = [];

interface Person {
  username: string;
  password: string;
  fhirUser: string;
  token: string;
}
const people: Record<string, Person> = {};
const ids: Record<string, string> = {};

const tokenFor = (user: { username: string; password: string }) => signIn(srv, user);
const fhir = (who: string, method: string, path: string, body?: unknown) => fhirCall(srv, people[who].token, method, path, body);

function parameters(values: Record<string, unknown>): any {
  const parameter = Object.entries(values)
    .filter(([, v]) => v !== undefined)
    .map(([name, v]) => {
      if (typeof v === 'boolean') return { name, valueBoolean: v };
      if (typeof v === 'string' && /^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]+$/.test(v)) return { name, valueReference: { reference: v } };
      return { name, valueString: v };
    });
  return { resourceType: 'Parameters', parameter };
}

const op = (who: string, path: string, values: Record<string, unknown> = {}) => fhir(who, 'POST', path, parameters(values));
const seedOf = (task: any) => task.businessStatus.coding.find((c: any) => c.system === WORKFLOW_STATUS_SYSTEM).code;
const eventOf = (c: any) => c.category?.[1]?.coding?.[0]?.code;
const taskOf = (res: any) => res.body.parameter.find((p: any) => p.name === 'task').resource;
const srOf = (res: any) => res.body.parameter.find((p: any) => p.name === 'serviceRequest').resource;

/** The notifications about a Task addressed to `who`, read over HTTP with their own token. */
async function inbox(who: string, taskId: string): Promise<any[]> {
  const res = await fhir(who, 'GET', `Communication?recipient=${people[who].fhirUser}&_count=200`);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return (res.body.entry ?? []).map((e: any) => e.resource).filter((c: any) => c.about?.[0]?.reference === `Task/${taskId}`);
}

beforeAll(async () => {
  srv = await startAuthTestServer();
  const inner = createInProcessQueue({ db: srv.db, log, pollMs: 50 });
  jobs = {
    kind: inner.kind,
    add: <T>(queue: string, data: T, options?: AddOptions) => {
      scheduled.push({ queue, jobId: options?.jobId, op: 'add' });
      return inner.add(queue, data, options);
    },
    remove: (queue, id) => {
      scheduled.push({ queue, jobId: id, op: 'remove' });
      return inner.remove(queue, id);
    },
    process: (queue, handler, options) => inner.process(queue, handler, options),
    close: () => inner.close(),
  };
  wf = await startWorkflow({ db: srv.db, log, jobs, fhirBase: srv.fhirBase });
  await registerClient(srv.db, { clientId: CLIENT, kind: 'public', redirectUris: [REDIRECT], scopes: SCOPE, trusted: true });

  // The hospital, its departments (SLA extension naming the head) and a partner provider.
  const org = async (key: string, resource: Organization) => {
    ids[key] = (await srv.repo.create<Organization>(resource)).id as string;
  };
  await org('hospital', { resourceType: 'Organization', name: 'Test Hospital' });
  await org('partner', { resourceType: 'Organization', name: 'Partner Rehabilitation Clinic' });
  const hospital = `Organization/${ids.hospital}`;

  const users: Record<string, [Role, string]> = {
    requester: ['clinician', hospital],
    cardHead: ['department-head', hospital],
    cardDoc: ['clinician', hospital],
    neuroNurse: ['nurse', hospital],
    reception: ['receptionist', hospital],
    crew: ['ambulance-crew', hospital],
    partnerDoc: ['clinician', `Organization/${ids.partner}`],
  };
  for (const [key, [role, organization]] of Object.entries(users)) {
    const u = await makeUser(srv, role, { organization });
    people[key] = { username: u.username, password: u.password, fhirUser: u.fhirUser, token: '' };
  }

  const sla = (stat: number, urgent: number, routine: number, head: string) => ({
    url: EXT_DEPARTMENT_SLA,
    extension: [
      { url: 'stat', valueInteger: stat },
      { url: 'asap', valueInteger: urgent },
      { url: 'urgent', valueInteger: urgent },
      { url: 'routine', valueInteger: routine },
      { url: 'second-tier-delay', valueInteger: 60 },
      { url: 'head', valueReference: { reference: head } },
    ],
  });
  const dept = (name: string, extension: any[]): Organization => ({
    resourceType: 'Organization',
    active: true,
    type: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/organization-type', code: 'dept' }] }],
    name,
    partOf: { reference: hospital },
    extension,
  });
  await org('cardiology', dept('Cardiology', [sla(30, 120, 1380, people.cardHead.fhirUser)]));
  await org('neurology', dept('Neurology', []));
  const member = (who: string, key: string, code: string) =>
    srv.repo.create<PractitionerRole>({
      resourceType: 'PractitionerRole',
      active: true,
      practitioner: { reference: people[who].fhirUser },
      organization: { reference: `Organization/${ids[key]}` },
      code: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/practitioner-role', code: code === 'nurse' ? 'nurse' : 'doctor' }], text: code }],
    });
  await member('cardHead', 'cardiology', 'head');
  await member('cardDoc', 'cardiology', 'doctor');
  await member('requester', 'neurology', 'doctor');
  await member('neuroNurse', 'neurology', 'nurse');
  ids.patient = (await srv.repo.create<Patient>({ resourceType: 'Patient', name: [{ given: ['Anna'], family: 'Berg' }], managingOrganization: { reference: hospital } })).id as string;

  for (const key of Object.keys(people)) people[key].token = await tokenFor(people[key]);
});

afterAll(async () => {
  await wf?.stop();
  await jobs?.close();
  await srv?.stop();
});

async function newConsult(priority = 'urgent'): Promise<{ task: any; sr: any; res: any }> {
  const res = await op('requester', 'ServiceRequest/$request', {
    workflow: 'consult',
    patient: `Patient/${ids.patient}`,
    department: `Organization/${ids.cardiology}`,
    priority,
    reason: 'Chest pain, troponin up',
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return { task: taskOf(res), sr: srOf(res), res };
}

async function newReferral(draft: boolean): Promise<any> {
  const res = await op('requester', 'ServiceRequest/$request', {
    workflow: 'referral',
    patient: `Patient/${ids.patient}`,
    department: `Organization/${ids.partner}`,
    priority: 'routine',
    reason: 'Rehabilitation after stroke',
    draft,
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return taskOf(res);
}

describe('consult over HTTP with SMART tokens', () => {
  it('clinician requests, head assigns, doctor writes the first note and completes; everyone concerned is notified', async () => {
    const before = Date.now();
    const { task: created, sr, res } = await newConsult('urgent');
    expect(res.headers.get('location')).toContain(`/fhir/Task/${created.id}/_history/1`);
    expect([created.status, seedOf(created)]).toEqual(['requested', 'PENDING']);
    expect(created.owner.reference).toBe(`Organization/${ids.cardiology}`);
    expect(created.requester.reference).toBe(people.requester.fhirUser);
    expect(sr.requester.reference).toBe(people.requester.fhirUser);
    // Due time from the Cardiology SLA: urgent 120 minutes.
    const due = new Date(created.restriction.period.end).getTime();
    expect(due).toBeGreaterThanOrEqual(before + 120 * 60_000 - 1000);
    expect(due).toBeLessThanOrEqual(Date.now() + 120 * 60_000 + 1000);
    // The SLA timer is scheduled on the job queue.
    expect(scheduled).toContainEqual({ queue: SLA_QUEUE, jobId: slaJobId(created.id), op: 'add' });
    // The head of department hears about it and can read the request.
    expect((await inbox('cardHead', created.id)).map(eventOf)).toEqual(['created']);
    expect((await fhir('cardHead', 'GET', `Task/${created.id}`)).status).toBe(200);
    expect((await fhir('cardHead', 'GET', `ServiceRequest/${sr.id}`)).status).toBe(200);

    // The head assigns it to a doctor through the generic $transition.
    const assigned = await op('cardHead', `Task/${created.id}/$transition`, { action: 'assign', owner: people.cardDoc.fhirUser });
    expect(assigned.status, JSON.stringify(assigned.body)).toBe(200);
    expect([assigned.body.status, seedOf(assigned.body), assigned.body.owner.reference]).toEqual(['accepted', 'ASSIGNED', people.cardDoc.fhirUser]);
    expect((await inbox('cardDoc', created.id)).map(eventOf)).toEqual(['assigned']);

    // The doctor's first note: in progress, first response time set.
    const note = await op('cardDoc', `Task/${created.id}/$add-note`, { text: 'Seen, ECG ordered' });
    expect(note.status, JSON.stringify(note.body)).toBe(201);
    expect(note.body.resourceType).toBe('Communication');
    expect(note.body.sender.reference).toBe(people.cardDoc.fhirUser);
    let task = (await fhir('cardDoc', 'GET', `Task/${created.id}`)).body;
    expect([task.status, seedOf(task)]).toEqual(['in-progress', 'IN_PROGRESS']);
    const firstResponse = task.extension.find((e: any) => e.url === EXT_FIRST_RESPONSE)?.valueDateTime;
    expect(firstResponse).toBeTruthy();
    expect(task.executionPeriod.start).toBe(firstResponse);
    // A second note does not move the first response time.
    expect((await op('cardDoc', `Task/${created.id}/$add-note`, { text: 'Echo booked' })).status).toBe(201);
    task = (await fhir('cardDoc', 'GET', `Task/${created.id}`)).body;
    expect(task.extension.find((e: any) => e.url === EXT_FIRST_RESPONSE).valueDateTime).toBe(firstResponse);

    // The notes are on the request (basedOn the ServiceRequest) and the requester reads them.
    const notes = await fhir('requester', 'GET', `Communication?based-on=ServiceRequest/${sr.id}&_count=100`);
    expect(notes.status).toBe(200);
    const noteTexts = notes.body.entry
      .map((e: any) => e.resource)
      .filter((c: any) => c.category[0].coding[0].code === 'note')
      .map((c: any) => c.payload[0].contentString);
    expect(noteTexts.sort()).toEqual(['Echo booked', 'Seen, ECG ordered']);

    // The doctor completes it; the ServiceRequest is completed with it.
    const done = await op('cardDoc', `Task/${created.id}/$complete`);
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    expect([done.body.status, seedOf(done.body)]).toEqual(['completed', 'COMPLETED']);
    expect(done.body.executionPeriod.end).toBeTruthy();
    expect((await fhir('requester', 'GET', `ServiceRequest/${sr.id}`)).body.status).toBe('completed');
    expect(scheduled).toContainEqual({ queue: SLA_QUEUE, jobId: slaJobId(created.id), op: 'remove' });

    // Provenance for each change, readable with the Task: create, assign, two notes, complete.
    expect(done.body.relevantHistory).toHaveLength(5);
    const prov = await fhir('requester', 'GET', done.body.relevantHistory[1].reference);
    expect(prov.status).toBe(200);
    expect(prov.body.activity.coding[0].code).toBe('assigned');
    expect(prov.body.agent[0].who.reference).toBe(people.cardHead.fhirUser);

    // The requester's notifications, read with the requester's token; marked read by them.
    const mine = await inbox('requester', created.id);
    expect(mine.map(eventOf).sort()).toEqual(['assigned', 'completed', 'note-added', 'note-added']);
    expect(mine.every((c) => c.status === 'in-progress' && c.recipient.some((r: any) => r.reference === people.requester.fhirUser))).toBe(true);
    const read = await fhir('requester', 'PUT', `Communication/${mine[0].id}`, { ...mine[0], status: 'completed', received: new Date().toISOString() });
    expect(read.status, JSON.stringify(read.body)).toBe(200);
    const unread = await fhir('requester', 'GET', `Communication?recipient=${people.requester.fhirUser}&status=in-progress&_count=200`);
    expect(unread.body.entry?.map((e: any) => e.resource.id) ?? []).not.toContain(mine[0].id);
  });

  it('the per-action $assign and $accept work the same way; the head may also complete', async () => {
    const { task } = await newConsult('stat');
    const assigned = await op('cardHead', `Task/${task.id}/$assign`, { owner: people.cardDoc.fhirUser });
    expect(assigned.status, JSON.stringify(assigned.body)).toBe(200);
    expect(assigned.body.owner.reference).toBe(people.cardDoc.fhirUser);
    expect((await op('cardDoc', `Task/${task.id}/$start`)).body.status).toBe('in-progress');
    expect((await op('cardHead', `Task/${task.id}/$complete`)).body.status).toBe('completed');

    const { task: other } = await newConsult('routine');
    const accepted = await op('cardDoc', `Task/${other.id}/$accept`);
    expect(accepted.status).toBe(200);
    expect([accepted.body.status, accepted.body.owner.reference]).toEqual(['accepted', people.cardDoc.fhirUser]);
  });

  it('refuses illegal transitions with 409 and an OperationOutcome naming the allowed ones', async () => {
    const { task } = await newConsult();
    const res = await op('cardDoc', `Task/${task.id}/$complete`);
    expect(res.status).toBe(409);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue[0].code).toBe('business-rule');
    expect(res.body.issue[0].diagnostics).toContain('complete is allowed from accepted, in-progress');
    expect(res.body.issue[0].diagnostics).toContain('allowed from requested: accept, assign, decline, cancel, escalate, reprioritize');
    expect(res.body.issue[0].details.text).toBe('Allowed transitions: accept, assign, decline, cancel, escalate, reprioritize');
    // A referral-only action on a consult, through $transition.
    const send = await op('requester', `Task/${task.id}/$transition`, { action: 'send' });
    expect(send.status).toBe(409);
    expect(send.body.issue[0].diagnostics).toContain('A consult has no "send" action');
    // Nothing changed.
    const still = (await fhir('requester', 'GET', `Task/${task.id}`)).body;
    expect([still.status, still.meta.versionId]).toEqual(['requested', '1']);
  });

  it('refuses wrong-role attempts with 403', async () => {
    const { task, sr } = await newConsult();
    // A nurse of another department may not accept, nor may a clinician outside Cardiology (the requester).
    const nurse = await op('neuroNurse', `Task/${task.id}/$accept`);
    expect(nurse.status).toBe(403);
    expect(nurse.body.resourceType).toBe('OperationOutcome');
    expect((await op('requester', `Task/${task.id}/$accept`)).status).toBe(403);
    // Only the head assigns; the target department may not cancel.
    expect((await op('cardDoc', `Task/${task.id}/$assign`, { owner: people.cardDoc.fhirUser })).status).toBe(403);
    expect((await op('cardDoc', `Task/${task.id}/$cancel`)).status).toBe(403);
    // A nurse and a receptionist may not request consults.
    const nurseRequest = await op('neuroNurse', 'ServiceRequest/$request', { workflow: 'consult', patient: `Patient/${ids.patient}`, department: `Organization/${ids.cardiology}` });
    expect(nurseRequest.status).toBe(403);

    expect((await op('cardDoc', `Task/${task.id}/$accept`)).status).toBe(200);
    // A receptionist may not complete, nor write notes.
    expect((await op('reception', `Task/${task.id}/$complete`)).status).toBe(403);
    expect((await op('reception', `Task/${task.id}/$add-note`, { text: 'hello' })).status).toBe(403);
    expect((await op('neuroNurse', `Task/${task.id}/$complete`)).status).toBe(403);
    // An ambulance crew cannot read the consult, its Task or its notifications' subject request.
    expect((await fhir('crew', 'GET', `Task/${task.id}`)).status).toBe(403);
    expect((await fhir('crew', 'GET', `ServiceRequest/${sr.id}`)).status).toBe(403);
    const crewTasks = await fhir('crew', 'GET', `Task?_id=${task.id}`);
    expect(crewTasks.status).toBe(200);
    expect(crewTasks.body.entry ?? []).toEqual([]);
    expect((await op('crew', `Task/${task.id}/$complete`)).status).toBe(403);
    // None of it changed the Task.
    const after = (await fhir('cardDoc', 'GET', `Task/${task.id}`)).body;
    expect([after.status, after.owner.reference, after.meta.versionId]).toEqual(['accepted', people.cardDoc.fhirUser, '2']);
  });

  it('the requester cancels; the assigned doctor is told', async () => {
    const { task, sr } = await newConsult();
    await op('cardHead', `Task/${task.id}/$assign`, { owner: people.cardDoc.fhirUser });
    const cancelled = await op('requester', `Task/${task.id}/$cancel`, { reason: 'Patient discharged' });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    expect([cancelled.body.status, seedOf(cancelled.body), cancelled.body.statusReason.text]).toEqual(['cancelled', 'CANCELLED', 'Patient discharged']);
    expect((await fhir('requester', 'GET', `ServiceRequest/${sr.id}`)).body.status).toBe('revoked');
    expect((await inbox('cardDoc', task.id)).map(eventOf).sort()).toEqual(['assigned', 'cancelled']);
    const again = await op('cardDoc', `Task/${task.id}/$accept`);
    expect(again.status).toBe(409);
    expect(again.body.issue[0].diagnostics).toContain('cancelled is final');
  });

  it('a pending consult cancelled by the requester is announced to the department', async () => {
    const { task } = await newConsult();
    expect((await op('requester', `Task/${task.id}/$cancel`)).status).toBe(200);
    expect((await inbox('cardHead', task.id)).map(eventOf).sort()).toEqual(['cancelled', 'created']);
  });
});

describe('referral over HTTP with SMART tokens', () => {
  it('sent, received and declined with a reason by the receiving provider; the requester is told', async () => {
    const draft = await newReferral(true);
    expect([draft.status, seedOf(draft)]).toEqual(['draft', 'DRAFT']);
    // Only the requester sends.
    expect((await op('partnerDoc', `Task/${draft.id}/$send`)).status).toBe(403);
    const sent = await op('requester', `Task/${draft.id}/$send`);
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    expect([sent.body.status, seedOf(sent.body)]).toEqual(['requested', 'SENT']);
    // The receiving provider reads it with its own token (shared with them by the referral).
    expect((await fhir('partnerDoc', 'GET', `Task/${draft.id}`)).status).toBe(200);
    expect((await fhir('partnerDoc', 'GET', `Patient/${ids.patient}`)).status).toBe(200);
    // Only the receiving side receives / declines.
    expect((await op('cardDoc', `Task/${draft.id}/$receive`)).status).toBe(403);
    const received = await op('partnerDoc', `Task/${draft.id}/$receive`);
    expect([received.body.status, seedOf(received.body)]).toEqual(['received', 'VIEWED']);
    const noReason = await op('partnerDoc', `Task/${draft.id}/$decline`);
    expect(noReason.status).toBe(400);
    expect(noReason.body.issue[0].diagnostics).toContain('reason');
    const declined = await op('partnerDoc', `Task/${draft.id}/$decline`, { reason: 'No capacity this month' });
    expect(declined.status, JSON.stringify(declined.body)).toBe(200);
    expect(declined.body.status).toBe('rejected');
    expect(declined.body.statusReason.text).toBe('No capacity this month');
    expect(declined.body.businessStatus.coding.map((c: any) => c.code)).toEqual(['DECLINED', '4.0']);
    // Final.
    const late = await op('partnerDoc', `Task/${draft.id}/$accept`);
    expect(late.status).toBe(409);
    expect(late.body.issue[0].details.text).toBe('No transition is allowed');
    // The requester hears of each step by the receiving side.
    const mine = await inbox('requester', draft.id);
    expect(mine.map(eventOf).sort()).toEqual(['declined', 'received']);
    const decl = mine.find((c) => eventOf(c) === 'declined');
    expect(decl.payload[0].contentString).toContain('No capacity this month');
    expect(decl.sender.reference).toBe(people.partnerDoc.fhirUser);
  });

  it('the requester cancels a sent referral; the receiving side cannot', async () => {
    const t = await newReferral(false);
    expect(t.status).toBe('requested');
    expect((await op('partnerDoc', `Task/${t.id}/$cancel`)).status).toBe(403);
    const c = await op('requester', `Task/${t.id}/$cancel`, { reason: 'Patient moved' });
    expect([c.status, c.body.status]).toEqual([200, 'cancelled']);
    expect(c.body.businessStatus.coding.map((x: any) => x.code)).toEqual(['CANCELLED', '6.0']);
  });
});
