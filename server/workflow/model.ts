// The consult / referral model (ig/profiles, ig/codesystems/workflow-*.json): systems, extension
// URLs, SLA defaults and the seed-status maps. A request is a ServiceRequest (what is asked) plus
// a Task (the workflow: status + businessStatus, owner, due time in restriction.period.end).
import { REQUEST_CATEGORY_SYSTEM } from '../auth/access.ts';

export { REQUEST_CATEGORY_SYSTEM };

export const WL = 'http://wardlink.org/fhir';
/** Seed status names (DRAFT, SENT, PENDING, ASSIGNED, ESCALATED, FOLLOW_UP...) as businessStatus. */
export const WORKFLOW_STATUS_SYSTEM = `${WL}/CodeSystem/workflow-status`;
/** Workflow event kinds (created, sent, accepted, ... escalated): Provenance.activity, notifications, topics. */
export const WORKFLOW_EVENT_SYSTEM = `${WL}/CodeSystem/workflow-event`;
/** Communication.category: a clinical note on a request, or an in-app notification. */
export const WORKFLOW_COMMUNICATION_SYSTEM = `${WL}/CodeSystem/workflow-communication`;
export const BSER_BUSINESS_STATUS_SYSTEM = 'http://hl7.org/fhir/us/bser/CodeSystem/TaskBusinessStatusCS';

/** Department SLA settings (complex extension on the department Organization). */
export const EXT_DEPARTMENT_SLA = `${WL}/StructureDefinition/department-sla`;
/** The last workflow event applied to a Task (valueCode from workflow-event): what topics filter on. */
export const EXT_LAST_EVENT = `${WL}/StructureDefinition/workflow-last-event`;
/** Escalation tier reached (valueInteger 1 = head of department, 2 = administrator). */
export const EXT_ESCALATION_LEVEL = `${WL}/StructureDefinition/workflow-escalation-level`;
/** People the Task was escalated to (R4 Task has one owner; they are participants). */
export const EXT_ESCALATED_TO = `${WL}/StructureDefinition/workflow-escalated-to`;
/** First response time (first note). */
export const EXT_FIRST_RESPONSE = `${WL}/StructureDefinition/workflow-first-response`;
/** When a person's action last changed status / businessStatus (escalation does not): reminders count from it. */
export const EXT_STATE_SINCE = `${WL}/StructureDefinition/workflow-state-since`;

export const PROFILE = {
  consultServiceRequest: `${WL}/StructureDefinition/wardlink-consult-servicerequest`,
  referralServiceRequest: `${WL}/StructureDefinition/wardlink-referral-servicerequest`,
  consultTask: `${WL}/StructureDefinition/wardlink-consult-task`,
  referralTask: `${WL}/StructureDefinition/wardlink-referral-task`,
  department: `${WL}/StructureDefinition/wardlink-department`,
} as const;

export type Workflow = 'consult' | 'referral';
export type Priority = 'routine' | 'urgent' | 'asap' | 'stat';
export const PRIORITIES: readonly Priority[] = ['routine', 'urgent', 'asap', 'stat'];

/** Default SLA minutes per priority (STANDARDS §1: stat 60 min, urgent 4 h, routine 23 h; asap as urgent). */
export const DEFAULT_SLA_MINUTES: Record<Priority, number> = { stat: 60, asap: 240, urgent: 240, routine: 1380 };
/** Default further delay before the second escalation tier (administrator). */
export const DEFAULT_SECOND_TIER_MINUTES = 60;

export type TaskStatus =
  | 'draft'
  | 'requested'
  | 'received'
  | 'accepted'
  | 'rejected'
  | 'ready'
  | 'cancelled'
  | 'in-progress'
  | 'on-hold'
  | 'failed'
  | 'completed'
  | 'entered-in-error';

export const TERMINAL: ReadonlySet<TaskStatus> = new Set(['rejected', 'cancelled', 'failed', 'completed', 'entered-in-error']);

export type Action =
  | 'send'
  | 'receive'
  | 'accept'
  | 'decline'
  | 'assign'
  | 'start'
  | 'complete'
  | 'cancel'
  | 'follow-up'
  | 'escalate'
  | 'reprioritize';

export const ACTIONS: readonly Action[] = ['send', 'receive', 'accept', 'decline', 'assign', 'start', 'complete', 'cancel', 'follow-up', 'escalate', 'reprioritize'];

/** Workflow event kinds (one per subscription topic). */
export type WorkflowEvent =
  | 'created'
  | 'sent'
  | 'received'
  | 'accepted'
  | 'declined'
  | 'assigned'
  | 'started'
  | 'note-added'
  | 'follow-up'
  | 'escalated'
  | 'completed'
  | 'cancelled'
  | 'reprioritized';

export const EVENTS: readonly WorkflowEvent[] = [
  'created', 'sent', 'received', 'accepted', 'declined', 'assigned', 'started', 'note-added', 'follow-up', 'escalated', 'completed', 'cancelled', 'reprioritized',
];

/** Seed statuses of each workflow and their Task.status (the ConceptMap in ig/codesystems). */
export const SEED_STATUS: Record<Workflow, Record<string, TaskStatus>> = {
  referral: {
    DRAFT: 'draft',
    SENT: 'requested',
    VIEWED: 'received',
    ACCEPTED: 'accepted',
    DECLINED: 'rejected',
    IN_PROGRESS: 'in-progress',
    COMPLETED: 'completed',
    CANCELLED: 'cancelled',
    ESCALATED: 'requested',
  },
  consult: {
    PENDING: 'requested',
    ASSIGNED: 'accepted',
    IN_PROGRESS: 'in-progress',
    FOLLOW_UP: 'in-progress',
    COMPLETED: 'completed',
    DECLINED: 'rejected',
    CANCELLED: 'cancelled',
    ESCALATED: 'requested',
  },
};

/** BSeR referral Task businessStatus for a referral seed status. */
export const BSER_CODE: Record<string, [string, string]> = {
  DRAFT: ['2.0', 'Created'],
  SENT: ['2.0', 'Created'],
  VIEWED: ['2.0', 'Created'],
  ACCEPTED: ['3.0', 'Accepted'],
  DECLINED: ['4.0', 'Declined'],
  CANCELLED: ['6.0', 'Fulfillment Cancelled'],
  COMPLETED: ['7.0', 'Fulfillment Completed'],
};

export const SEED_DISPLAY: Record<string, string> = {
  DRAFT: 'Draft',
  SENT: 'Sent',
  VIEWED: 'Viewed',
  ACCEPTED: 'Accepted',
  DECLINED: 'Declined',
  PENDING: 'Pending',
  ASSIGNED: 'Assigned',
  IN_PROGRESS: 'In progress',
  FOLLOW_UP: 'Follow-up',
  COMPLETED: 'Completed',
  CANCELLED: 'Cancelled',
  ESCALATED: 'Escalated',
};
