// Outbound HL7 v2: messages go through the job queue (server/jobs/queue.ts) with retries and
// exponential backoff; every message has a row in hl7_outbound (pending -> sent, or dead once
// its attempts are exhausted: the dead-letter list, which an operator can resend).
// Triggers: resource events from the outbox relay. A referral Task (code fulfill, focus a
// ServiceRequest), a booked Appointment or an in-progress Encounter is sent to each MLLP
// Endpoint (connectionType hl7v2-mllp, address mllp://host:port) of the organisation(s) it
// concerns (Task.owner / Appointment participant / Encounter.serviceProvider as Organization,
// Organization.endpoint).
import type { Appointment, Encounter, Endpoint, Organization, Patient, Practitioner, Reference, Resource, ServiceRequest, Task } from '@medplum/fhirtypes';
import type { Db, Queryable } from '../../db/pool.ts';
import { Repository } from '../../fhir/repository.ts';
import type { Job, JobQueue } from '../../jobs/queue.ts';
import type { ResourceEvent } from '../../jobs/outbox-relay.ts';
import type { Logger } from '../../logger.ts';
import { adtA01, refI12, siuS12, type Party } from './build.ts';
import { parseEndpoint, sendMessage } from './send.ts';

export const OUTBOUND_QUEUE = 'hl7-outbound';

export interface OutboundDeps {
  db: Db;
  jobs: JobQueue;
  log: Logger;
  fhirBase: string;
  /** MSH-3 / MSH-4 of what we send. */
  sender?: Party;
  attempts?: number;
  backoffMs?: number;
  ackTimeoutMs?: number;
}

interface OutboundJob {
  id: string;
}

const DEFAULT_SENDER: Party = { application: 'WARDLINK', facility: 'WARDLINK' };

/** Stores the message and schedules its delivery; returns the hl7_outbound id. */
export async function enqueueOutbound(
  deps: OutboundDeps,
  endpoint: string,
  messageType: string,
  controlId: string,
  text: string,
  source?: string,
): Promise<string | undefined> {
  parseEndpoint(endpoint);
  // source (the triggering event) makes a redelivered event enqueue nothing new.
  const res = await deps.db.query<{ id: string }>(
    `INSERT INTO hl7_outbound (endpoint, message_type, control_id, raw, status, source) VALUES ($1, $2, $3, $4, 'pending', $5)
     ON CONFLICT (endpoint, message_type, source) WHERE source IS NOT NULL DO NOTHING RETURNING id::text AS id`,
    [endpoint, messageType, controlId, text, source ?? null],
  );
  const id = res.rows[0]?.id;
  if (!id) return undefined;
  await deps.jobs.add<OutboundJob>(OUTBOUND_QUEUE, { id }, { jobId: `hl7-out-${id}`, attempts: deps.attempts ?? 8, backoffMs: deps.backoffMs ?? 2000 });
  return id;
}

/** Runs deliveries in this process. */
export function startOutboundWorker(deps: OutboundDeps): void {
  deps.jobs.process<OutboundJob>(OUTBOUND_QUEUE, (job) => deliver(deps, job), { concurrency: 4 });
}

async function deliver(deps: OutboundDeps, job: Job<OutboundJob>): Promise<void> {
  const res = await deps.db.query<{ endpoint: string; raw: string; control_id: string; status: string }>(
    'SELECT endpoint, raw, control_id, status FROM hl7_outbound WHERE id = $1',
    [job.data.id],
  );
  const row = res.rows[0];
  if (!row || row.status === 'sent') return;
  try {
    const ack = await sendMessage(parseEndpoint(row.endpoint), row.raw, row.control_id, deps.ackTimeoutMs);
    await deps.db.query(`UPDATE hl7_outbound SET status = 'sent', ack = $2, attempts = attempts + 1, last_error = NULL, updated_at = now() WHERE id = $1`, [job.data.id, ack]);
  } catch (err) {
    const dead = job.attempt >= job.attempts;
    await deps.db.query(`UPDATE hl7_outbound SET status = $2, attempts = attempts + 1, last_error = $3, updated_at = now() WHERE id = $1`, [
      job.data.id,
      dead ? 'dead' : 'pending',
      String((err as Error).message ?? err),
    ]);
    deps.log.warn({ outboundId: job.data.id, attempt: job.attempt, dead, err: (err as Error).message }, 'HL7 v2 outbound delivery failed');
    throw err;
  }
}

/** The dead-letter list. */
export async function deadLetters(db: Queryable, limit = 100): Promise<{ id: string; endpoint: string; messageType: string; attempts: number; lastError: string }[]> {
  const res = await db.query<{ id: string; endpoint: string; messageType: string; attempts: number; lastError: string }>(
    `SELECT id::text AS id, endpoint, message_type AS "messageType", attempts, last_error AS "lastError" FROM hl7_outbound WHERE status = 'dead' ORDER BY id DESC LIMIT $1`,
    [limit],
  );
  return res.rows;
}

