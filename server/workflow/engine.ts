// The consult / referral engine: creating a request (ServiceRequest + Task [+ attachments]) in
// one transaction, applying state-machine actions, notes, escalation, and the SLA timers. Every
// change runs in one SQL transaction through the repository: the Task version (whose outbox row
// is the workflow event: Task.extension workflow-last-event names it), its Provenance and the
// in-app notifications (Communication) are written together or not at all. Workflow code never
// writes SQL.
import { createHash, randomUUID } from 'node:crypto';
import type {
  Attachment,
  Binary,
  CodeableConcept,
  Communication,
  DocumentReference,
  Extension,
  Organization,
  Provenance,
  Resource,
  ServiceRequest,
  Task,
} from '@medplum/fhirtypes';
import { assertVisible } from '../fhir/authorize.ts';
import { FhirError, badRequest, forbidden, outcome, preconditionFailed } from '../fhir/outcome.ts';
import { readWith } from '../fhir/read-with.ts';
import type { BatchWrite, Repository } from '../fhir/repository.ts';
import type { FhirContext } from '../fhir/request.ts';
import { findMatches } from '../fhir/search/search.ts';
import type { JobQueue } from '../jobs/queue.ts';
import type { Logger } from '../logger.ts';
import {
  BSER_BUSINESS_STATUS_SYSTEM,
  BSER_CODE,
  DEFAULT_SECOND_TIER_MINUTES,
  DEFAULT_SLA_MINUTES,
  EXT_DEPARTMENT_SLA,
  EXT_ESCALATED_TO,
  EXT_ESCALATION_LEVEL,
  EXT_FIRST_RESPONSE,
  EXT_LAST_EVENT,
  EXT_STATE_SINCE,
  PRIORITIES,
  PROFILE,
  REQUEST_CATEGORY_SYSTEM,
  SEED_DISPLAY,
  TERMINAL,
  WORKFLOW_COMMUNICATION_SYSTEM,
  WORKFLOW_EVENT_SYSTEM,
  WORKFLOW_STATUS_SYSTEM,
  type Action,
  type Priority,
  type TaskStatus,
  type Workflow,
  type WorkflowEvent,
} from './model.ts';
import { transition, type Party } from './state-machine.ts';

// ------------------------------------------------------------------ runtime (clock, timers)

export interface WorkflowRuntime {
  /** The clock (tests inject a controllable one). */
  now: () => Date;
  /** Where SLA timers and reminders go; without it nothing is scheduled (the start sweep catches up). */
  jobs?: JobQueue;
  log?: Logger;
  /** Fallback further delay (minutes) before the second escalation tier when the department sets none. */
  secondTierMinutes?: number;
  /** Fallback administrator for the second tier (Practitioner/...) when the department names none. */
  administrator?: string;
  /** Delay of follow-up / not-acted reminders (default 24 h). */
  reminderMs?: number;
}

let runtime: WorkflowRuntime = { now: () => new Date() };

export function setWorkflowRuntime(r: WorkflowRuntime): void {
  runtime = r;
}

export function workflowRuntime(): WorkflowRuntime {
  return runtime;
}

export const SLA_QUEUE = 'workflow-sla';
export const REMINDER_QUEUE = 'workflow-reminder';
export const slaJobId = (taskId: string): string => `sla-${taskId}`;
export const reminderJobId = (taskId: string): string => `reminder-${taskId}`;

export interface SlaJobData {
  taskId: string;
  /** When the timer was meant to fire (ISO): informative; the handler re-reads the Task. */
  fireAt: string;
}

export interface ReminderJobData {
  taskId: string;
  kind: 'follow-up' | 'not-acted';
}

export type ReminderKind = ReminderJobData['kind'];

// ------------------------------------------------------------------ small helpers

const refOf = (r: Resource): string => `${r.resourceType}/${r.id}`;
const codeIn = (cc: CodeableConcept | undefined, system: string): string | undefined => cc?.coding?.find((c) => c.system === system)?.code;

function stripBase(reference: string | undefined, fhirBase: string): string | undefined {
  if (!reference) return undefined;
  return reference.startsWith(fhirBase + '/') ? reference.slice(fhirBase.length + 1) : reference;
}

export function workflowOf(task: Task): Workflow | undefined {
  const code = codeIn(task.code, REQUEST_CATEGORY_SYSTEM);
  return code === 'consult' || code === 'referral' ? code : undefined;
}

export function seedOf(task: Task): string {
  return codeIn(task.businessStatus, WORKFLOW_STATUS_SYSTEM) ?? '';
}

export function businessStatus(workflow: Workflow, seed: string): CodeableConcept {
  const coding = [{ system: WORKFLOW_STATUS_SYSTEM, code: seed, display: SEED_DISPLAY[seed] ?? seed }];
  const bser = workflow === 'referral' ? BSER_CODE[seed] : undefined;
  if (bser) coding.push({ system: BSER_BUSINESS_STATUS_SYSTEM, code: bser[0], display: bser[1] });
  return { coding, text: SEED_DISPLAY[seed] ?? seed };
}

function setExt(resource: { extension?: Extension[] }, ext: Extension): void {
  resource.extension = [...(resource.extension ?? []).filter((e) => e.url !== ext.url), ext];
}

export function escalationLevel(task: Task): number {
  return task.extension?.find((e) => e.url === EXT_ESCALATION_LEVEL)?.valueInteger ?? 0;
}

