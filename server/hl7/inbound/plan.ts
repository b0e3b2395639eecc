// What an inbound message maps to, before anything is written: a FHIR transaction Bundle whose
// entries upsert by business identifier (conditional update PUT Type?identifier=...) or create,
// plus the ordering keys that protect newer data from older messages. The same plan is the dry
// run answer of POST /hl7/v2 and what the processor runs through the FHIR engine.
import type { AckError } from '../ack.ts';
import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, Identifier, Resource } from '@medplum/fhirtypes';
import { lockKey } from '../../fhir/interactions/conditional.ts';
import { tokenParam } from './datatypes.ts';

export interface PlannedEntry {
  entry: BundleEntry;
  /** Out-of-order protection key (Type|system|value) for upserts; undefined for plain creates. */
  clockKey?: string;
  /** Criteria of the conditional update ("identifier=..."), reused when the update is stale. */
  criteria?: string;
  /** The business identifier an upsert matches on. */
  key?: Identifier;
  /** Created when missing, never updated (ensure): state other actors own after creation. */
  createOnly?: boolean;
}

/** A merge (ADT^A40) to apply after the bundle: the survivor is the bundle entry `survivor`. */
export interface MergeRequest {
  survivor: string;
  /** MRG-1 identifiers of the patient record that is merged away. */
  prior: Identifier[];
}

export class MessagePlan {
  readonly entries: PlannedEntry[] = [];
  /** Event time (EVN-2, else MSH-7) in epoch ms, for out-of-order checks. */
  eventTime?: number;
  merge?: MergeRequest;
  /** Notes for the message store / ACK (e.g. what was skipped). */
  readonly notes: string[] = [];
  /** Content left out but not refused (a field that is no valid date): ERR of severity W on the ACK AA. */
  readonly warnings: AckError[] = [];

  /**
   * Adds an upsert of resource keyed by identifier: a conditional update that creates the
   * resource if no match exists. The identifier is added to the resource if missing.
   * Returns the entry's fullUrl (urn:uuid) for references from other entries.
   */
  upsert<T extends Resource>(resource: T, key: Identifier): string {
    const existing = this.entries.find((e) => e.clockKey === clockKey(resource.resourceType, key));
    if (existing) {
      // Same business key twice in one message (a repeated segment): the later one wins.
      existing.entry.resource = resource;
      return existing.entry.fullUrl as string;
    }
    const fullUrl = `urn:uuid:${randomUUID()}`;
    const criteria = `identifier=${encodeURIComponent(tokenParam(key.system, key.value as string))}`;
    this.entries.push({
      entry: { fullUrl, resource, request: { method: 'PUT', url: `${resource.resourceType}?${criteria}` } },
      clockKey: clockKey(resource.resourceType, key),
      criteria,
      key: { system: key.system, value: key.value },
    });
    return fullUrl;
  }

  /**
   * Adds a resource created only if none holds key yet (a conditional create): for resources
   * whose later state belongs to someone else, like the Task of a received referral order,
   * which a resent order must not reset. Returns the entry's fullUrl.
   */
  ensure<T extends Resource>(resource: T, key: Identifier): string {
    const fullUrl = this.upsert(resource, key);
    const entry = this.entries.find((e) => e.entry.fullUrl === fullUrl) as PlannedEntry;
    entry.createOnly = true;
    entry.clockKey = undefined;
    return fullUrl;
  }

  /** Adds a plain create (nothing to match it on). */
  create<T extends Resource>(resource: T): string {
    const fullUrl = `urn:uuid:${randomUUID()}`;
    this.entries.push({ entry: { fullUrl, resource, request: { method: 'POST', url: resource.resourceType } } });
    return fullUrl;
  }

  /** The transaction Bundle. stale = clock keys whose stored event is newer than this message. */
  bundle(stale: Set<string> = new Set()): Bundle {
    return {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: this.entries.map((p) => {
        if (p.createOnly || (p.clockKey && stale.has(p.clockKey))) {
          // Older than what we have: only create it if it does not exist yet (references resolve).
          return { ...p.entry, request: { method: 'POST', url: p.entry.resource?.resourceType as string, ifNoneExist: p.criteria } };
        }
        return p.entry;
      }),
    };
  }

  get clockKeys(): string[] {
    return this.entries.map((e) => e.clockKey).filter((k): k is string => k !== undefined);
  }

  /**
   * The advisory lock texts of the upserts: the same ones a REST conditional update on the same
   * identifier takes (fhir/interactions/conditional.ts), so the two never create twins.
   */
  get lockKeys(): string[] {
    return this.entries.filter((e) => e.criteria).map((e) => lockKey(e.entry.resource?.resourceType as string, [...new URLSearchParams(e.criteria)]));
  }
}

export function clockKey(type: string, id: Identifier): string {
  return `${type}|${id.system ?? ''}|${id.value ?? ''}`;
}

/** Adds key to resource.identifier unless an equal one is there. */
export function withIdentifier<T extends Resource & { identifier?: Identifier[] }>(resource: T, key: Identifier): T {
  const list = resource.identifier ?? [];
  if (!list.some((i) => i.system === key.system && i.value === key.value)) list.unshift(key);
  resource.identifier = list;
  return resource;
}
