// Reading a resource together with resources it references, in one SQL statement. A workflow
// change needs the Task, its target department (restriction.recipient) and its ServiceRequest
// (focus); read one after another that is three round trips inside the transaction, and round
// trips are what a busy server waits on (tests/workflow/round-trips.test.ts).
import type { Resource } from '@medplum/fhirtypes';
import { instantSql, type Queryable } from '../db/pool.ts';
import { isResourceType } from './definitions.ts';
import { gone, notFound } from './outcome.ts';
import type { StoredVersion } from './repository.ts';
import { isValidId } from './validate.ts';

/** A reference to follow: the first `type` reference found at the JSON path (dotted, arrays walked). */
export interface Follow {
  path: string;
  type: string;
  /** Lock the referenced row too (FOR UPDATE), when the caller will write it. */
  lock?: boolean;
}

export interface ReadWithOptions {
  /**
   * Lock the resource's row (SELECT ... FOR UPDATE) until the transaction ends: the caller will
   * write its next version, and no concurrent writer can slip in between the read and the write.
   */
  lock?: boolean;
}

export interface ReadWith<T extends Resource> {
  /** The resource itself (current version). */
  stored: StoredVersion;
  resource: T;
  /** Per Follow, the current referenced resource, if there is one and it is not deleted. */
  referenced: (Resource | undefined)[];
}

const statements = new Map<string, string>();

/**
 * Reads type/id (404 if unknown, 410 if deleted) and, in the same statement, the current version
 * of the resource each Follow names (a relative reference `Type/id`, as the server writes them).
 */
export async function readWith<T extends Resource>(db: Queryable, type: string, id: string, follows: Follow[], options: ReadWithOptions = {}): Promise<ReadWith<T>> {
  if (!isResourceType(type)) throw notFound(`Unknown resource type "${type}"`);
  if (!isValidId(id)) throw notFound(`${type}/${id} is not a valid id`);
  for (const f of follows) {
    if (!isResourceType(f.type) || !/^[a-z][A-Za-z]*(\.[a-z][A-Za-z]*)*$/.test(f.path)) throw new TypeError(`bad follow ${f.type} at ${f.path}`);
  }
  const key = `${type}${options.lock ? '!' : ''}|${follows.map((f) => `${f.type}@${f.path}${f.lock ? '!' : ''}`).join(',')}`;
  let text = statements.get(key);
  if (!text) {
    // Each row is its own CTE, so a locking clause can sit on the ones to lock (a UNION cannot take one).
    const cols = (a: string) => `${a}.version, ${instantSql(`${a}.last_updated`)} AS last_updated, ${a}.deleted, ${a}.content::text AS json`;
    const ctes = [`t AS (SELECT version, last_updated, deleted, content FROM "${type}" WHERE id = $1${options.lock ? ' FOR UPDATE' : ''})`];
    const parts = [`SELECT 0 AS k, ${cols('t')} FROM t`];
    follows.forEach((f, i) => {
      // Lax mode walks arrays on the way; the final [*] unwraps a list (recipient) and leaves
      // a single reference (focus) as it is.
      const jsonPath = `$.${f.path.split('.').map((p) => `"${p}"`).join('.')}[*]`;
      ctes.push(`f${i} AS (SELECT r.version, r.last_updated, r.deleted, r.content FROM "${f.type}" r
        WHERE NOT r.deleted AND r.id = (SELECT substring(x->>'reference' from '^${f.type}/([A-Za-z0-9.-]{1,64})$') AS rid
          FROM t, jsonb_path_query(t.content, '${jsonPath}') AS x WHERE x->>'reference' LIKE '${f.type}/%' LIMIT 1)${f.lock ? ' FOR UPDATE OF r' : ''})`);
      parts.push(`SELECT ${i + 1}, ${cols(`f${i}`)} FROM f${i}`);
    });
    text = `WITH ${ctes.join(',\n')}\n${parts.join('\nUNION ALL\n')}`;
    statements.set(key, text);
  }
  const res = await db.query<{ k: number; version: number; last_updated: string; deleted: boolean; json: string }>({
    name: `readwith${[...statements.keys()].indexOf(key)}`,
    text,
    values: [id],
  });
  const own = res.rows.find((r) => r.k === 0);
  if (!own) throw notFound(`${type}/${id} is not known`);
  if (own.deleted) throw gone(`${type}/${id} was deleted`);
  const stored: StoredVersion = { resourceType: type, id, version: own.version, lastUpdated: own.last_updated, deleted: false, json: own.json };
  const referenced = follows.map((_, i) => {
    const row = res.rows.find((r) => r.k === i + 1);
    return row ? (JSON.parse(row.json) as Resource) : undefined;
  });
  return { stored, resource: JSON.parse(own.json) as T, referenced };
}