export function dueOf(task: Task): Date | undefined {
  const end = task.restriction?.period?.end;
  return end ? new Date(end) : undefined;
}

function isPriority(p: unknown): p is Priority {
  return typeof p === 'string' && (PRIORITIES as readonly string[]).includes(p);
}

// ------------------------------------------------------------------ departments and SLAs

export interface DepartmentSla {
  minutes: Record<Priority, number>;
  secondTierMinutes: number;
  head?: string;
  administrator?: string;
}

/** The SLA settings of a department (Organization extension department-sla), defaults filled in. */
export function departmentSla(org: Organization | undefined): DepartmentSla {
  const ext = org?.extension?.find((e) => e.url === EXT_DEPARTMENT_SLA);
  const part = (url: string) => ext?.extension?.find((e) => e.url === url);
  const minutes = { ...DEFAULT_SLA_MINUTES };
  for (const p of PRIORITIES) {
    const v = part(p);
    const n = v?.valueDecimal ?? v?.valueInteger;
    if (typeof n === 'number' && n >= 0) minutes[p] = n;
  }
  const tier = part('second-tier-delay');
  return {
    minutes,
    secondTierMinutes: tier?.valueDecimal ?? tier?.valueInteger ?? runtime.secondTierMinutes ?? DEFAULT_SECOND_TIER_MINUTES,
    head: part('head')?.valueReference?.reference,
    administrator: part('administrator')?.valueReference?.reference ?? runtime.administrator,
  };
}

/** The due time of a request authored at `from` with `priority` for a department. */
export function computeDue(from: Date, priority: Priority, sla: DepartmentSla): Date {
  return new Date(from.getTime() + Math.round(sla.minutes[priority] * 60_000));
}

async function readDepartment(repo: Repository, reference: string | undefined): Promise<Organization | undefined> {
  if (!reference?.startsWith('Organization/')) return undefined;
  return repo.readResource<Organization>('Organization', reference.slice('Organization/'.length)).catch(() => undefined);
}

/** The department a Task targets: restriction.recipient (kept when owner becomes a person). */
export function departmentOf(task: Task): string | undefined {
  return task.restriction?.recipient?.find((r) => r.reference?.startsWith('Organization/'))?.reference;
}

// ------------------------------------------------------------------ parties (who the caller is)

/**
 * The parties the caller is to a Task. `enough`: the parties that would do; once the caller is
 * one of them without asking the database, department membership (a PractitionerRole search)
 * is not looked up.
 */
async function partiesOf(ctx: FhirContext, task: Task, dept: Organization | undefined, enough?: readonly Party[]): Promise<Set<Party> | 'system'> {
  const access = ctx.access;
  if (!access) return 'system';
  const parties = new Set<Party>();
  const { role, fhirUser, organization } = access.auth;
  if (role === 'admin') parties.add('admin');
  const requester = stripBase(task.requester?.reference, ctx.fhirBase);
  if (fhirUser && requester === fhirUser) parties.add('requester');
  if (fhirUser && stripBase(task.owner?.reference, ctx.fhirBase) === fhirUser) parties.add('owner');
  if (enough && [...parties].some((p) => enough.includes(p))) return parties;
  const deptRef = departmentOf(task);
  if (deptRef && (role === 'clinician' || role === 'department-head')) {
    let member = organization === deptRef;
    if (!member && fhirUser) {
      const roles = await findMatches(ctx.repo.db, 'PractitionerRole', [['practitioner', fhirUser], ['organization', deptRef], ['active', 'true']], 1);
      member = roles.length > 0;
    }
    const sla = departmentSla(dept);
    if (member) parties.add('department');
    if ((member && role === 'department-head') || (fhirUser && sla.head === fhirUser)) parties.add('head');
  }
  return parties;
}

const PARTY_TEXT: Record<Party, string> = {
  requester: 'the requester',
  department: "the target department's clinicians",
  owner: 'the current owner',
  head: 'the head of the target department',
  admin: 'an administrator',
};

// ------------------------------------------------------------------ records written with a change

function provenance(ctx: FhirContext, targets: string[], event: WorkflowEvent, now: Date, reason?: string): Provenance {
  const who: NonNullable<Provenance['agent'][number]['who']> = ctx.access?.auth.fhirUser ? { reference: ctx.access.auth.fhirUser } : { display: 'Wardlink workflow timer' };
  return {
    resourceType: 'Provenance',
    target: targets.map((reference) => ({ reference })),
    recorded: now.toISOString(),
    activity: { coding: [{ system: WORKFLOW_EVENT_SYSTEM, code: event }] },
    ...(reason ? { reason: [{ text: reason }] } : {}),
    agent: [
      {
        type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: ctx.access ? 'author' : 'performer' }] },
        who,
      },
    ],
  };
}

/** An in-app notification: unread while in-progress, the UI marks it read (status completed, received set). */
function notification(task: Task, sr: ServiceRequest | undefined, event: WorkflowEvent, recipients: string[], text: string, now: Date, sender?: string): Communication {
  return {
    resourceType: 'Communication',
    status: 'in-progress',
    category: [
      { coding: [{ system: WORKFLOW_COMMUNICATION_SYSTEM, code: 'notification' }] },
      { coding: [{ system: WORKFLOW_EVENT_SYSTEM, code: event }] },
    ],
    subject: task.for as Communication['subject'],
    about: [{ reference: refOf(task) }],
    ...(sr?.id ? { basedOn: [{ reference: refOf(sr) }] } : {}),
    recipient: recipients.map((reference) => ({ reference })),
    ...(sender ? { sender: { reference: sender } } : {}),
    sent: now.toISOString(),
    payload: [{ contentString: text }],
  };
}

