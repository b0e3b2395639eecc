// The consult board's data: one FHIR search loads a department's open consults with their
// patients, requesters and owners (_include, no per-card fetches); each Task becomes a card in
// one column (incoming, assigned, in progress, overdue, follow-up) by its status, its workflow
// status (businessStatus) and its due time (Task.restriction.period.end, the SLA deadline).
import { byReference, matches, nameOf, search, type Bundle, type Reference, type Resource } from '../api/fhir.ts';
import { membershipOf } from '../user.ts';

export const REQUEST_CATEGORY = 'http://wardlink.org/fhir/CodeSystem/request-category';
export const WORKFLOW_STATUS = 'http://wardlink.org/fhir/CodeSystem/workflow-status';
export const OPEN_STATUSES = 'requested,received,accepted,in-progress';

export type Column = 'incoming' | 'assigned' | 'inProgress' | 'overdue' | 'followUp';
export const COLUMNS: Column[] = ['incoming', 'assigned', 'inProgress', 'overdue', 'followUp'];
export type SlaLevel = 'ok' | 'amber' | 'red';

export interface Consult {
  id: string;
  workflow: 'consult' | 'referral';
  version: string;
  status: string;
  /** Workflow status: PENDING, ASSIGNED, IN_PROGRESS, FOLLOW_UP, ESCALATED, ... */
  seed: string;
  priority: string;
  reason: string;
  patient: string;
  patientName: string;
  requester: string;
  requesterName: string;
  owner: string;
  ownerName: string;
  /** The department it was sent to. */
  department: string;
  departmentName: string;
  authoredOn?: string;
  start?: number;
  due?: number;
}

export interface Person {
  ref: string;
  name: string;
  membership: string;
}

/** The search parameters of a department's open consults (all of them, or some ids). */
export function boardQuery(dept: string, ids?: string[]): [string, string][] {
  return [
    ...(ids ? [['_id', ids.join(',')] as [string, string]] : []),
    ['focus:ServiceRequest.performer', dept],
    ['code', `${REQUEST_CATEGORY}|consult`],
    ['status', OPEN_STATUSES],
    ['_include', 'Task:patient'],
    ['_include', 'Task:requester'],
    ['_include', 'Task:owner'],
    ['_count', '1000'],
  ];
}

export function toConsult(task: Resource, refs: Map<string, Resource>): Consult {
  const ref = (field: string) => (task[field] as Reference | undefined)?.reference ?? '';
  const display = (field: string) => {
    const r = task[field] as Reference | undefined;
    return nameOf(refs.get(r?.reference ?? '')) || String(refs.get(r?.reference ?? '')?.name ?? '') || r?.display || '';
  };
  const period = (task.restriction as { period?: { start?: string; end?: string }; recipient?: Reference[] } | undefined) ?? {};
  const seed = (task.businessStatus as { coding?: { system?: string; code?: string }[] } | undefined)?.coding?.find((c) => c.system === WORKFLOW_STATUS)?.code ?? '';
  const category = (task.code as { coding?: { system?: string; code?: string }[] } | undefined)?.coding?.find((c) => c.system === REQUEST_CATEGORY)?.code;
  return {
    id: task.id as string,
    workflow: category === 'referral' ? 'referral' : 'consult',
    version: task.meta?.versionId ?? '',
    status: String(task.status),
    seed,
    priority: String(task.priority ?? 'routine'),
    reason: String(task.description ?? ''),
    patient: ref('for'),
    patientName: display('for'),
    requester: ref('requester'),
    requesterName: display('requester'),
    owner: ref('owner'),
    ownerName: display('owner'),
    department: period.recipient?.[0]?.reference ?? '',
    departmentName: period.recipient?.[0]?.display ?? '',
    authoredOn: task.authoredOn as string | undefined,
    start: period.period?.start ? Date.parse(period.period.start) : undefined,
    due: period.period?.end ? Date.parse(period.period.end) : undefined,
  };
}

export function consultsOf(bundle: Bundle): Consult[] {
  const refs = byReference(bundle);
  return matches(bundle, 'Task').map((t) => toConsult(t, refs));
}

let prefetched: { dept: string; at: number; result: Promise<Consult[]> } | undefined;

/** Starts loading a board while the app is still loading the profile (the URL names the department). */
export function prefetchConsults(dept: string): void {
  prefetched = { dept, at: performance.now(), result: consultsOf_(search('Task', boardQuery(dept))) };
  prefetched.result.catch(() => (prefetched = undefined));
}

const consultsOf_ = async (b: Promise<Bundle>): Promise<Consult[]> => consultsOf(await b);

export async function loadConsults(dept: string, ids?: string[], signal?: AbortSignal): Promise<Consult[]> {
  const p = prefetched;
  if (!ids && p && p.dept === dept && performance.now() - p.at < 10_000) {
    prefetched = undefined;
    return p.result;
  }
  return consultsOf(await search('Task', boardQuery(dept, ids), signal));
}

/** The department's doctors (and head), to assign consults to. */
export async function loadStaff(dept: string): Promise<Person[]> {
  const b = await search('PractitionerRole', [['organization', dept], ['active', 'true'], ['_include', 'PractitionerRole:practitioner'], ['_count', '200']]);
  const refs = byReference(b);
  const out: Person[] = [];
  for (const r of matches(b, 'PractitionerRole')) {
    const ref = (r.practitioner as Reference | undefined)?.reference;
    if (!ref || out.some((p) => p.ref === ref)) continue;
    out.push({ ref, name: nameOf(refs.get(ref)) || ref, membership: membershipOf(r) });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

export function isOverdue(c: Consult, now: number): boolean {
  return c.due !== undefined && c.due <= now && c.seed !== 'FOLLOW_UP';
}

export function columnOf(c: Consult, now: number): Column | undefined {
  if (c.seed === 'FOLLOW_UP') return 'followUp';
  if (isOverdue(c, now)) return 'overdue';
  if (c.status === 'requested' || c.status === 'received') return 'incoming';
  if (c.status === 'accepted') return 'assigned';
  if (c.status === 'in-progress') return 'inProgress';
  return undefined;
}

/** Red when overdue, amber in the last quarter of the SLA window (or its last 15 minutes). */
export function slaLevel(c: Consult, now: number): SlaLevel {
  if (c.due === undefined) return 'ok';
  const left = c.due - now;
  if (left <= 0) return 'red';
  const window = c.start !== undefined ? c.due - c.start : left;
  return left <= Math.max(window * 0.25, 0) || left <= 15 * 60_000 ? 'amber' : 'ok';
}

export const PRIORITY_RANK: Record<string, number> = { stat: 0, asap: 1, urgent: 2, routine: 3 };

export function byUrgency(a: Consult, b: Consult): number {
  return (a.due ?? Infinity) - (b.due ?? Infinity) || (PRIORITY_RANK[a.priority] ?? 9) - (PRIORITY_RANK[b.priority] ?? 9);
}
