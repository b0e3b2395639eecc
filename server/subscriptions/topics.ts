// SubscriptionTopics, R4 style (Backport IG): Basic resources carrying the R5 cross-version
// extensions http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.*, loaded
// from ig/ (any file: ig/subscription-topics/ holds the generic ones, workflows add theirs).
// A topic triggers on resourceTrigger entries: a resource type (or "*"/Resource for any), the
// interactions (create/update/delete), optional queryCriteria (previous/current search filters)
// and fhirPathCriteria (with %previous / %current).
import { evalFhirPath, getSearchParameter, matchesSearchRequest, parseSearchRequest } from '@medplum/core';
import type { Basic, Extension, Resource } from '@medplum/fhirtypes';
import type { ResourceAction } from '../jobs/outbox-relay.ts';
import { contributeToCapabilities } from '../fhir/capability.ts';
import { igResources } from '../fhir/definitions.ts';

const X = 'http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic';
export const TOPIC_CANONICAL_EXT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical';

export interface QueryCriteria {
  previous?: string;
  current?: string;
  resultForCreate?: 'test-passes' | 'test-fails';
  resultForDelete?: 'test-passes' | 'test-fails';
  requireBoth?: boolean;
}

export interface ResourceTrigger {
  /** A resource type, or '*' for any. */
  resource: string;
  interactions: ResourceAction[];
  query?: QueryCriteria;
  fhirPath?: string;
}

export interface CanFilterBy {
  resource?: string;
  filterParameter: string;
}

/** notificationShape: for focus resources of this type, the _include-style paths of additional context. */
export interface NotificationShape {
  /** A resource type, or '*' for any. */
  resource: string;
  /** "Task:focus", "Task:patient", "Task:patient:Patient" (source type, search parameter, target type). */
  include: string[];
}

export interface Topic {
  url: string;
  title?: string;
  triggers: ResourceTrigger[];
  canFilterBy: CanFilterBy[];
  notificationShape: NotificationShape[];
}

const ext = (e: { extension?: Extension[] }, name: string): Extension[] =>
  (e.extension ?? []).filter((x) => x.url === name || x.url === `${X}.${name}`);
const str = (e: Extension | undefined): string | undefined =>
  e ? ((e.valueUri ?? e.valueString ?? e.valueCode ?? e.valueCanonical ?? e.valueUrl) as string | undefined) : undefined;