function uniq(list: (string | undefined)[], except?: string): string[] {
  return [...new Set(list.filter((x): x is string => !!x && x !== except))];
}

function label(task: Task): string {
  return `${workflowOf(task) ?? 'request'} ${task.id}${task.description ? ` (${task.description})` : ''}`;
}

/** Who hears about an event. */
function recipientsFor(event: WorkflowEvent, task: Task, sla: DepartmentSla, actor: string | undefined, extra: string[] = []): string[] {
  const requester = task.requester?.reference;
  const owner = task.owner?.reference;
  const dept = departmentOf(task);
  switch (event) {
    case 'created':
    case 'sent':
      return uniq([dept, sla.head], actor);
    case 'assigned':
      return uniq([owner, requester], actor);
    case 'note-added':
      return uniq([requester, owner === dept ? sla.head : owner], actor);
    case 'escalated':
      return uniq([...extra, requester, owner], actor);
    case 'reprioritized':
      return uniq([owner, sla.head], actor);
    case 'cancelled':
      return uniq([requester, owner !== dept ? owner : undefined, ...extra], actor);
    default:
      return uniq([requester, owner !== dept ? owner : undefined], actor);
  }
}

// ------------------------------------------------------------------ creating a request

export interface NewRequest {
  workflow: Workflow;
  /** Patient/... */
  patient: string;
  /** The target department or provider: Organization/... */
  performer: string;
  priority: Priority;
  /** Optional base ServiceRequest (code, reasonCode, note...). */
  serviceRequest?: ServiceRequest;
  reason?: string;
  note?: string;
  attachments?: Attachment[];
  /** Referrals only: keep it a draft (not yet sent). */
  draft?: boolean;
  /** Requester when the caller is the server itself (seed). */
  requester?: string;
  /** Authored time (seed backdates); default now(). */
  authoredOn?: Date;
}

export interface CreatedRequest {
  serviceRequest: ServiceRequest;
  task: Task;
  documents: DocumentReference[];
}

const REQUEST_ROLES = new Set(['clinician', 'department-head', 'admin']);

export async function createRequest(ctx: FhirContext, input: NewRequest): Promise<CreatedRequest> {
  const now = input.authoredOn ?? runtime.now();
  const access = ctx.access;
  if (access) {
    access.check('ServiceRequest', 'c');
    access.check('Task', 'c');
    if (!access.auth.role || !REQUEST_ROLES.has(access.auth.role)) {
      throw forbidden(`Only clinicians, heads of department and administrators may request a ${input.workflow} (role: ${access.auth.role ?? 'none'})`);
    }
  }
  const requester = access?.auth.fhirUser ?? input.requester;
  if (!requester) throw badRequest('A request needs a requester (the caller has no fhirUser)');
  if (!input.patient.startsWith('Patient/')) throw badRequest('patient must reference a Patient', ['patient']);
  if (!input.performer.startsWith('Organization/')) throw badRequest('department must reference an Organization (the department or provider)', ['department']);

  const created = await ctx.repo.transaction(async (repo) => {
    const tctx: FhirContext = { ...ctx, repo };
    const patient = await repo.readResource('Patient', input.patient.slice(8));
    if (access) await assertVisible({ ...tctx, restriction: access.check('Patient', 'r') }, patient);
    const dept = await readDepartment(repo, input.performer);
    if (!dept) throw badRequest(`${input.performer} is not a known Organization`, ['department']);
    const sla = departmentSla(dept);
    const due = computeDue(now, input.priority, sla);
    const category = { coding: [{ system: REQUEST_CATEGORY_SYSTEM, code: input.workflow }] };
    const documents: DocumentReference[] = [];
    for (const a of input.attachments ?? []) {
      let attachment: Attachment = { ...a };
      if (a.data) {
        const bytes = Buffer.from(a.data, 'base64');
        if (bytes.length > ctx.maxBinaryBytes) throw badRequest(`An attachment is larger than ${ctx.maxBinaryBytes} bytes`);
        const binary = await repo.create<Binary>({ resourceType: 'Binary', contentType: a.contentType ?? 'application/octet-stream' }, { data: bytes });
        const { data: _data, ...rest } = a;
        attachment = { ...rest, url: refOf(binary), size: bytes.length };
      }
      documents.push(
        await repo.create<DocumentReference>({
          resourceType: 'DocumentReference',
          status: 'current',
          subject: { reference: input.patient },
          date: now.toISOString(),
          author: [{ reference: requester }],
          content: [{ attachment }],
        }),
      );
    }
    const base = input.serviceRequest ?? ({ resourceType: 'ServiceRequest' } as ServiceRequest);
    const draft = input.workflow === 'referral' && input.draft === true;
    // The request's resources go to the database in one statement (writeBatch) at the end.
    const sr: ServiceRequest = {
      ...base,
      resourceType: 'ServiceRequest',
      id: randomUUID(),
      meta: { profile: [input.workflow === 'consult' ? PROFILE.consultServiceRequest : PROFILE.referralServiceRequest] },
      status: draft ? 'draft' : 'active',
      intent: 'order',
      category: [category],
      priority: input.priority,
      subject: { reference: input.patient },
      authoredOn: now.toISOString(),
      requester: { reference: requester },
      performer: [{ reference: input.performer, display: dept.name }],
      ...(input.reason ? { reasonCode: [...(base.reasonCode ?? []), { text: input.reason }] } : {}),
      ...(input.note ? { note: [...(base.note ?? []), { text: input.note, time: now.toISOString() }] } : {}),
      ...(documents.length ? { supportingInfo: [...(base.supportingInfo ?? []), ...documents.map((d) => ({ reference: refOf(d) }))] } : {}),
    };
    const seed = input.workflow === 'consult' ? 'PENDING' : draft ? 'DRAFT' : 'SENT';
    const status: TaskStatus = input.workflow === 'consult' ? 'requested' : draft ? 'draft' : 'requested';
    const event: WorkflowEvent = draft ? 'created' : input.workflow === 'referral' ? 'sent' : 'created';
    const taskId = randomUUID();
    const provId = randomUUID();
    const task: Task = {
      resourceType: 'Task',
      id: taskId,
      meta: { profile: [input.workflow === 'consult' ? PROFILE.consultTask : PROFILE.referralTask] },
      extension: [{ url: EXT_LAST_EVENT, valueCode: event }],
      status,
      businessStatus: businessStatus(input.workflow, seed),
      intent: 'order',
      priority: input.priority,
      code: { coding: [{ system: REQUEST_CATEGORY_SYSTEM, code: input.workflow }, { system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }] },
      description: input.reason ?? base.code?.text,
      focus: { reference: refOf(sr) },
      for: { reference: input.patient },
      authoredOn: now.toISOString(),
      lastModified: now.toISOString(),
      requester: { reference: requester },
      owner: { reference: input.performer, display: dept.name },
      restriction: { period: { start: now.toISOString(), end: due.toISOString() }, recipient: [{ reference: input.performer, display: dept.name }] },
      relevantHistory: [{ reference: `Provenance/${provId}` }],
    };
    const items: BatchWrite[] = [
      { resource: sr, kind: 'insert' },
      { resource: task, kind: 'insert' },
      { resource: { ...provenance(tctx, [`Task/${taskId}/_history/1`, `ServiceRequest/${sr.id}/_history/1`], event, now), id: provId }, kind: 'insert' },
    ];
    const to = recipientsFor(event, task, sla, requester);
    if (to.length && !draft) {
      const text = `New ${input.priority} ${input.workflow} for ${dept.name ?? input.performer}: due ${due.toISOString()}`;
      items.push({ resource: { ...notification(task, sr, event, to, text, now, requester), id: randomUUID() }, kind: 'insert' });
    }
    const written = await repo.writeBatch(items);
    return { serviceRequest: written[0].resource as ServiceRequest, task: written[1].resource as Task, documents, sla };
  });
  await scheduleTimers(created.task, { sla: created.sla });
  return { serviceRequest: created.serviceRequest, task: created.task, documents: created.documents };
}

