// Notification Bundles (Backport IG, R4): Bundle.type history, entry[0] the subscription-status
// Parameters (backport-subscription-status-r4), then one entry per focus resource as the
// subscription's payload content asks (empty: none; id-only: fullUrl + request; full-resource:
// the resource too, as it was at that event's version). A topic's notificationShape adds
// additional-context references to each notification-event (and, with full-resource, those
// resources as further entries). Payloads are read in one query per Bundle (payload.ts), or
// passed in already read (the engine has the focus versions in hand when it numbers events).
import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, Parameters, ParametersParameter, Resource } from '@medplum/fhirtypes';
import type { Queryable } from '../db/pool.ts';
import type { PayloadContent } from './model.ts';
import { readCurrent, readVersions, versionKey } from './payload.ts';

export type NotificationType = 'handshake' | 'heartbeat' | 'event-notification' | 'query-status' | 'query-event';

export interface EventRow {
  eventNumber: string;
  at: string;
  focusType: string;
  focusId: string;
  focusVersion: number;
  action: 'create' | 'update' | 'delete';
  /** additional-context references ("Type/id") the subscriber may read, from the topic's notificationShape. */
  context?: string[];
}

/** Resources for full-resource payloads: focus versions by versionKey(), context by "Type/id". */
export interface Payload {
  versions: Map<string, Resource>;
  current: Map<string, Resource>;
}

export const NO_PAYLOAD: Payload = { versions: new Map(), current: new Map() };

/** Reads what a Bundle of these events needs at this content level (two queries at most). */
export async function loadPayload(db: Queryable, events: EventRow[], content: PayloadContent, known?: Payload): Promise<Payload> {
  if (content !== 'full-resource' || events.length === 0) return NO_PAYLOAD;
  const missing = events.filter((e) => e.action !== 'delete' && !known?.versions.has(versionKey(e.focusType, e.focusId, e.focusVersion)));
  const refs = events.flatMap((e) => e.context ?? []).filter((r) => !known?.current.has(r));
  const [versions, current] = await Promise.all([
    missing.length ? readVersions(db, missing.map((e) => ({ type: e.focusType, id: e.focusId, version: e.focusVersion }))) : new Map<string, Resource>(),
    refs.length ? readCurrent(db, refs) : new Map<string, Resource>(),
  ]);
  if (known) {
    for (const [k, v] of known.versions) versions.set(k, v);
    for (const [k, v] of known.current) current.set(k, v);
  }
  return { versions, current };
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
    if (content !== 'empty') {
      part.push({ name: 'focus', valueReference: { reference: `${fhirBase}/${e.focusType}/${e.focusId}` } });
      for (const ref of e.context ?? []) part.push({ name: 'additional-context', valueReference: { reference: `${fhirBase}/${ref}` } });
    }
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
 * Focus entries for events (the focus at the event's version with full-resource), then one entry
 * per additional-context resource (its current version), each once per Bundle.
 */
export function focusEntries(fhirBase: string, events: EventRow[], content: PayloadContent, payload: Payload): BundleEntry[] {
  if (content === 'empty') return [];
  const out: BundleEntry[] = [];
  for (const e of events) {
    const entry: BundleEntry = {
      fullUrl: `${fhirBase}/${e.focusType}/${e.focusId}`,
      request: { method: METHOD[e.action], url: e.action === 'create' ? e.focusType : `${e.focusType}/${e.focusId}` },
      response: { status: STATUS[e.action] },
    };
    if (content === 'full-resource' && e.action !== 'delete') {
      const resource = payload.versions.get(versionKey(e.focusType, e.focusId, e.focusVersion));
      if (resource) entry.resource = resource;
    }
    out.push(entry);
  }
  const focus = new Set(out.map((x) => x.fullUrl));
  const seen = new Set<string>();
  for (const ref of events.flatMap((e) => e.context ?? [])) {
    const fullUrl = `${fhirBase}/${ref}`;
    if (seen.has(ref) || focus.has(fullUrl)) continue;
    seen.add(ref);
    const entry: BundleEntry = { fullUrl, request: { method: 'GET', url: ref }, response: { status: '200' } };
    if (content === 'full-resource') {
      const resource = payload.current.get(ref);
      if (!resource) continue; // deleted since: nothing to show
      entry.resource = resource;
    }
    out.push(entry);
  }
  return out;
}

/** A notification Bundle; reads the payload (one or two queries) unless it is passed in. */
export async function notificationBundle(
  db: Queryable,
  fhirBase: string,
  s: StatusInfo,
  type: NotificationType,
  events: EventRow[],
  content: PayloadContent,
  payload?: Payload,
): Promise<Bundle> {
  const loaded = await loadPayload(db, events, content, payload);
  return buildBundle(fhirBase, s, type, events, content, loaded);
}

export function buildBundle(fhirBase: string, s: StatusInfo, type: NotificationType, events: EventRow[], content: PayloadContent, payload: Payload): Bundle {
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
      ...focusEntries(fhirBase, events, content, payload),
    ],
  };
}
