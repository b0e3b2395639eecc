// Writes a message's plan through the repository in a fixed, small number of statements instead
// of running its transaction Bundle entry by entry: one statement matches every upsert's
// business identifier, one writes every resource (each validated, versioned, with history,
// outbox and index rows, exactly as the engine's create / conditional update would). The caller
// holds the conditional locks (taken with the message's clock rows) before this runs.
// Resource types with write hooks (Subscription) are not something a v2 message maps to; a plan
// that had one would go through the engine's transaction instead (writePlanViaEngine).
import { randomUUID } from 'node:crypto';
import type { Bundle, Resource } from '@medplum/fhirtypes';
import { multipleMatches } from '../../fhir/outcome.ts';
import { Repository, type BatchWrite, type PreparedBatch } from '../../fhir/repository.ts';
import { hasWriteHook, route } from '../../fhir/router.ts';
import type { FhirContext } from '../../fhir/request.ts';
import type { MessagePlan } from './plan.ts';
import type { Queryable } from '../../db/pool.ts';
import * as store from '../store.ts';

/** Per upsert of a plan: the ids of the stored resources holding its identifier (under the message's locks). */
export type Matches = string[][];

/**
 * The stored resources holding each upsert's business identifier, for several plans (a group's)
 * in one statement, sent at once.
 */
export async function matchPlans(repo: Repository, plans: MessagePlan[]): Promise<Matches[]> {
  const upserts = plans.map((plan) => plan.entries.filter((p) => p.key));
  const found = await repo.matchIdentifiers(
    upserts.flat().map((p) => ({ type: p.entry.resource?.resourceType as string, system: p.key?.system, value: p.key?.value as string })),
  );
  let offset = 0;
  return upserts.map((u) => found.slice(offset, (offset += u.length)));
}

/** matchPlans for one plan. */
export async function matchPlan(repo: Repository, plan: MessagePlan): Promise<Matches> {
  return (await matchPlans(repo, [plan]))[0];
}

/** A plan's writes (batchFor) and where each entry ends up. */
export interface PlanWrites {
  writes: BatchWrite[];
  /** Per plan entry: the stored resource it leaves as it is, or the index of its write. */
  entries: ({ kept: store.ProducedRef } | { write: number })[];
}

/** The same, validated and ready to send (prepareBatch), its writes from `offset` on in the batch. */
export interface PlanBatch extends PlanWrites {
  batch: PreparedBatch;
  offset: number;
}

/**
 * The plan's writes given the upserts' matches, validated (a refusal throws here, before
 * anything is sent); undefined when two entries resolved to the same stored resource (two
 * identifiers of one record), which one statement cannot write twice: the caller then runs the
 * plan entry by entry through the engine.
 */
export function writesFor(plan: MessagePlan, stale: Set<string>, matches: Matches): PlanWrites | undefined {
  const upserts = plan.entries.filter((p) => p.key);
  const matchOf = new Map(upserts.map((p, i) => [p, matches[i]]));
  const ids = new Map<string, string>();
  const entries: PlanBatch['entries'] = [];
  const writes: BatchWrite[] = [];
  for (const p of plan.entries) {
    // A copy (ids and references are set on it; the plan stays as mapped): JSON, as it is stored.
    const resource = JSON.parse(JSON.stringify(p.entry.resource)) as Resource;
    const type = resource.resourceType;
    const found = matchOf.get(p) ?? [];
    if (found.length > 1) {
      throw multipleMatches(`${type}?${decodeURIComponent(p.criteria ?? '')} matched more than one ${type}; the message cannot say which to update`);
    }
    const match = found[0];
    if (match && (p.createOnly || (p.clockKey && stale.has(p.clockKey)))) {
      // Create-only, or older than what is stored: keep the stored resource (it only needed to exist).
      entries.push({ kept: { type, id: match } });
    } else {
      resource.id = match ?? randomUUID();
      entries.push({ write: writes.length });
      writes.push({ resource, kind: match ? 'upsert' : 'insert' });
    }
    if (p.entry.fullUrl) ids.set(p.entry.fullUrl, `${type}/${match ?? resource.id}`);
  }
  const targets = new Set(writes.map((w) => `${w.resource.resourceType}/${w.resource.id}`));
  if (targets.size < writes.length) return undefined;
  for (const w of writes) rewriteReferences(w.resource, ids);
  return { writes, entries };
}

/**
 * The writes of several plans (of messages that share no resource) as one validated statement:
 * a refusal of any throws here, before anything is sent.
 */
export function prepareTogether(repo: Repository, plans: PlanWrites[]): PlanBatch[] {
  const batch = repo.prepareBatch(plans.flatMap((p) => p.writes));
  let offset = 0;
  return plans.map((p) => {
    const b = { ...p, batch, offset };
    offset += p.writes.length;
    return b;
  });
}