// ------------------------------------------------------------------ actions

export interface ActionInput {
  /** decline: why (Task.statusReason); other actions: recorded in Provenance.reason. */
  reason?: string;
  /** assign: the new owner (Practitioner/... or PractitionerRole/...). */
  owner?: string;
  /** reprioritize: the new priority. */
  priority?: Priority;
}

/**
 * Runs a workflow change in one transaction, again (from a fresh read) when a concurrent writer
 * changed the Task between our read and our conditional update (412 from the If-Match): two
 * changes to one Task serialise instead of failing the later one. The state machine is checked
 * again on the new state, so an action the other change made illegal still answers 409.
 */
async function inTransaction<T>(repo: Repository, fn: (repo: Repository) => Promise<T>, attempts = 4): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await repo.transaction(fn);
    } catch (e) {
      if (!(e instanceof FhirError) || e.status !== 412 || i >= attempts) throw e;
    }
  }
}

function conflictWithAllowed(message: string, allowed: string[]): FhirError {
  const oo = outcome('error', 'business-rule', message);
  oo.issue[0].details = { text: allowed.length ? `Allowed transitions: ${allowed.join(', ')}` : 'No transition is allowed' };
  return new FhirError(409, oo);
}

interface LoadedTask {
  task: Task;
  version: number;
  /** The target department (restriction.recipient), read in the same statement. */
  dept: Organization | undefined;
  /** The ServiceRequest (focus), read in the same statement. */
  sr: ServiceRequest | undefined;
}

/**
 * A Task with its department and ServiceRequest: one round trip (server/fhir/read-with.ts).
 * forWrite locks the Task and its ServiceRequest rows until the transaction ends, so the change
 * written from this read cannot lose a concurrent one (the department row is not locked: every
 * change of the department's requests would queue on it).
 */
async function readTask(repo: Repository, taskId: string, forWrite = false): Promise<LoadedTask> {
  const r = await readWith<Task>(
    repo.db,
    'Task',
    taskId,
    [
      { path: 'restriction.recipient', type: 'Organization' },
      { path: 'focus', type: 'ServiceRequest', lock: forWrite },
    ],
    { lock: forWrite },
  );
  return { task: r.resource, version: r.stored.version, dept: r.referenced[0] as Organization | undefined, sr: r.referenced[1] as ServiceRequest | undefined };
}

/** Loads and checks a workflow Task the caller may see. */
async function loadTask(ctx: FhirContext, repo: Repository, taskId: string): Promise<LoadedTask & { workflow: Workflow }> {
  const loaded = await readTask(repo, taskId, true);
  const { task } = loaded;
  if (ctx.access) await assertVisible({ ...ctx, repo, restriction: ctx.restriction ?? ctx.access.check('Task', 'r') }, task);
  const workflow = workflowOf(task);
  if (!workflow) throw badRequest(`Task/${taskId} is not a consult or referral (Task.code has no ${REQUEST_CATEGORY_SYSTEM} consult|referral)`);
  return { ...loaded, workflow };
}

