// Messages back to a system that sent us one: the application ACK of enhanced acknowledgement
// mode (MSH-16) and OSU^O51 status updates of the referral Tasks its OMG^O19 orders created.
// Where a sender listens is configured as a FHIR Endpoint (connectionType hl7v2-mllp, status
// active, address mllp://host:port) whose identifier is {system SENDER_SYSTEM, value: the
// sender key as the message store records it, "MSH-3|MSH-4" (e.g. "LAB|NORTH")}.
import type { Endpoint, Patient, ServiceRequest, Task } from '@medplum/fhirtypes';
import type { Queryable } from '../../db/pool.ts';
import { Repository } from '../../fhir/repository.ts';
import { findMatches } from '../../fhir/search/search.ts';
import type { ResourceEvent } from '../../jobs/outbox-relay.ts';
import { osuO51 } from './build.ts';
import { tokenParam } from '../inbound/datatypes.ts';
import { enqueueOutbound, type OutboundDeps } from './queue.ts';

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

/**
 * The outbox listener for closed-loop referrals: when a Task tagged with STATUS_RECIPIENT_TAG
 * changes status (compared with its previous version), an OSU^O51 goes to the sender's
 * endpoints, once per Task version.
 */
export function statusUpdateListener(deps: OutboundDeps): (event: ResourceEvent) => Promise<void> {
  const sender = deps.sender ?? { application: 'WARDLINK', facility: 'WARDLINK' };
  return async (event) => {
    if (event.resourceType !== 'Task' || event.action !== 'update') return;
    const repo = new Repository(deps.db, { baseUrl: deps.fhirBase }, deps.db);
    const version = await repo.vread('Task', event.resourceId, String(event.version)).catch(() => undefined);
    if (!version?.json) return;
    const task = JSON.parse(version.json) as Task;
    const recipient = task.meta?.tag?.find((t) => t.system === STATUS_RECIPIENT_TAG)?.code;
    if (!recipient) return;
    const previous = await repo.vread('Task', event.resourceId, String(event.version - 1)).catch(() => undefined);
    if (previous?.json && (JSON.parse(previous.json) as Task).status === task.status) return;
    const endpoints = await senderEndpoints(deps.db, recipient);
    if (endpoints.length === 0) {
      deps.log.warn({ task: event.resourceId, sender: recipient }, 'no MLLP Endpoint configured for the sender of this referral: OSU^O51 not sent');
      return;
    }
    const [srType, srId] = (task.focus?.reference ?? '').split('/');
    const sr = srType === 'ServiceRequest' ? await repo.readResource<ServiceRequest>('ServiceRequest', srId).catch(() => undefined) : undefined;
    const [pType, pId] = (task.for?.reference ?? '').split('/');
    const patient = pType === 'Patient' ? await repo.readResource<Patient>('Patient', pId).catch(() => undefined) : undefined;
    const [application, facility] = recipient.split('|');
    const source = `Task/${event.resourceId}/_history/${event.version}`;
    for (const endpoint of endpoints) {
      const msg = osuO51({ ...task, id: event.resourceId }, sr, patient, sender, { application: application ?? '', facility: facility ?? '' });
      await enqueueOutbound(deps, endpoint, 'OSU^O51', msg.controlId, msg.text, source);
    }
  };
}