/** Strips the R5 StructureDefinition prefix: http://hl7.org/fhir/StructureDefinition/Encounter -> Encounter. */
function typeOf(uri: string): string {
  const t = uri.replace(/^http:\/\/hl7\.org\/fhir\/(?:[0-9.]+\/)?StructureDefinition\//, '');
  return t === 'Resource' || t === 'DomainResource' ? '*' : t;
}

export function topicFromBasic(basic: Basic): Topic | undefined {
  const url = str(ext(basic, `${X}.url`)[0]);
  if (!url) return undefined;
  const triggers: ResourceTrigger[] = ext(basic, `${X}.resourceTrigger`).map((t) => {
    const q = ext(t, 'queryCriteria')[0];
    const interactions = ext(t, 'supportedInteraction').map((i) => str(i) as ResourceAction);
    return {
      resource: typeOf(str(ext(t, 'resource')[0]) ?? '*'),
      interactions: interactions.length ? interactions : ['create', 'update', 'delete'],
      query: q
        ? {
            previous: str(ext(q, 'previous')[0]),
            current: str(ext(q, 'current')[0]),
            resultForCreate: str(ext(q, 'resultForCreate')[0]) as QueryCriteria['resultForCreate'],
            resultForDelete: str(ext(q, 'resultForDelete')[0]) as QueryCriteria['resultForDelete'],
            requireBoth: ext(q, 'requireBoth')[0]?.valueBoolean,
          }
        : undefined,
      fhirPath: str(ext(t, 'fhirPathCriteria')[0]),
    };
  });
  const canFilterBy = ext(basic, `${X}.canFilterBy`).map((f) => ({
    resource: str(ext(f, 'resource')[0]) ? typeOf(str(ext(f, 'resource')[0]) as string) : undefined,
    filterParameter: str(ext(f, 'filterParameter')[0]) ?? '',
  }));
  const notificationShape = ext(basic, `${X}.notificationShape`).map((n) => ({
    resource: typeOf(str(ext(n, 'resource')[0]) ?? '*'),
    include: ext(n, 'include').map((i) => str(i) ?? '').filter(Boolean),
  }));
  return { url, title: str(ext(basic, `${X}.title`)[0]), triggers, canFilterBy, notificationShape };
}

let topics: Map<string, Topic> | undefined;

/** Every topic in ig/, by canonical URL (loaded once). */
export function loadTopics(): Map<string, Topic> {
  if (topics) return topics;
  topics = new Map();
  for (const basic of igResources<Basic>('Basic')) {
    const t = topicFromBasic(basic);
    if (t) topics.set(t.url, t);
  }
  const list = [...topics.values()];
  contributeToCapabilities((cs) => {
    const rest = cs.rest?.[0];
    if (!rest) return;
    rest.extension = [
      ...(rest.extension ?? []).filter((e) => e.url !== TOPIC_CANONICAL_EXT),
      ...list.map((t) => ({ url: TOPIC_CANONICAL_EXT, valueCanonical: t.url })),
    ];
    const sub = rest.resource?.find((r) => r.type === 'Subscription');
    if (sub) {
      sub.supportedProfile = [...new Set([...(sub.supportedProfile ?? []), 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription'])];
    }
  });
  return topics;
}

/** The canonical without a |version suffix. */
export function findTopic(canonical: string): Topic | undefined {
  return loadTopics().get(canonical.split('|')[0]);
}

function matchesQuery(resource: Resource | undefined, query: string | undefined, whenMissing: boolean): boolean {
  if (!query) return true;
  if (!resource) return whenMissing;
  const q = query.includes('?') ? query : `${resource.resourceType}?${query}`;
  return matchesSearchRequest(resource, parseSearchRequest(q));
}

/** Does this change fire the topic? previous is the version before (absent on create). */
export function topicFires(topic: Topic, type: string, action: ResourceAction, current: Resource | undefined, previous: Resource | undefined): boolean {
  return topic.triggers.some((t) => {
    if (t.resource !== '*' && t.resource !== type) return false;
    if (!t.interactions.includes(action)) return false;
    if (t.query) {
      const q = t.query;
      const prevOk = action === 'create' ? q.resultForCreate !== 'test-fails' : matchesQuery(previous, q.previous, true);
      const curOk = action === 'delete' ? q.resultForDelete !== 'test-fails' : matchesQuery(current, q.current, true);
      const ok = q.requireBoth === false && q.previous && q.current ? prevOk || curOk : prevOk && curOk;
      if (!ok) return false;
    }
    if (t.fhirPath) {
      const focus = current ?? previous;
      if (!focus) return false;
      try {
        // Both variables always exist: an absent version (previous on create, current on
        // delete) is empty, so "%previous.exists().not()" holds on a create rather than
        // failing as an undefined variable (which made workflow topics never fire on create).
        const vars: Record<string, { type: string; value: unknown }> = {};
        for (const [k, v] of [['current', current], ['previous', previous]] as const) {
          vars[k] = v ? { type: v.resourceType, value: v } : { type: 'undefined', value: undefined };
          vars[`%${k}`] = vars[k];
        }
        const out = evalFhirPath(t.fhirPath, focus, vars);
        if (!(out.length > 0 && out.every((v) => v === true || (v !== false && v !== undefined && v !== null)))) return false;
      } catch {
        return false;
      }
    }
    return true;
  });
}

/** Resource types a topic may fire for ('*' = any). */
export function topicTypes(topic: Topic): Set<string> {
  return new Set(topic.triggers.map((t) => t.resource));
}

/**
 * The additional context of a focus resource as the topic's notificationShape asks: the
 * references its include paths name ("Task:focus" -> what Task.focus points at), as relative
 * "Type/id" references, in include order, without duplicates or the focus itself. Contained and
 * external references are left out (nothing on this server to notify about).
 */
export function additionalContext(topic: Topic, focus: Resource): string[] {
  const out: string[] = [];
  const self = `${focus.resourceType}/${focus.id}`;
  for (const shape of topic.notificationShape) {
    if (shape.resource !== '*' && shape.resource !== focus.resourceType) continue;
    for (const include of shape.include) {
      const [source, code, target] = include.split(':');
      if (source !== focus.resourceType || !code) continue;
      const sp = getSearchParameter(source, code);
      if (!sp?.expression || sp.type !== 'reference') continue;
      let values: unknown[];
      try {
        values = evalFhirPath(sp.expression, focus);
      } catch {
        continue;
      }
      for (const v of values) {
        const ref = (v as { reference?: unknown } | undefined)?.reference;
        if (typeof ref !== 'string') continue;
        const m = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(ref);
        if (!m || ref.startsWith('#') || (/^[a-z]+:/i.test(ref) && !ref.includes('/fhir/'))) continue;
        if (target && m[1] !== target) continue;
        const rel = `${m[1]}/${m[2]}`;
        if (rel !== self && !out.includes(rel)) out.push(rel);
      }
    }
  }
  return out;
}