/** Applies an action through the workflow's state machine; returns the updated Task. */
export async function applyAction(ctx: FhirContext, taskId: string, action: Action, input: ActionInput = {}): Promise<Task> {
  if (ctx.access) ctx.access.check('Task', 'u');
  const now = runtime.now();
  let slaUsed: DepartmentSla | undefined;
  const result = await inTransaction(ctx.repo, async (repo) => {
    const tctx: FhirContext = { ...ctx, repo };
    const { task, version, workflow, dept, sr } = await loadTask(ctx, repo, taskId);
    const seed = seedOf(task);
    const t = transition(workflow, task.status as TaskStatus, seed, action);
    if (!t.ok) throw conflictWithAllowed(t.message, t.allowed);
    const { rule } = t.transition;
    const sla = departmentSla(dept);
    slaUsed = sla;
    const parties = await partiesOf(tctx, task, dept, rule.parties);
    if (parties !== 'system' && !rule.parties.some((p) => parties.has(p))) {
      throw forbidden(`Only ${rule.parties.map((p) => PARTY_TEXT[p]).join(' or ')} may ${action} this ${workflow}`);
    }
    if (rule.needsReason && !input.reason?.trim()) throw badRequest(`${action} needs a reason (Task.statusReason)`, ['reason']);
    const next: Task = structuredClone(task);
    next.status = t.transition.status;
    next.businessStatus = businessStatus(workflow, t.transition.seed);
    next.lastModified = now.toISOString();
    const actor = ctx.access?.auth.fhirUser;
    let srChange: ServiceRequest | undefined;
    const extraRecipients: string[] = [];
    switch (action) {
      case 'decline':
        next.statusReason = { text: input.reason };
        break;
      case 'accept':
        // A consult is claimed by the clinician who accepts it (pattern F).
        if (workflow === 'consult' && actor) next.owner = { reference: actor };
        break;
      case 'assign': {
        const owner = input.owner?.trim();
        if (!owner || !/^(Practitioner|PractitionerRole)\/[A-Za-z0-9\-.]+$/.test(owner)) {
          throw badRequest('assign needs an owner: a Practitioner or PractitionerRole reference', ['owner']);
        }
        await repo.read(owner.split('/')[0], owner.split('/')[1]);
        next.owner = { reference: owner };
        break;
      }
      case 'start':
        next.executionPeriod = { ...next.executionPeriod, start: next.executionPeriod?.start ?? now.toISOString() };
        break;
      case 'complete':
        next.executionPeriod = { start: next.executionPeriod?.start ?? now.toISOString(), end: now.toISOString() };
        if (sr) srChange = { ...sr, status: 'completed' };
        break;
      case 'cancel':
        if (input.reason) next.statusReason = { text: input.reason };
        // Nobody has claimed it yet: the department (and its head) that was told of it hears it is withdrawn.
        if (task.status !== 'draft' && stripBase(task.owner?.reference, ctx.fhirBase) === departmentOf(task)) extraRecipients.push(...uniq([departmentOf(task), sla.head]));
        if (sr) srChange = { ...sr, status: 'revoked' };
        break;
      case 'send':
        if (sr) srChange = { ...sr, status: 'active' };
        break;
      case 'escalate':
        extraRecipients.push(...escalateInto(next, sla, Math.min(escalationLevel(task) + 1, 2)));
        break;
      case 'reprioritize': {
        if (!isPriority(input.priority)) throw badRequest(`reprioritize needs a priority: ${PRIORITIES.join(' | ')}`, ['priority']);
        next.priority = input.priority;
        const from = task.authoredOn ? new Date(task.authoredOn) : now;
        next.restriction = { ...next.restriction, period: { ...next.restriction?.period, end: computeDue(from, input.priority, sla).toISOString() } };
        if (sr) srChange = { ...sr, priority: input.priority };
        break;
      }
    }
    return (await commit(tctx, repo, { task, next, version, sr, srChange, event: t.transition.event, sla, reason: input.reason, extraRecipients, now })).task;
  });
  await scheduleTimers(result, { justChanged: true, sla: slaUsed });
  return result;
}

/** Marks a Task escalated to the given tier: head (1) / administrator (2) added as participants. */
function escalateInto(next: Task, sla: DepartmentSla, level: number): string[] {
  const target = level >= 2 ? (sla.administrator ?? sla.head) : (sla.head ?? sla.administrator);
  setExt(next, { url: EXT_ESCALATION_LEVEL, valueInteger: level });
  if (target) {
    const existing = (next.extension ?? []).filter((e) => e.url === EXT_ESCALATED_TO).map((e) => e.valueReference?.reference);
    if (!existing.includes(target)) next.extension = [...(next.extension ?? []), { url: EXT_ESCALATED_TO, valueReference: { reference: target } }];
    // Nobody has it yet: the escalation target becomes the owner.
    if (!next.owner?.reference || next.owner.reference === departmentOf(next)) next.owner = { reference: target };
  }
  return target ? [target] : [];
}