/** writesFor and prepareTogether for one plan. */
export function batchFor(repo: Repository, plan: MessagePlan, stale: Set<string>, matches: Matches): PlanBatch | undefined {
  const w = writesFor(plan, stale, matches);
  return w && prepareTogether(repo, [w])[0];
}

/** What a plan's entries produced, for the message's `resources` list (store.ProducedRef). */
export function producedOf(b: PlanBatch): store.ProducedRef[] {
  return b.entries.map((e) => {
    if ('kept' in e) return e.kept;
    const r = b.batch.resources[b.offset + e.write];
    return { type: r.resourceType, id: r.id as string, version: b.writes[e.write].kind === 'insert' ? 1 : undefined };
  });
}

/** What a message locks and clocks before it writes (store.reserveAndClaim / claimKeys). */
export function claimOf(plan: MessagePlan): store.Claim {
  return { lockKeys: plan.lockKeys, clockKeys: plan.clockKeys, eventMs: plan.eventTime };
}

/** The note of a message that met newer data: the keys it did not overwrite. */
export function staleNote(stale: Set<string>): string[] {
  return stale.size ? [`Newer data already applied for ${[...stale].map((k) => k.split('|')[0]).join(', ')}: not overwritten`] : [];
}

/** A message whose writes are prepared (one of several sharing one PreparedBatch), with its row. */
export interface ReadyMessage {
  id: string;
  row: store.NewMessage;
  outcome: store.Outcome;
  planned: PlanBatch;
}

/**
 * The second round trip of the original-mode path, for one message or a group: the prepared
 * writes (validated: nothing can be refused any more), the messages' rows (reading the written
 * versions back) and COMMIT, sent together. Returns each message's stored `resources` list. A
 * failure of the write is thrown as writeError makes it; one of a message row (a resend's unique
 * key) as it is. Either rolls back everything.
 */
export async function writeAndCommit(
  client: Queryable,
  commitWith: <T>(last: Promise<T>) => Promise<T>,
  repo: Repository,
  messages: ReadyMessage[],
  writeError: (e: unknown) => unknown = (e) => e,
): Promise<string[][]> {
  const sent = repo.sendBatch(messages[0].planned.batch);
  const committed = commitWith(store.insertFinished(client, messages.map((m) => ({ id: m.id, row: m.row, outcome: m.outcome, produced: producedOf(m.planned) }))));
  try {
    await sent;
  } catch (e) {
    await committed.catch(() => {});
    throw writeError(e);
  }
  return committed;
}

/** matchPlan, batchFor and the write, one round trip after another (see process.ts for the pipelined form). */
export async function writePlanBatched(repo: Repository, plan: MessagePlan, stale: Set<string>): Promise<string[] | undefined> {
  const b = batchFor(repo, plan, stale, await matchPlan(repo, plan));
  if (!b) return undefined;
  await repo.sendBatch(b.batch);
  return locationsOf(repo, b);
}

/**
 * Type/id/_history/version of every entry of a sent batch, in plan order: the written ones from
 * the write's answer, the kept ones (rare: found and left as they were) read in one statement.
 */
async function locationsOf(repo: Repository, b: PlanBatch): Promise<string[]> {
  const kept = b.entries.flatMap((e) => ('kept' in e ? [e.kept] : []));
  const locations = kept.length ? await repo.currentLocations(kept) : [];
  let k = 0;
  return b.entries.map((e) => {
    if ('kept' in e) return locations[k++] ?? '';
    const r = b.batch.resources[b.offset + e.write];
    return `${r.resourceType}/${r.id}/_history/${r.meta?.versionId}`;
  });
}

/**
 * True when the plan's writes can go as one statement after its claim (batchFor), alone or in
 * a group: no type with a write hook, no A40 merge (which reads and writes more).
 */
export function writableAtOnce(plan: MessagePlan): boolean {
  return batchable(plan) && !plan.merge;
}

/** True when the plan can take the batched path (no type with a write hook). */
export function batchable(plan: MessagePlan): boolean {
  return plan.entries.every((p) => !hasWriteHook(p.entry.resource?.resourceType as string));
}

/** The plan as a transaction Bundle through the engine (the general path). */
export async function writePlanViaEngine(ctx: FhirContext, plan: MessagePlan, stale: Set<string>): Promise<string[]> {
  const res = await route(ctx, { method: 'POST', path: '', query: [], headers: {}, body: plan.bundle(stale) });
  return ((res.body as Bundle).entry ?? []).map((e) => e.response?.location ?? '');
}

/** Replaces every reference to a planned entry's fullUrl (urn:uuid) with its Type/id. */
function rewriteReferences(node: unknown, ids: Map<string, string>): void {
  if (Array.isArray(node)) {
    for (const item of node) rewriteReferences(item, ids);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const obj = node as Record<string, unknown>;
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'reference' && typeof v === 'string') {
      const target = ids.get(v);
      if (target) obj[k] = target;
    } else if (typeof v === 'object') rewriteReferences(v, ids);
  }
}
