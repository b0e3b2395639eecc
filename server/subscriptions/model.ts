// A Subscription resource (Backport IG backport-subscription profile) read into what delivery
// needs, and checked when it is written (criteria = a known topic canonical, filters, channel).
import { parseSearchRequest } from '@medplum/core';
import type { Extension, Subscription } from '@medplum/fhirtypes';
import { badRequest } from '../fhir/outcome.ts';
import { findTopic, type Topic } from './topics.ts';

export const BP = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/';
export const FILTER_EXT = `${BP}backport-filter-criteria`;
export const PAYLOAD_EXT = `${BP}backport-payload-content`;
export const HEARTBEAT_EXT = `${BP}backport-heartbeat-period`;
export const TIMEOUT_EXT = `${BP}backport-timeout`;
export const MAX_COUNT_EXT = `${BP}backport-max-count`;

export type PayloadContent = 'empty' | 'id-only' | 'full-resource';

export interface Filter {
  /** Resource type the filter names (Type?...), if any: only that type fires. */
  type?: string;
  /** Search parameters the focus must match (AND). */
  params: [string, string][];
}

export interface SubscriptionConfig {
  id: string;
  status: string;
  topicUrl: string;
  topic: Topic;
  filters: Filter[];
  channelType: 'rest-hook' | 'websocket';
  endpoint?: string;
  headers: [string, string][];
  mime: string;
  content: PayloadContent;
  heartbeatSeconds?: number;
  timeoutSeconds: number;
  maxCount: number;
  end?: number;
}

const extValue = (list: Extension[] | undefined, url: string): Extension | undefined => list?.find((e) => e.url === url);

function parseFilter(raw: string): Filter {
  const q = raw.trim();
  const qm = q.indexOf('?');
  const head = qm >= 0 ? q.slice(0, qm) : /^[A-Z][A-Za-z]+$/.test(q) ? q : '';
  const query = qm >= 0 ? q.slice(qm + 1) : head ? '' : q;
  const params: [string, string][] = [...new URLSearchParams(query)];
  const type = head && head !== 'Resource' ? head : undefined;
  try {
    parseSearchRequest(`${type ?? 'Resource'}?${query}`);
  } catch {
    throw badRequest(`Subscription filter criteria "${raw}" is not a valid search`);
  }
  return { type, params };
}

/** Reads a stored (or incoming) Subscription; throws 400 when it is not a topic subscription we can serve. */
export function readSubscription(sub: Subscription): SubscriptionConfig {
  const topicUrl = sub.criteria?.trim();
  if (!topicUrl) throw badRequest('Subscription.criteria must be a SubscriptionTopic canonical', ['Subscription.criteria']);
  const topic = findTopic(topicUrl);
  if (!topic) throw badRequest(`Subscription.criteria "${topicUrl}" is not a SubscriptionTopic this server supports (see CapabilityStatement)`, ['Subscription.criteria']);
  const criteriaExt = (sub as { _criteria?: { extension?: Extension[] } })._criteria?.extension ?? [];
  const filters = criteriaExt.filter((e) => e.url === FILTER_EXT).map((e) => parseFilter(String(e.valueString ?? '')));
  for (const f of filters) {
    if (f.type && !topic.triggers.some((t) => t.resource === '*' || t.resource === f.type)) {
      throw badRequest(`Filter on ${f.type} never matches topic ${topic.url}`, ['Subscription.criteria']);
    }
  }
  const ch = sub.channel;
  const channelType = ch?.type as string | undefined;
  if (channelType !== 'rest-hook' && channelType !== 'websocket') {
    throw badRequest(`Subscription.channel.type "${channelType}" is not supported: use rest-hook or websocket`, ['Subscription.channel.type']);
  }
  if (channelType === 'rest-hook' && !ch.endpoint) throw badRequest('A rest-hook Subscription needs channel.endpoint', ['Subscription.channel.endpoint']);
  const payloadExt = (ch as { _payload?: { extension?: Extension[] } })._payload?.extension;
  const content = (extValue(payloadExt, PAYLOAD_EXT)?.valueCode ?? 'id-only') as PayloadContent;
  if (!['empty', 'id-only', 'full-resource'].includes(content)) throw badRequest(`Payload content "${content}" is not empty, id-only or full-resource`);
  const mime = (ch.payload ?? 'application/fhir+json').split(';')[0].trim();
  if (mime !== 'application/fhir+json' && mime !== 'application/json') throw badRequest(`Payload type "${ch.payload}" is not supported: use application/fhir+json`);
  const headers: [string, string][] = (ch.header ?? []).map((h) => {
    const i = h.indexOf(':');
    const name = i > 0 ? h.slice(0, i).trim() : '';
    if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(name) || /[\r\n]/.test(h)) throw badRequest(`channel.header "${h}" is not "Name: value"`);
    return [name, h.slice(i + 1).trim()];
  });
  const num = (url: string): number | undefined => {
    const e = extValue(ch.extension, url);
    const v = e?.valueUnsignedInt ?? e?.valuePositiveInt ?? e?.valueInteger;
    return typeof v === 'number' ? v : undefined;
  };
  return {
    id: sub.id ?? '',
    status: sub.status ?? 'requested',
    topicUrl: topic.url,
    topic,
    filters,
    channelType,
    endpoint: ch.endpoint,
    headers,
    mime,
    content,
    heartbeatSeconds: num(HEARTBEAT_EXT) || undefined,
    timeoutSeconds: Math.min(Math.max(num(TIMEOUT_EXT) ?? 10, 1), 120),
    maxCount: Math.min(Math.max(num(MAX_COUNT_EXT) ?? 20, 1), 1000),
    end: sub.end ? Date.parse(sub.end) : undefined,
  };
}