interface Change {
  task: Task;
  next: Task;
  version: number;
  sr?: ServiceRequest;
  srChange?: ServiceRequest;
  event: WorkflowEvent;
  sla: DepartmentSla;
  reason?: string;
  extraRecipients?: string[];
  now: Date;
  /** Communications written with the change besides notifications (a note). */
  also?: Communication[];
  notificationText?: string;
}

/**
 * Writes one workflow change in ONE statement (Repository.writeBatch): the Task's next version (its
 * outbox row is the workflow event), the ServiceRequest change, Provenance, notes and the
 * notification. The Task and ServiceRequest rows were locked when read (readTask forWrite), so
 * the versions written are the read ones + 1, which Provenance.target names up front.
 */
async function commit(ctx: FhirContext, repo: Repository, c: Change): Promise<{ task: Task; also: Communication[] }> {
  const { next, now } = c;
  const provId = randomUUID();
  setExt(next, { url: EXT_LAST_EVENT, valueCode: c.event });
  if (c.event !== 'escalated' && (next.status !== c.task.status || seedOf(next) !== seedOf(c.task))) {
    setExt(next, { url: EXT_STATE_SINCE, valueDateTime: now.toISOString() });
  }
  next.relevantHistory = [...(next.relevantHistory ?? []), { reference: `Provenance/${provId}` }];
  const items: BatchWrite[] = [{ resource: next, kind: 'upsert' }];
  const targets = [`Task/${next.id}/_history/${c.version + 1}`];
  if (c.srChange) {
    items.push({ resource: c.srChange, kind: 'upsert' });
    targets.push(`ServiceRequest/${c.srChange.id}/_history/${Number(c.sr?.meta?.versionId ?? 0) + 1}`);
  }
  const also = (c.also ?? []).map((extra) => ({ ...extra, id: randomUUID() }));
  const alsoAt = items.length;
  for (const extra of also) {
    items.push({ resource: extra, kind: 'insert' });
    targets.push(refOf(extra));
  }
  items.push({ resource: { ...provenance(ctx, targets, c.event, now, c.reason), id: provId }, kind: 'insert' });
  const actor = ctx.access?.auth.fhirUser;
  const to = recipientsFor(c.event, next, c.sla, actor, c.extraRecipients);
  if (to.length) {
    const text = c.notificationText ?? `${label(next)}: ${c.event.replace('-', ' ')}${c.reason ? ` (${c.reason})` : ''}`;
    items.push({ resource: { ...notification(next, c.sr, c.event, to, text, now, actor), id: randomUUID() }, kind: 'insert' });
  }
  const written = await repo.writeBatch(items);
  const stored = written[0].resource as Task;
  if (stored.meta?.versionId !== String(c.version + 1)) {
    // Only if the row was not locked by the read: the retry (inTransaction) starts again from a fresh read.
    throw preconditionFailed(`Task/${next.id} changed while this change was being made`);
  }
  return { task: stored, also: written.slice(alsoAt, alsoAt + also.length).map((w) => w.resource as Communication) };
}

// ------------------------------------------------------------------ notes

export async function addNote(ctx: FhirContext, taskId: string, text: string): Promise<{ task: Task; note: Communication }> {
  if (!text?.trim()) throw badRequest('A note needs text', ['text']);
  if (ctx.access) {
    ctx.access.check('Communication', 'c');
  }
  const now = runtime.now();
  const result = await inTransaction(ctx.repo, async (repo) => {
    const tctx: FhirContext = { ...ctx, repo };
    const { task, version, workflow, dept, sr } = await loadTask(ctx, repo, taskId);
    if (TERMINAL.has(task.status as TaskStatus) || task.status === 'draft') {
      throw conflictWithAllowed(`Cannot add a note to a ${workflow} in status ${task.status}`, []);
    }
    const sla = departmentSla(dept);
    const parties = await partiesOf(tctx, task, dept, ['requester', 'owner', 'admin', 'department', 'head']);
    if (parties !== 'system' && parties.size === 0) {
      throw forbidden(`Only the requester, the owner, the target department or an administrator may add a note to this ${workflow}`);
    }
    const actor = ctx.access?.auth.fhirUser;
    const next: Task = structuredClone(task);
    next.lastModified = now.toISOString();
    const isResponse = actor !== undefined && stripBase(task.requester?.reference, ctx.fhirBase) !== actor;
    if (isResponse && !task.extension?.some((e) => e.url === EXT_FIRST_RESPONSE)) {
      setExt(next, { url: EXT_FIRST_RESPONSE, valueDateTime: now.toISOString() });
      next.executionPeriod = { ...next.executionPeriod, start: next.executionPeriod?.start ?? now.toISOString() };
      if (task.status === 'accepted') {
        next.status = 'in-progress';
        next.businessStatus = businessStatus(workflow, 'IN_PROGRESS');
      }
    }
    const note: Communication = {
      resourceType: 'Communication',
      status: 'completed',
      category: [{ coding: [{ system: WORKFLOW_COMMUNICATION_SYSTEM, code: 'note' }] }],
      subject: task.for as Communication['subject'],
      about: [{ reference: refOf(task) }],
      ...(sr?.id ? { basedOn: [{ reference: refOf(sr) }] } : {}),
      ...(actor ? { sender: { reference: actor } } : {}),
      sent: now.toISOString(),
      payload: [{ contentString: text }],
    };
    const written = await commit(tctx, repo, { task, next, version, sr, event: 'note-added', sla, now, also: [note], notificationText: `${label(task)}: new note` });
    return { task: written.task, note: written.also[0] };
  });
  return result;
}

// ------------------------------------------------------------------ SLA timers

