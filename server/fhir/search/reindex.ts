// Recomputes the search index rows of stored resources (after SearchParameters or the index
// function change): one type or all, in batches of `batchSize` resources, each batch one
// transaction that locks its rows (FOR UPDATE) so a concurrent write cannot be overwritten with
// stale index rows.
import type { Resource } from '@medplum/fhirtypes';
import type { Db, Queryable } from '../../db/pool.ts';
import { isResourceType, loadDefinitions } from '../definitions.ts';
import { INDEX_TABLES, indexRowsFor, resetIndexers } from './index-rows.ts';

export interface ReindexOptions {
  /** One resource type; all types when absent. */
  resourceType?: string;
  /** FHIR base URL, so absolute references to this server index as local ones. */
  baseUrl?: string;
  batchSize?: number;
  onProgress?: (resourceType: string, done: number) => void;
}

interface Column {
  name: string;
  sqlType: string;
}

/** Columns of each idx_* table (besides resource_type, resource_id), read from the database. */
async function indexColumns(db: Queryable): Promise<Map<string, Column[]>> {
  const res = await db.query<{ table_name: string; column_name: string; data_type: string }>(
    `SELECT table_name, column_name, data_type FROM information_schema.columns
     WHERE table_schema = current_schema() AND table_name = ANY($1::text[]) AND is_generated = 'NEVER' ORDER BY ordinal_position`,
    [INDEX_TABLES.map((t) => `idx_${t}`)],
  );
  const out = new Map<string, Column[]>();
  for (const r of res.rows) {
    // Generated columns (idx_composite.key1) are PostgreSQL's to fill.
    if (r.column_name === 'resource_type' || r.column_name === 'resource_id') continue;
    const list = out.get(r.table_name) ?? [];
    list.push({ name: r.column_name, sqlType: r.data_type === 'timestamp with time zone' ? 'timestamptz' : r.data_type });
    out.set(r.table_name, list);
  }
  return out;
}

const snake = (s: string) => s.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());

/** Returns the number of resources reindexed. */
export async function reindex(db: Db, options: ReindexOptions = {}): Promise<number> {
  const types = options.resourceType ? [options.resourceType] : loadDefinitions();
  for (const t of types) if (!isResourceType(t)) throw new Error(`Unknown resource type "${t}"`);
  resetIndexers();
  const columns = await indexColumns(db);
  const batchSize = options.batchSize ?? 500;
  let total = 0;
  for (const type of types) {
    let after = '';
    let done = 0;
    for (;;) {
      const n = await db.transaction(async (tx) => {
        const res = await tx.query<{ id: string; content: Resource }>(
          `SELECT id, content FROM "${type}" WHERE NOT deleted AND id > $1 ORDER BY id LIMIT $2 FOR UPDATE`,
          [after, batchSize],
        );
        if (res.rows.length === 0) return 0;
        const ids = res.rows.map((r) => r.id);
        for (const t of INDEX_TABLES) {
          await tx.query(`DELETE FROM idx_${t} WHERE resource_type = $1 AND resource_id = ANY($2::text[])`, [type, ids]);
        }
        const perTable = new Map<string, Record<string, unknown>[]>();
        for (const r of res.rows) {
          const rows = indexRowsFor(r.content, options.baseUrl);
          for (const t of INDEX_TABLES) {
            const list = perTable.get(t) ?? [];
            for (const row of rows[t] as unknown as Record<string, unknown>[]) {
              const o: Record<string, unknown> = { resource_id: r.id };
              for (const [k, v] of Object.entries(row)) o[snake(k)] = v;
              list.push(o);
            }
            perTable.set(t, list);
          }
        }
        for (const [t, list] of perTable) {
          if (!list.length) continue;
          const cols = columns.get(`idx_${t}`) ?? [];
          const defs = ['resource_id text', ...cols.map((c) => `${c.name} ${c.sqlType}`)].join(', ');
          await tx.query(
            `INSERT INTO idx_${t} (resource_type, resource_id, ${cols.map((c) => c.name).join(', ')})
             SELECT $1, r.resource_id, ${cols.map((c) => `r.${c.name}`).join(', ')} FROM jsonb_to_recordset($2::jsonb) AS r(${defs})`,
            [type, JSON.stringify(list)],
          );
        }
        after = ids[ids.length - 1];
        return ids.length;
      });
      if (n === 0) break;
      done += n;
      options.onProgress?.(type, done);
      if (n < batchSize) break;
    }
    total += done;
  }
  return total;
}
