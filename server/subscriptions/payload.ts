// Batched reads of notification payloads: the focus resources at their event's version and the
// current version of additional-context resources, each in one query for a whole set of events
// (never one read per event).
import type { Resource } from '@medplum/fhirtypes';
import type { Queryable } from '../db/pool.ts';

export interface VersionKey {
  type: string;
  id: string;
  version: number;
}

export const versionKey = (type: string, id: string, version: number): string => `${type}/${id}/_history/${version}`;

/** Resources at exact versions, by versionKey(); deletions and unknown versions are absent. */
export async function readVersions(db: Queryable, keys: VersionKey[]): Promise<Map<string, Resource>> {
  const out = new Map<string, Resource>();
  const unique = new Map(keys.map((k) => [versionKey(k.type, k.id, k.version), k]));
  if (unique.size === 0) return out;
  const list = [...unique.values()];
  const res = await db.query<{ t: string; i: string; v: number; json: string }>({
    name: 'subscriptions:read-versions',
    text: `SELECT h.resource_type AS t, h.id AS i, h.version AS v, h.content::text AS json
     FROM unnest($1::text[], $2::text[], $3::int[]) AS k(t, i, v)
     JOIN resource_history h ON h.resource_type = k.t AND h.id = k.i AND h.version = k.v
     WHERE NOT h.deleted AND h.content IS NOT NULL`,
    values: [list.map((k) => k.type), list.map((k) => k.id), list.map((k) => k.version)],
  });
  for (const row of res.rows) out.set(versionKey(row.t, row.i, row.v), JSON.parse(row.json) as Resource);
  return out;
}

/** The current versions of "Type/id" references, by reference; deleted and unknown ones are absent. */
export async function readCurrent(db: Queryable, refs: Iterable<string>): Promise<Map<string, Resource>> {
  const out = new Map<string, Resource>();
  const pairs = [...new Set(refs)].map((r) => r.split('/')).filter((p) => p.length === 2);
  if (pairs.length === 0) return out;
  const res = await db.query<{ t: string; i: string; deleted: boolean; json: string | null }>(
    `SELECT DISTINCT ON (h.resource_type, h.id) h.resource_type AS t, h.id AS i, h.deleted, h.content::text AS json
     FROM unnest($1::text[], $2::text[]) AS k(t, i)
     JOIN resource_history h ON h.resource_type = k.t AND h.id = k.i
     ORDER BY h.resource_type, h.id, h.version DESC`,
    [pairs.map((p) => p[0]), pairs.map((p) => p[1])],
  );
  for (const row of res.rows) if (!row.deleted && row.json) out.set(`${row.t}/${row.i}`, JSON.parse(row.json) as Resource);
  return out;
}
