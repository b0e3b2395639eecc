// One pure state machine per workflow (consult: FHIR Workflow pattern F, the Task lives on this
// server and the department claims it; referral: pattern G / BSeR, the Task is sent to the
// filler). Given the Task's status, the action and nothing else, it answers the next status and
// seed businessStatus, the event to record, and which parties may do it; or why not.
import type { Action, TaskStatus, Workflow, WorkflowEvent } from './model.ts';

/**
 * Who may take an action. requester: the Task's requester; department: staff of the target
 * department (clinicians, heads); owner: the Task's current owner; head: the department's head
 * (role department-head in that department); admin: an administrator. The server's own code
 * (timers) may take any action.
 */
export type Party = 'requester' | 'department' | 'owner' | 'head' | 'admin';

export interface Rule {
  from: readonly TaskStatus[];
  /** Next Task.status; undefined keeps the current one. */
  to?: TaskStatus;
  /** Next seed status (businessStatus); undefined keeps the current one. */
  seed?: string;
  event: WorkflowEvent;
  parties: readonly Party[];
  /** The action needs Task.statusReason (decline). */
  needsReason?: boolean;
  /** The action needs an owner (assign). */
  needsOwner?: boolean;
}

const OPEN_CONSULT: TaskStatus[] = ['requested', 'accepted', 'in-progress'];
const OPEN_REFERRAL: TaskStatus[] = ['requested', 'received', 'accepted', 'in-progress'];

export const MACHINES: Record<Workflow, Partial<Record<Action, Rule>>> = {
  consult: {
    accept: { from: ['requested'], to: 'accepted', seed: 'ASSIGNED', event: 'accepted', parties: ['department', 'head'] },
    assign: { from: ['requested', 'accepted'], to: 'accepted', seed: 'ASSIGNED', event: 'assigned', parties: ['head', 'admin'], needsOwner: true },
    decline: { from: ['requested'], to: 'rejected', seed: 'DECLINED', event: 'declined', parties: ['department', 'head'], needsReason: true },
    start: { from: ['accepted'], to: 'in-progress', seed: 'IN_PROGRESS', event: 'started', parties: ['owner', 'head'] },
    'follow-up': { from: ['in-progress'], to: 'in-progress', seed: 'FOLLOW_UP', event: 'follow-up', parties: ['owner', 'head'] },
    complete: { from: ['accepted', 'in-progress'], to: 'completed', seed: 'COMPLETED', event: 'completed', parties: ['owner', 'head'] },
    cancel: { from: OPEN_CONSULT, to: 'cancelled', seed: 'CANCELLED', event: 'cancelled', parties: ['requester', 'admin'] },
    escalate: { from: OPEN_CONSULT, seed: 'ESCALATED', event: 'escalated', parties: ['requester', 'head', 'admin'] },
    reprioritize: { from: OPEN_CONSULT, event: 'reprioritized', parties: ['requester', 'head', 'admin'] },
  },
  referral: {
    send: { from: ['draft'], to: 'requested', seed: 'SENT', event: 'sent', parties: ['requester'] },
    receive: { from: ['requested'], to: 'received', seed: 'VIEWED', event: 'received', parties: ['department', 'head'] },
    accept: { from: ['requested', 'received'], to: 'accepted', seed: 'ACCEPTED', event: 'accepted', parties: ['department', 'head'] },
    decline: { from: ['requested', 'received'], to: 'rejected', seed: 'DECLINED', event: 'declined', parties: ['department', 'head'], needsReason: true },
    assign: { from: ['received', 'accepted'], to: 'accepted', seed: 'ACCEPTED', event: 'assigned', parties: ['head', 'admin'], needsOwner: true },
    start: { from: ['accepted'], to: 'in-progress', seed: 'IN_PROGRESS', event: 'started', parties: ['owner', 'department', 'head'] },
    complete: { from: ['accepted', 'in-progress'], to: 'completed', seed: 'COMPLETED', event: 'completed', parties: ['owner', 'department', 'head'] },
    cancel: { from: ['draft', ...OPEN_REFERRAL], to: 'cancelled', seed: 'CANCELLED', event: 'cancelled', parties: ['requester', 'admin'] },
    escalate: { from: OPEN_REFERRAL, seed: 'ESCALATED', event: 'escalated', parties: ['requester', 'head', 'admin'] },
    reprioritize: { from: ['draft', ...OPEN_REFERRAL], event: 'reprioritized', parties: ['requester', 'head', 'admin'] },
  },
};

export interface Transition {
  status: TaskStatus;
  seed: string;
  event: WorkflowEvent;
  rule: Rule;
}

export type TransitionResult = { ok: true; transition: Transition } | { ok: false; message: string; allowed: Action[] };

/** Actions possible from a status (whoever asks). */
export function allowedActions(workflow: Workflow, status: TaskStatus): Action[] {
  return (Object.entries(MACHINES[workflow]) as [Action, Rule][]).filter(([, r]) => r.from.includes(status)).map(([a]) => a);
}

/** The statuses an action may be taken from. */
export function sourcesOf(workflow: Workflow, action: Action): TaskStatus[] {
  return [...(MACHINES[workflow][action]?.from ?? [])];
}

/** The pure transition: (workflow, status, seed, action) -> next state, or a refusal naming what is allowed. */
export function transition(workflow: Workflow, status: TaskStatus, seed: string, action: Action): TransitionResult {
  const rule = MACHINES[workflow][action];
  const allowed = allowedActions(workflow, status);
  const allowedText = allowed.length ? `allowed from ${status}: ${allowed.join(', ')}` : `${status} is final: no action is allowed`;
  if (!rule) {
    return { ok: false, allowed, message: `A ${workflow} has no "${action}" action (${allowedText})` };
  }
  if (!rule.from.includes(status)) {
    return {
      ok: false,
      allowed,
      message: `Cannot ${action} a ${workflow} in status ${status} (${seed}): ${action} is allowed from ${rule.from.join(', ')}; ${allowedText}`,
    };
  }
  return { ok: true, transition: { status: rule.to ?? status, seed: rule.seed ?? seed, event: rule.event, rule } };
}
