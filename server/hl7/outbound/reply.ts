// Messages back to a system that sent us one: the application ACK of enhanced acknowledgement
// mode (MSH-16), OSU^O51 status updates of the referral Tasks its OMG^O19 orders created, and
// RRI^I12 answers to the referrals its REF^I12 messages made.
// Where a sender listens is configured as a FHIR Endpoint (connectionType hl7v2-mllp, status
// active, address mllp://host:port) whose identifier is {system SENDER_SYSTEM, value: the
// sender key as the message store records it, "MSH-3|MSH-4" (e.g. "LAB|NORTH")}.
import type { Endpoint, Patient, Practitioner, ServiceRequest, Task } from '@medplum/fhirtypes';
import type { Queryable } from '../../db/pool.ts';
import { Repository } from '../../fhir/repository.ts';
import { findMatches } from '../../fhir/search/search.ts';
import type { ResourceEvent } from '../../jobs/outbox-relay.ts';
import { osuO51, rriI12 } from './build.ts';
import { tokenParam } from '../inbound/datatypes.ts';
import { enqueueOutbound, mllpEndpoints, readRef, type OutboundDeps } from './queue.ts';

export const SENDER_SYSTEM = 'urn:wardlink:hl7v2:sender';
/** meta.tag system on resources whose status changes go back to the sender named by the code. */
export const STATUS_RECIPIENT_TAG = 'urn:wardlink:hl7v2:status-recipient';

/** The MLLP addresses configured for a sender key (MSH-3|MSH-4). */
export async function senderEndpoints(db: Queryable, senderKey: string): Promise<string[]> {
  if (!senderKey) return [];
  const matches = await findMatches(db, 'Endpoint', [['identifier', tokenParam(SENDER_SYSTEM, senderKey)]], 10);
  return matches
    .map((m) => JSON.parse(m.json) as Endpoint)
    .filter((ep) => ep.status === 'active' && ep.connectionType?.code === 'hl7v2-mllp' && ep.address)
    .map((ep) => ep.address as string);
}

/**
 * Queues an application ACK (enhanced mode) to the sender's endpoints, once per stored message
 * and endpoint; returns the addresses it was queued for (empty: no endpoint configured).
 */
export async function sendApplicationAck(deps: OutboundDeps, messageId: string, senderKey: string, ack: string): Promise<string[]> {
  const endpoints = await senderEndpoints(deps.db, senderKey);
  const controlId = ack.split('\r')[0].split('|')[9] ?? '';
  for (const endpoint of endpoints) await enqueueOutbound(deps, endpoint, 'ACK', controlId, ack, `hl7_message/${messageId}/app-ack`);
  return endpoints;
}

/** meta.tag system on referral Tasks (from REF^I12) whose answers (RRI^I12) go to the sender named by the code. */
export const REFERRAL_RESPONSE_TAG = 'urn:wardlink:hl7v2:referral-response-recipient';

/**
 * Task statuses by which the referred-to side answers a referral (RRI^I12). The referrer's own
 * (requested, cancelled: what its REF^I12 / I14 set) are not echoed back to it.
 */
const RESPONSE_STATUSES = new Set<Task['status']>(['accepted', 'rejected', 'in-progress', 'on-hold', 'completed', 'failed']);

/**
 * The outbox listener for closed-loop referrals, when a referral Task changes status (compared
 * with its previous version), once per Task version:
 * - tagged with STATUS_RECIPIENT_TAG (an OMG^O19 order made it): an OSU^O51 to that sender;
 * - answered (RESPONSE_STATUSES): an RRI^I12 to the sender tagged with REFERRAL_RESPONSE_TAG (a
 *   REF^I12 made it) and to the MLLP Endpoints of the requesting Organization (Task.requester).
 */
export function statusUpdateListener(deps: OutboundDeps): (event: ResourceEvent) => Promise<void> {
  const sender = deps.sender ?? { application: 'WARDLINK', facility: 'WARDLINK' };
  return async (event) => {
    if (event.resourceType !== 'Task' || event.action !== 'update') return;
    const repo = new Repository(deps.db, { baseUrl: deps.fhirBase }, deps.db);
    const version = await repo.vread('Task', event.resourceId, String(event.version)).catch(() => undefined);
    if (!version?.json) return;
    const task = { ...(JSON.parse(version.json) as Task), id: event.resourceId };
    const tagged = (system: string) => task.meta?.tag?.find((t) => t.system === system)?.code;
    const osuRecipient = tagged(STATUS_RECIPIENT_TAG);
    const rriRecipient = tagged(REFERRAL_RESPONSE_TAG);
    // Someone to answer: the REF^I12 sender, or a requesting Organization (which may have Endpoints).
    const answers =
      RESPONSE_STATUSES.has(task.status) && task.code?.coding?.[0]?.code === 'fulfill' && Boolean(rriRecipient || task.requester?.reference?.startsWith('Organization/'));
    if (!osuRecipient && !answers) return;
    const previous = await repo.vread('Task', event.resourceId, String(event.version - 1)).catch(() => undefined);
    if (previous?.json && (JSON.parse(previous.json) as Task).status === task.status) return;
    const sr = await readRef<ServiceRequest>(repo, task.focus, 'ServiceRequest');
    const patient = await readRef<Patient>(repo, task.for, 'Patient');
    const source = `Task/${event.resourceId}/_history/${event.version}`;
    if (osuRecipient) {
      const endpoints = await senderEndpoints(deps.db, osuRecipient);
      if (endpoints.length === 0) {
        deps.log.warn({ task: event.resourceId, sender: osuRecipient }, 'no MLLP Endpoint configured for the sender of this referral: OSU^O51 not sent');
      }
      for (const endpoint of endpoints) {
        const msg = osuO51(task, sr, patient, sender, receiverOf(osuRecipient));
        await enqueueOutbound(deps, endpoint, 'OSU^O51', msg.controlId, msg.text, source);
      }
    }
    if (answers && sr && patient) {
      const targets = [
        ...(rriRecipient ? (await senderEndpoints(deps.db, rriRecipient)).map((endpoint) => ({ endpoint, receiver: receiverOf(rriRecipient) })) : []),
        ...(await mllpEndpoints(repo, task.requester)).map((endpoint) => ({ endpoint, receiver: { application: 'REFERRAL', facility: endpoint } })),
      ];
      if (rriRecipient && targets.length === 0) {
        deps.log.warn({ task: event.resourceId, sender: rriRecipient }, 'no MLLP Endpoint configured for the sender of this referral: RRI^I12 not sent');
      }
      if (targets.length === 0) return;
      const parts = {
        serviceRequest: sr,
        task,
        patient,
        requester: await readRef<Practitioner>(repo, sr.requester, 'Practitioner'),
        performer: await readRef<Practitioner>(repo, sr.performer?.[0], 'Practitioner'),
      };
      for (const { endpoint, receiver } of targets) {
        const msg = rriI12(parts, sender, receiver);
        await enqueueOutbound(deps, endpoint, 'RRI^I12', msg.controlId, msg.text, source);
      }
    }
  };
}

/** MSH-5 / MSH-6 for a sender key (MSH-3|MSH-4 of its messages). */
function receiverOf(senderKey: string): { application: string; facility: string } {
  const [application, facility] = senderKey.split('|');
  return { application: application ?? '', facility: facility ?? '' };
}