/** When the SLA timer of a Task should fire next (undefined: none). */
export function nextFireAt(task: Task, sla?: DepartmentSla): Date | undefined {
  if (TERMINAL.has(task.status as TaskStatus) || task.status === 'draft') return undefined;
  // A consult in follow-up has been answered and runs over days: its daily reminder replaces
  // the SLA deadline (escalating it would also overwrite FOLLOW_UP with ESCALATED).
  if (seedOf(task) === 'FOLLOW_UP') return undefined;
  const due = dueOf(task);
  if (!due) return undefined;
  const level = escalationLevel(task);
  if (level === 0) return due;
  if (level === 1) return new Date(due.getTime() + Math.round((sla?.secondTierMinutes ?? runtime.secondTierMinutes ?? DEFAULT_SECOND_TIER_MINUTES) * 60_000));
  return undefined;
}

/**
 * Task versions whose timers this process has just scheduled itself. The outbox listener
 * (index.ts), there for Task updates made outside the operations, skips these: otherwise every
 * workflow write would be read back and re-scheduled a second time (two reads, three Redis calls).
 */
const scheduledHere = new Map<string, number>();
const SCHEDULED_MEMO = 20_000;

export function scheduledVersion(taskId: string): number | undefined {
  return scheduledHere.get(taskId);
}

function rememberScheduled(task: Task): void {
  const version = Number(task.meta?.versionId);
  if (!task.id || !Number.isFinite(version)) return;
  scheduledHere.delete(task.id);
  scheduledHere.set(task.id, version);
  if (scheduledHere.size > SCHEDULED_MEMO) scheduledHere.delete(scheduledHere.keys().next().value as string);
}

/** (Re)schedules a Task's SLA timer and reminders (replacing older ones); removes them when done. */
export async function scheduleTimers(task: Task, options: { justChanged?: boolean; sla?: DepartmentSla } = {}): Promise<void> {
  const jobs = runtime.jobs;
  if (!jobs || !task.id) return;
  try {
    const fireAt = nextFireAt(task, options.sla);
    if (fireAt) {
      const data: SlaJobData = { taskId: task.id, fireAt: fireAt.toISOString() };
      await jobs.add(SLA_QUEUE, data, { jobId: slaJobId(task.id), delayMs: Math.max(0, fireAt.getTime() - runtime.now().getTime()) });
    } else {
      await jobs.remove(SLA_QUEUE, slaJobId(task.id));
    }
    const kind = reminderKind(task);
    const at = kind ? reminderAt(task, runtime.now()) : undefined;
    if (kind && at) {
      const data: ReminderJobData = { taskId: task.id, kind };
      await jobs.add(REMINDER_QUEUE, data, { jobId: reminderJobId(task.id), delayMs: Math.max(0, at.getTime() - runtime.now().getTime()) });
    } else if (options.justChanged) {
      await jobs.remove(REMINDER_QUEUE, reminderJobId(task.id));
    }
    rememberScheduled(task);
  } catch (e) {
    // The start sweep re-creates a timer that could not be stored now.
    runtime.log?.error({ err: e, task: task.id }, 'could not schedule workflow timer');
  }
}

export type EscalationResult = 'escalated-1' | 'escalated-2' | 'not-due' | 'closed' | 'already' | 'gone';

/**
 * The SLA timer: re-reads the Task and escalates only if it is still open and overdue for the
 * next tier. Safe to run any number of times (the tier is recorded on the Task; the update is
 * conditional on the version read).
 */
export async function escalateIfOverdue(ctx: FhirContext, taskId: string): Promise<EscalationResult> {
  const now = runtime.now();
  let reschedule: Task | undefined;
  let sla: DepartmentSla | undefined;
  const result = await inTransaction(ctx.repo, async (repo): Promise<EscalationResult> => {
    reschedule = undefined;
    const loaded = await readTask(repo, taskId, true).catch((e) => {
      if (e instanceof FhirError && (e.status === 404 || e.status === 410)) return undefined;
      throw e;
    });
    if (!loaded) return 'gone';
    const { task, sr } = loaded;
    const workflow = workflowOf(task);
    if (!workflow || TERMINAL.has(task.status as TaskStatus) || task.status === 'draft') return 'closed';
    sla = departmentSla(loaded.dept);
    const fireAt = nextFireAt(task, sla);
    if (!fireAt) return 'already';
    if (fireAt.getTime() > now.getTime()) {
      reschedule = task;
      return 'not-due';
    }
    const level = escalationLevel(task) + 1;
    const next: Task = structuredClone(task);
    next.businessStatus = businessStatus(workflow, 'ESCALATED');
    next.lastModified = now.toISOString();
    const extra = escalateInto(next, sla, level);
    const tctx: FhirContext = { ...ctx, repo, access: undefined };
    const due = dueOf(task) as Date;
    const { task: written } = await commit(tctx, repo, {
      task,
      next,
      version: loaded.version,
      sr,
      event: 'escalated',
      sla,
      now,
      extraRecipients: extra,
      reason: level === 1 ? `Overdue: due ${due.toISOString()}` : `Still open ${sla.secondTierMinutes} min after escalation`,
      notificationText: `${label(task)} is overdue (due ${due.toISOString()}): escalated${level >= 2 ? ' to administration' : ' to the head of department'}`,
    });
    reschedule = written;
    return level >= 2 ? 'escalated-2' : 'escalated-1';
  });
  if (reschedule) await scheduleTimers(reschedule, { sla });
  return result;
}

