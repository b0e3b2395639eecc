// Notification Bundles (Backport IG, R4): Bundle.type history, entry[0] the subscription-status
// Parameters (backport-subscription-status-r4), then one entry per focus resource as the
// subscription's payload content asks (empty: none; id-only: fullUrl + request; full-resource:
// the resource too, as it was at that event's version).
import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, Parameters, ParametersParameter, Resource } from '@medplum/fhirtypes';
import type { Repository } from '../fhir/repository.ts';
import type { PayloadContent } from './model.ts';

export type NotificationType = 'handshake' | 'heartbeat' | 'event-notification' | 'query-status' | 'query-event';

export interface EventRow {
  eventNumber: string;
  at: string;
  focusType: string;
  focusId: string;
  focusVersion: number;
  action: 'create' | 'update' | 'delete';
}

export interface StatusInfo {
  id: string;
  topic: string;
  status: string;
  eventsSince: string;
  error?: string;
}

export function statusParameters(fhirBase: string, s: StatusInfo, type: NotificationType, events: EventRow[], content: PayloadContent): Parameters {
  const parameter: ParametersParameter[] = [
    { name: 'subscription', valueReference: { reference: `${fhirBase}/Subscription/${s.id}` } },
    { name: 'topic', valueCanonical: s.topic },
    { name: 'status', valueCode: s.status },
    { name: 'type', valueCode: type },
    { name: 'events-since-subscription-start', valueString: s.eventsSince },
  ];
  for (const e of events) {
    const part: ParametersParameter[] = [
      { name: 'event-number', valueString: e.eventNumber },
      { name: 'timestamp', valueInstant: e.at },
    ];
    if (content !== 'empty') part.push({ name: 'focus', valueReference: { reference: `${fhirBase}/${e.focusType}/${e.focusId}` } });
    parameter.push({ name: 'notification-event', part });
  }
  if (s.error) parameter.push({ name: 'error', valueCodeableConcept: { text: s.error } });
  return {
    resourceType: 'Parameters',
    id: randomUUID(),
    meta: { profile: ['http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4'] },
    parameter,
  };
}

const METHOD = { create: 'POST', update: 'PUT', delete: 'DELETE' } as const;
const STATUS = { create: '201', update: '200', delete: '204' } as const;

/**
 * Focus entries for events. readable(resource) decides (again, at delivery) whether the
 * subscriber may see the resource: full-resource content only carries what it may read.
 */
export async function focusEntries(
  repo: Repository,
  fhirBase: string,
  events: EventRow[],
  content: PayloadContent,
): Promise<BundleEntry[]> {
  if (content === 'empty') return [];
  const out: BundleEntry[] = [];
  for (const e of events) {
    const entry: BundleEntry = {
      fullUrl: `${fhirBase}/${e.focusType}/${e.focusId}`,
      request: { method: METHOD[e.action], url: e.action === 'create' ? e.focusType : `${e.focusType}/${e.focusId}` },
      response: { status: STATUS[e.action] },
    };
    if (content === 'full-resource' && e.action !== 'delete') {
      const v = await repo.vread(e.focusType, e.focusId, String(e.focusVersion)).catch(() => undefined);
      if (v?.json) entry.resource = JSON.parse(v.json) as Resource;
    }
    out.push(entry);
  }
  return out;
}

export async function notificationBundle(
  repo: Repository,
  fhirBase: string,
  s: StatusInfo,
  type: NotificationType,
  events: EventRow[],
  content: PayloadContent,
): Promise<Bundle> {
  const params = statusParameters(fhirBase, s, type, events, content);
  return {
    resourceType: 'Bundle',
    id: randomUUID(),
    type: 'history',
    timestamp: new Date().toISOString(),
    entry: [
      {
        fullUrl: `urn:uuid:${params.id}`,
        resource: params,
        request: { method: 'GET', url: `${fhirBase}/Subscription/${s.id}/$status` },
        response: { status: '200' },
      },
      ...(await focusEntries(repo, fhirBase, events, content)),
    ],
  };
}