/** Puts a dead message back in the queue. */
export async function resend(deps: OutboundDeps, id: string): Promise<boolean> {
  const res = await deps.db.query(`UPDATE hl7_outbound SET status = 'pending', updated_at = now() WHERE id = $1 AND status = 'dead'`, [id]);
  if (!res.rowCount) return false;
  await deps.jobs.add<OutboundJob>(OUTBOUND_QUEUE, { id }, { jobId: `hl7-out-${id}`, attempts: deps.attempts ?? 8, backoffMs: deps.backoffMs ?? 2000 });
  return true;
}

// ---------------------------------------------------------------- triggers

export async function readRef<T extends Resource>(repo: Repository, ref: Reference | undefined, type: string): Promise<T | undefined> {
  const [t, id] = (ref?.reference ?? '').split('/');
  if (t !== type || !id) return undefined;
  return repo.readResource<T>(type, id).catch(() => undefined);
}

/** MLLP endpoints of the organisation a reference names (directly or through a PractitionerRole). */
export async function mllpEndpoints(repo: Repository, ref: Reference | undefined): Promise<string[]> {
  const org = await readRef<Organization>(repo, ref, 'Organization');
  if (!org) return [];
  const out: string[] = [];
  for (const epRef of org.endpoint ?? []) {
    const ep = await readRef<Endpoint>(repo, epRef, 'Endpoint');
    if (ep && ep.status === 'active' && ep.connectionType?.code === 'hl7v2-mllp' && ep.address) out.push(ep.address);
  }
  return out;
}

/**
 * The outbox listener: turns resource events into outbound messages. Created versions only
 * (event.action create) for referrals and appointments, so an update storm does not resend.
 */
export function outboundListener(deps: OutboundDeps): (event: ResourceEvent) => Promise<void> {
  const sender = deps.sender ?? DEFAULT_SENDER;
  return async (event) => {
    if (event.action === 'delete') return;
    const repo = new Repository(deps.db, { baseUrl: deps.fhirBase }, deps.db);
    const source = `${event.resourceType}/${event.resourceId}/_history/${event.version}`;
    if (event.resourceType === 'Task' && event.action === 'create') {
      const task = await repo.readResource<Task>('Task', event.resourceId);
      if (task.code?.coding?.[0]?.code !== 'fulfill') return;
      const sr = await readRef<ServiceRequest>(repo, task.focus, 'ServiceRequest');
      const patient = await readRef<Patient>(repo, task.for ?? sr?.subject, 'Patient');
      if (!sr || !patient) return;
      for (const endpoint of await mllpEndpoints(repo, task.owner)) {
        const msg = refI12(
          { serviceRequest: sr, task, patient, requester: await readRef<Practitioner>(repo, sr.requester, 'Practitioner'), performer: await readRef<Practitioner>(repo, sr.performer?.[0], 'Practitioner') },
          sender,
          { application: 'REFERRAL', facility: endpoint },
        );
        await enqueueOutbound(deps, endpoint, 'REF^I12', msg.controlId, msg.text, source);
      }
    } else if (event.resourceType === 'Appointment' && event.action === 'create') {
      const appt = await repo.readResource<Appointment>('Appointment', event.resourceId);
      if (appt.status !== 'booked') return;
      const patientRef = appt.participant.find((p) => p.actor?.reference?.startsWith('Patient/'))?.actor;
      const patient = await readRef<Patient>(repo, patientRef, 'Patient');
      for (const p of appt.participant) {
        for (const endpoint of await mllpEndpoints(repo, p.actor)) {
          const msg = siuS12(appt, patient, sender, { application: 'SCHEDULING', facility: endpoint });
          await enqueueOutbound(deps, endpoint, 'SIU^S12', msg.controlId, msg.text, source);
        }
      }
    } else if (event.resourceType === 'Encounter' && event.action === 'create') {
      const enc = await repo.readResource<Encounter>('Encounter', event.resourceId);
      if (enc.status !== 'in-progress' || enc.class?.code !== 'IMP') return;
      const patient = await readRef<Patient>(repo, enc.subject, 'Patient');
      if (!patient) return;
      for (const endpoint of await mllpEndpoints(repo, enc.serviceProvider)) {
        const msg = adtA01(enc, patient, sender, { application: 'ADT', facility: endpoint });
        await enqueueOutbound(deps, endpoint, 'ADT^A01', msg.controlId, msg.text, source);
      }
    }
  };
}