// ------------------------------------------------------------------ reminders

/**
 * What a Task is reminded about: a consult in FOLLOW_UP (its owner, daily), a referral nobody
 * has acted on yet, still requested / received (the receiving department and its head, daily).
 */
export function reminderKind(task: Task): ReminderKind | undefined {
  if (TERMINAL.has(task.status as TaskStatus) || task.status === 'draft') return undefined;
  if (workflowOf(task) === 'consult' && seedOf(task) === 'FOLLOW_UP') return 'follow-up';
  if (workflowOf(task) === 'referral' && (task.status === 'requested' || task.status === 'received')) return 'not-acted';
  return undefined;
}

const reminderPeriod = (): number => runtime.reminderMs ?? 24 * 3600_000;

/**
 * Reminders fall every period after the Task entered its current state (workflow-state-since:
 * set by a person's action that changes status / businessStatus, such as entering FOLLOW_UP or
 * being received; not by the SLA timer's escalation), else after it was authored. The slot is derived from the Task and the clock alone, so a restart, the
 * sweep or another process computes the same one, and the reminder sent for a slot has an id
 * derived from it: a second run for the same slot (a duplicate delivery, two processes) cannot
 * write a second one.
 */
function reminderSlot(task: Task, now: Date): { due?: Date; next: Date } {
  const period = reminderPeriod();
  const since = task.extension?.find((e) => e.url === EXT_STATE_SINCE)?.valueDateTime;
  const base = new Date(since ?? task.authoredOn ?? task.lastModified ?? now.toISOString()).getTime();
  const k = Math.floor((now.getTime() - base) / period);
  if (k < 1) return { next: new Date(base + period) };
  return { due: new Date(base + k * period), next: new Date(base + (k + 1) * period) };
}

/** When the reminder job should run: now for a slot already due (it may not have been sent), else the next slot. */
export function reminderAt(task: Task, now: Date): Date | undefined {
  if (!reminderKind(task)) return undefined;
  const slot = reminderSlot(task, now);
  return slot.due ?? slot.next;
}

function reminderId(taskId: string, kind: ReminderKind, slot: Date): string {
  const h = createHash('sha256').update(`${taskId}|${kind}|${slot.toISOString()}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

const isUniqueViolation = (e: unknown): boolean => (e as { code?: string } | undefined)?.code === '23505';

export type ReminderResult = 'sent' | 'already-sent' | 'not-due' | 'stopped';

/**
 * The reminder job: re-reads the Task; stops (no further job) once it is no longer in a reminded
 * state; sends the notification of the current slot unless it was sent already; schedules the
 * next slot.
 */
export async function remind(ctx: FhirContext, data: ReminderJobData): Promise<ReminderResult> {
  const now = runtime.now();
  let nextAt: Date | undefined;
  let result: ReminderResult;
  try {
    result = await ctx.repo.transaction(async (repo): Promise<ReminderResult> => {
      const loaded = await readTask(repo, data.taskId).catch((e) => {
        if (e instanceof FhirError && (e.status === 404 || e.status === 410)) return undefined;
        throw e;
      });
      if (!loaded || reminderKind(loaded.task) !== data.kind) return 'stopped';
      const { task, sr } = loaded;
      const slot = reminderSlot(task, now);
      nextAt = slot.next;
      if (!slot.due) return 'not-due';
      const sla = departmentSla(loaded.dept);
      const to = data.kind === 'follow-up' ? uniq([task.owner?.reference]) : uniq([departmentOf(task), sla.head]);
      if (!to.length) return 'not-due';
      const text = data.kind === 'follow-up' ? `${label(task)}: follow-up due` : `${label(task)} has not been acted on`;
      const reminder = notification(task, sr, data.kind === 'follow-up' ? 'follow-up' : 'sent', to, text, now);
      reminder.category = [...(reminder.category ?? []), { coding: [{ system: WORKFLOW_COMMUNICATION_SYSTEM, code: 'reminder' }] }];
      await repo.create(reminder, undefined, reminderId(task.id as string, data.kind, slot.due));
      return 'sent';
    });
  } catch (e) {
    if (!isUniqueViolation(e)) throw e;
    result = 'already-sent';
  }
  if (nextAt && result !== 'stopped' && runtime.jobs) {
    await runtime.jobs.add(REMINDER_QUEUE, data, { jobId: reminderJobId(data.taskId), delayMs: Math.max(0, nextAt.getTime() - now.getTime()) });
  }
  return result;
}

/** At start: re-creates the timer of every open consult / referral (re-adding replaces, so this is idempotent). */
export async function sweepTimers(ctx: FhirContext, pageSize = 100_000): Promise<number> {
  const matches = await findMatches(
    ctx.repo.db,
    'Task',
    [
      ['code', `${REQUEST_CATEGORY_SYSTEM}|consult,${REQUEST_CATEGORY_SYSTEM}|referral`],
      ['status', 'requested,received,accepted,in-progress,ready,on-hold'],
    ],
    pageSize,
  );
  let n = 0;
  const slas = new Map<string, DepartmentSla>();
  for (const m of matches) {
    const task = JSON.parse(m.json) as Task;
    const deptRef = departmentOf(task) ?? '';
    if (!slas.has(deptRef)) slas.set(deptRef, departmentSla(await readDepartment(ctx.repo, deptRef)));
    await scheduleTimers(task, { sla: slas.get(deptRef) });
    n++;
  }
  return n;
}
