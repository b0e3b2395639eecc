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
import { Repository, type BatchWrite } from '../../fhir/repository.ts';
import { hasWriteHook, route } from '../../fhir/router.ts';
import type { FhirContext } from '../../fhir/request.ts';
import type { MessagePlan } from './plan.ts';

/**
 * Type/id/_history/version of every entry, in plan order; undefined when two entries resolved
 * to the same stored resource (two identifiers of one record), which one statement cannot
 * write twice: the caller then runs the plan entry by entry through the engine.
 */
export async function writePlanBatched(repo: Repository, plan: MessagePlan, stale: Set<string>): Promise<string[] | undefined> {
  const upserts = plan.entries.filter((p) => p.key);
  const matches = await repo.matchIdentifiers(
    upserts.map((p) => ({ type: p.entry.resource?.resourceType as string, system: p.key?.system, value: p.key?.value as string })),
  );
  const matchOf = new Map(upserts.map((p, i) => [p, matches[i]]));
  const ids = new Map<string, string>();
  const locations: (string | undefined)[] = [];
  const writes: { index: number; write: BatchWrite }[] = [];
  plan.entries.forEach((p, index) => {
    const resource = structuredClone(p.entry.resource as Resource);
    const type = resource.resourceType;
    const found = matchOf.get(p) ?? [];
    if (found.length > 1) {
      throw multipleMatches(`${type}?${decodeURIComponent(p.criteria ?? '')} matched more than one ${type}; the message cannot say which to update`);
    }
    const match = found[0];
    if (match && (p.createOnly || (p.clockKey && stale.has(p.clockKey)))) {
      // Create-only, or older than what is stored: keep the stored resource (it only needed to exist).
      locations[index] = `${type}/${match.id}/_history/${match.version}`;
    } else {
      resource.id = match?.id ?? randomUUID();
      writes.push({ index, write: { resource, kind: match ? 'upsert' : 'insert' } });
    }
    if (p.entry.fullUrl) ids.set(p.entry.fullUrl, `${type}/${match?.id ?? resource.id}`);
  });
  const targets = new Set(writes.map(({ write }) => `${write.resource.resourceType}/${write.resource.id}`));
  if (targets.size < writes.length) return undefined;
  for (const { write } of writes) rewriteReferences(write.resource, ids);
  const results = await repo.writeBatch(writes.map((w) => w.write));
  results.forEach((r, i) => {
    locations[writes[i].index] = `${r.resource.resourceType}/${r.resource.id}/_history/${r.resource.meta?.versionId}`;
  });
  return locations.map((l) => l ?? '');
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
