// The FHIR repository: the one door through which every resource is read and written, whatever
// came in (REST, a transaction entry, HL7 v2, a workflow job). A write is a single SQL statement
// (current row, history row, index rows, outbox row as data-modifying CTEs), so it is atomic on
// its own and costs one round trip; inside a transaction Bundle it joins the open transaction.
import { randomUUID } from 'node:crypto';
import { getSearchParameters } from '@medplum/core';
import type { Resource } from '@medplum/fhirtypes';
import type pg from 'pg';
import { arrayLiteral, instantSql, preparedStatement, type Db, type Queryable } from '../db/pool.ts';
import { isResourceType } from './definitions.ts';
import { badRequest, gone, notFound, preconditionFailed } from './outcome.ts';
import { hasPairRows, indexRowsFor, type IndexRows } from './search/index-rows.ts';
import { assertValid, isValidId } from './validate.ts';

export type WriteMethod = 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** A stored version as read from the database; json is the stored text, ready to send. */
export interface StoredVersion {
  resourceType: string;
  id: string;
  version: number;
  lastUpdated: string;
  deleted: boolean;
  /** Serialized resource (absent for a deleted version). */
  json?: string;
}

export interface WriteResult<T extends Resource = Resource> {
  resource: T;
  /** true when the write created the resource (201), false when it updated it (200). */
  created: boolean;
}

/** A validated batch of writes, ready to send (Repository.prepareBatch). */
export interface PreparedBatch {
  /** The resources as they will be stored (ids set; versionId / lastUpdated once sent). */
  resources: Resource[];
  statement?: pg.QueryConfig;
}

/** A business identifier a conditional write matches on (Type?identifier=system|value). */
export interface IdentifierKey {
  type: string;
  /** Undefined: the value in any system (a token search without system). */
  system?: string;
  value: string;
}

/** One resource of a batched write (writeBatch): insert at a new id, or upsert at its id. */
export interface BatchWrite {
  resource: Resource;
  kind: 'insert' | 'upsert';
}

export interface RepositoryOptions {
  baseUrl: string;
}

/** Binary payload stored beside the Binary resource. */
export interface BinaryPayload {
  data: Buffer;
}

export class Repository {
  readonly db: Queryable;
  readonly options: RepositoryOptions;
  private readonly root?: Db;

  constructor(db: Queryable, options: RepositoryOptions, root?: Db) {
    this.db = db;
    this.options = options;
    this.root = root;
  }

  /** True when this repository is bound to an open SQL transaction. */
  get inTransaction(): boolean {
    return this.root === undefined;
  }

  /**
   * Runs fn with a repository bound to one SQL transaction (all or nothing). Nested calls reuse
   * the open transaction.
   */
  async transaction<T>(fn: (repo: Repository) => Promise<T>): Promise<T> {
    if (!this.root) return fn(this);
    return this.root.transaction((client) => fn(new Repository(client, this.options)));
  }

  // ---------------------------------------------------------------- reads

  async readVersion(type: string, id: string): Promise<StoredVersion> {
    assertType(type);
    if (!isValidId(id)) throw notFound(`${type}/${id} is not a valid id`);
    const res = await this.db.query<{ version: number; last_updated: string; deleted: boolean; json: string }>(
      {
        name: `read:${type}`,
        text: `SELECT version, ${instantSql('last_updated')} AS last_updated, deleted, content::text AS json FROM "${type}" WHERE id = $1`,
        values: [id],
      },
    );
    const row = res.rows[0];
    if (!row) throw notFound(`${type}/${id} is not known`);
    const stored: StoredVersion = {
      resourceType: type,
      id,
      version: row.version,
      lastUpdated: row.last_updated,
      deleted: row.deleted,
      json: row.deleted ? undefined : row.json,
    };
    return stored;
  }

  /** Current version; 404 if unknown, 410 if deleted. */
  async read(type: string, id: string): Promise<StoredVersion> {
    const v = await this.readVersion(type, id);
    if (v.deleted) throw gone(`${type}/${id} was deleted`);
    return v;
  }

  async readResource<T extends Resource = Resource>(type: string, id: string): Promise<T> {
    return JSON.parse((await this.read(type, id)).json as string) as T;
  }

  async vread(type: string, id: string, versionId: string): Promise<StoredVersion> {
    assertType(type);
    if (!isValidId(id) || !/^\d{1,9}$/.test(versionId)) throw notFound(`${type}/${id}/_history/${versionId} is not known`);
    const res = await this.db.query<{ last_updated: string; deleted: boolean; json: string | null }>(
      `SELECT ${instantSql('last_updated')} AS last_updated, deleted, content::text AS json FROM resource_history
       WHERE resource_type = $1 AND id = $2 AND version = $3`,
      [type, id, Number(versionId)],
    );
    const row = res.rows[0];
    if (!row) throw notFound(`${type}/${id}/_history/${versionId} is not known`);
    if (row.deleted) throw gone(`${type}/${id} version ${versionId} is a deletion`);
    return {
      resourceType: type,
      id,
      version: Number(versionId),
      lastUpdated: row.last_updated,
      deleted: false,
      json: row.json ?? undefined,
    };
  }

  async readBinaryData(id: string, version: number): Promise<Buffer | undefined> {
    const res = await this.db.query<{ data: Buffer }>('SELECT data FROM binary_content WHERE id = $1 AND version = $2', [id, version]);
    return res.rows[0]?.data;
  }

  // ---------------------------------------------------------------- writes

  /** Creates a resource with a new server-assigned id (or the one a transaction assigned). */
  async create<T extends Resource>(resource: T, binary?: BinaryPayload, assignedId?: string): Promise<T> {
    assertType(resource.resourceType);
    const prepared = this.prepare(resource, assignedId ?? randomUUID(), 'POST');
    await this.write('insert', prepared, 'POST', undefined, binary);
    return prepared;
  }

  /**
   * Validates a resource for a create and gives it its id (and provisional meta): the first half
   * of create, for callers that insert many at once with insertPrepared.
   */
  prepareCreate<T extends Resource>(resource: T, assignedId?: string): T {
    assertType(resource.resourceType);
    return this.prepare(resource, assignedId ?? randomUUID(), 'POST');
  }

  /**
   * Inserts prepared new resources (from prepareCreate) with one statement per resource type:
   * the bulk path of transaction Bundles, where a Synthea bundle has hundreds of creates.
   * Sets meta.versionId / meta.lastUpdated on each resource.
   */
  async insertPrepared(resources: Resource[]): Promise<void> {
    const byType = new Map<string, Resource[]>();
    for (const r of resources) {
      const list = byType.get(r.resourceType) ?? [];
      list.push(r);
      byType.set(r.resourceType, list);
    }
    for (const [type, list] of byType) {
      const values: unknown[] = [];
      const param = (v: unknown): string => {
        values.push(v);
        return `$${values.length}`;
      };
      const json = param(JSON.stringify(list));
      const ctes = [
        `t AS (SELECT ${NOW} AS ts)`,
        `up AS (INSERT INTO "${type}" (id, version, last_updated, deleted, content)
          SELECT c->>'id', 1, t.ts, false, wl_stamp(c, 1, t.ts) FROM jsonb_array_elements(${json}::jsonb) AS c, t
          RETURNING id, version, last_updated, content, true AS inserted)`,
        historyCte(type, 'POST', false),
        outboxCte(type, false),
        ...this.indexCtes(list, param, 'up'),
      ];
      const text = `WITH ${ctes.join(',\n')}\nSELECT id, version, ${instantSql('last_updated')} AS last_updated FROM up`;
      const res = await this.db.query<{ id: string; version: number; last_updated: string }>(preparedStatement(text, values));
      const stamped = new Map(res.rows.map((r) => [r.id, r]));
      for (const r of list) {
        const row = stamped.get(r.id as string);
        if (row && r.meta) {
          r.meta.versionId = String(row.version);
          r.meta.lastUpdated = row.last_updated;
        }
      }
    }
  }

  // ---------------------------------------------------------------- batched writes

  /**
   * The current resources holding each business identifier (conditional writes on
   * `identifier=system|value`, matched like the token search does), for many keys in one
   * statement. Callers take the conditional locks first, in an earlier statement of the same
   * transaction, so this statement's snapshot sees whatever a writer holding them committed.
   * Returns, per key, the ids of the distinct matches. Index rows exist only for live resources
   * (search.ts relies on the same), so the index alone answers: no visit of the resource table.
   */
  async matchIdentifiers(keys: IdentifierKey[]): Promise<string[][]> {
    const out = keys.map(() => [] as string[]);
    if (keys.length === 0) return out;
    const values: unknown[] = [];
    const param = (v: unknown): string => {
      values.push(v);
      return `$${values.length}`;
    };
    // One idx_token_lookup probe per key (code and system as plain parameters).
    const parts = keys.map((k, i) => {
      assertType(k.type);
      const system = k.system === undefined ? '' : ` AND x.system = ${param(k.system)}`;
      return `SELECT ${i} AS i, x.resource_id AS id FROM idx_token x
        WHERE x.resource_type = '${k.type}' AND x.param = 'identifier' AND x.code = ${param(k.value)}${system}`;
    });
    const text = parts.join('\nUNION ALL\n');
    // Unnamed: planned for its values on every call. A prepared (generic) plan is kept until the
    // table's next ANALYZE; one made while idx_token was nearly empty (a fresh install's first
    // messages) can scan instead of probing the index, and was measured to double PostgreSQL's
    // CPU per HL7 message within a minute of a fresh start. Planning this one-table statement
    // costs less than the join to the resource table it replaced (pg CPU per 2-key call,
    // measured: 165-200 against 420 us).
    const res = await this.db.query<{ i: number; id: string }>({ text, values });
    for (const row of res.rows) if (!out[row.i].includes(row.id)) out[row.i].push(row.id);
    return out;
  }

  /** The current Type/id/_history/version of each resource, in order (one statement); undefined when unknown. */
  async currentLocations(refs: { type: string; id: string }[]): Promise<(string | undefined)[]> {
    const parts = refs.map((r, i) => `SELECT ${i} AS i, q.l FROM (${locationSql(r.type, `$${i + 1}`)}) q`);
    const res = await this.db.query<{ i: number; l: string }>(parts.join(' UNION ALL '), refs.map((r) => r.id));
    const out: (string | undefined)[] = refs.map(() => undefined);
    for (const row of res.rows) out[row.i] = row.l;
    return out;
  }

  /**
   * Writes several resources of any types in ONE statement, each exactly as create (kind
   * insert, a new id) or update (kind upsert, at its id) would: validated, stamped by the
   * database, with history, outbox and index rows. For callers that already resolved every id
   * under their locks (an HL7 v2 message's resources); one round trip instead of one per resource.
   */
  async writeBatch(items: BatchWrite[]): Promise<WriteResult[]> {
    return this.sendBatch(this.prepareBatch(items));
  }

  /**
   * writeBatch's first half: validates every resource and builds the statement, sending
   * nothing (a refusal throws here). A caller that pipelines (HL7 v2) then sends it with
   * sendBatch and more statements behind it, knowing nothing can be refused any more.
   *
   * The statement has one write per resource type and kind, one history, one outbox and one
   * insert per index table, whatever the number of resources: its text (and PostgreSQL's plan of
   * it) depends only on which types and tables are involved, and each table is opened once per
   * statement (an HL7 v2 group of messages writes many Patients and Encounters at once).
   */
  prepareBatch(items: BatchWrite[]): PreparedBatch {
    if (items.length === 0) return { resources: [] };
    const prepared = items.map((item) => {
      assertType(item.resource.resourceType);
      const id = item.resource.id;
      if (!id || !isValidId(id)) throw badRequest('A batched write needs a valid resource id', [`${item.resource.resourceType}.id`]);
      return this.prepare(item.resource, id, item.kind === 'insert' ? 'POST' : 'PUT');
    });
    const targets = new Set(prepared.map((r) => `${r.resourceType}/${r.id}`));
    if (targets.size < prepared.length) throw badRequest('A batched write names one resource twice');
    const values: unknown[] = [];
    const param = (v: unknown): string => {
      values.push(v);
      return `$${values.length}`;
    };
    // Resources of one type and kind are written together, in order of first appearance.
    const groups = new Map<string, { type: string; kind: BatchWrite['kind']; resources: Resource[] }>();
    items.forEach((item, i) => {
      const key = `${item.resource.resourceType} ${item.kind}`;
      const group = groups.get(key) ?? { type: item.resource.resourceType, kind: item.kind, resources: [] };
      group.resources.push(prepared[i]);
      groups.set(key, group);
    });
    const ctes = [`t AS (SELECT ${NOW} AS ts)`];
    const written: { up: string; type: string; method: WriteMethod }[] = [];
    [...groups.values()].forEach(({ type, kind, resources }, k) => {
      const T = `"${type}"`;
      const up = `up_${k}`;
      const json = param(JSON.stringify(resources));
      if (kind === 'insert') {
        ctes.push(`${up} AS (INSERT INTO ${T} (id, version, last_updated, deleted, content)
          SELECT c->>'id', 1, t.ts, false, wl_stamp(c, 1, t.ts) FROM jsonb_array_elements(${json}::jsonb) AS c, t
          RETURNING id, version, last_updated, content, true AS inserted)`);
      } else {
        ctes.push(`${up} AS (INSERT INTO ${T} AS r (id, version, last_updated, deleted, content)
          SELECT c->>'id', 1, t.ts, false, wl_stamp(c, 1, t.ts) FROM jsonb_array_elements(${json}::jsonb) AS c, t
          ON CONFLICT (id) DO UPDATE SET version = r.version + 1, last_updated = ${NEXT},
            deleted = false, content = wl_stamp(EXCLUDED.content, r.version + 1, ${NEXT})
          RETURNING r.id, r.version, r.last_updated, r.content, (r.xmax = 0) AS inserted)`);
        // The old index rows go (the statement's snapshot does not see the new ones).
        const ids = param(resources.map((r) => r.id));
        for (const table of indexTablesOf(type)) {
          ctes.push(`d_${table}_${k} AS (DELETE FROM idx_${table} WHERE resource_type = '${type}' AND resource_id = ANY(${ids}::text[]))`);
        }
      }
      written.push({ up, type, method: kind === 'insert' ? 'POST' : 'PUT' });
    });
    ctes.push(
      `h AS (INSERT INTO resource_history (resource_type, id, version, last_updated, deleted, method, content)
    ${written.map((w) => `SELECT '${w.type}', id, version, last_updated, false, '${w.method}', content FROM ${w.up}`).join('\n    UNION ALL ')})`,
      `o AS (INSERT INTO outbox (resource_type, resource_id, version, action)
    ${written.map((w) => `SELECT '${w.type}', id, version, CASE WHEN inserted THEN 'create' ELSE 'update' END FROM ${w.up}`).join('\n    UNION ALL ')})`,
      ...this.indexCtes(prepared, param),
    );
    const selects = written.map((w) => `SELECT '${w.type}' AS type, id, version, ${instantSql('last_updated')} AS last_updated, inserted FROM ${w.up}`);
    const text = `WITH ${ctes.join(',\n')}\n${selects.join('\nUNION ALL\n')}`;
    return { resources: prepared, statement: preparedStatement(text, values) };
  }

  /** writeBatch's second half: one statement; sets meta.versionId / lastUpdated on each resource. */
  async sendBatch(batch: PreparedBatch): Promise<WriteResult[]> {
    const prepared = batch.resources;
    if (!batch.statement) return [];
    const res = await this.db.query<{ type: string; id: string; version: number; last_updated: string; inserted: boolean }>(batch.statement);
    const results: WriteResult[] = prepared.map((resource) => ({ resource, created: false }));
    const slot = new Map(prepared.map((r, i) => [`${r.resourceType}/${r.id}`, i]));
    for (const row of res.rows) {
      const r = results[slot.get(`${row.type}/${row.id}`) as number];
      if (r.resource.meta) {
        r.resource.meta.versionId = String(row.version);
        r.resource.meta.lastUpdated = row.last_updated;
      }
      r.created = row.inserted;
    }
    return results;
  }

  /**
   * One INSERT CTE per index table for the index rows of the resources (of any types); with
   * `guard`, only if that CTE wrote a row (a conditional write may write nothing).
   */
  private indexCtes(resources: Resource[], param: (v: unknown) => string, guard?: string): string[] {
    const all = resources.map((r) => ({ type: r.resourceType, id: r.id as string, rows: indexRowsFor(r, this.options.baseUrl) }));
    const oneType = all.every((r) => r.type === all[0].type) ? all[0].type : undefined;
    const ctes: string[] = [];
    for (const table of INDEX_TABLE_NAMES) {
      const types: string[] = [];
      const owners: string[] = [];
      const list: Record<string, unknown>[] = [];
      for (const { type, id, rows } of all) {
        for (const row of rows[table] as unknown as Record<string, unknown>[]) {
          types.push(type);
          owners.push(id);
          list.push(row);
        }
      }
      if (list.length === 0) continue;
      const cols = INDEX_COLUMNS[table];
      const arrays = [
        ...(oneType ? [] : [`${param(arrayLiteral(types))}::text[]`]),
        `${param(arrayLiteral(owners))}::text[]`,
        ...cols.map((c) => param(arrayLiteral(list.map((r) => r[c.field] as string | number | null))) + `::${c.sqlType}[]`),
      ];
      ctes.push(`i_${table} AS (INSERT INTO idx_${table} (resource_type, resource_id, ${cols.map((c) => c.column).join(', ')})
        SELECT ${oneType ? `'${oneType}', ` : ''}u.* FROM unnest(${arrays.join(', ')}) AS u${guard ? ` WHERE EXISTS (SELECT 1 FROM ${guard})` : ''})`);
    }
    return ctes;
  }

  /**
   * Updates (or, with a new client id, creates) resource.id. With ifMatch, only if the current
   * version is that one (412 otherwise); concurrent writers serialise on the row lock, so exactly
   * one of two updates with the same If-Match wins.
   */
  async update<T extends Resource>(
    resource: T,
    options: { ifMatch?: number; method?: WriteMethod; binary?: BinaryPayload } = {},
  ): Promise<WriteResult<T>> {
    assertType(resource.resourceType);
    const id = resource.id;
    if (!id || !isValidId(id)) throw badRequest('An update needs a valid resource id', [`${resource.resourceType}.id`]);
    const method = options.method ?? 'PUT';
    const prepared = this.prepare(resource, id, method);
    if (options.ifMatch !== undefined) {
      const result = await this.write('update-if-match', prepared, method, options.ifMatch, options.binary);
      if (!result) {
        const current = await this.readVersion(resource.resourceType, id).catch(() => undefined);
        if (!current) throw notFound(`${resource.resourceType}/${id} is not known`);
        throw preconditionFailed(
          `If-Match version ${options.ifMatch} does not match the current version ${current.version} of ${resource.resourceType}/${id}`,
        );
      }
      return { resource: prepared, created: false };
    }
    const result = await this.write('upsert', prepared, method, undefined, options.binary);
    return { resource: prepared, created: result?.inserted ?? false };
  }

  /**
   * Soft delete: a deletion version goes to history, the index rows go, reads answer 410.
   * Deleting something unknown or already deleted is not an error (R4: idempotent).
   * Returns the new version number, or undefined when nothing was there to delete.
   */
  async delete(type: string, id: string, options: { ifMatch?: number } = {}): Promise<number | undefined> {
    assertType(type);
    if (!isValidId(id)) throw notFound(`${type}/${id} is not a valid id`);
    const stub = { resourceType: type, id, meta: {} } as Resource;
    const result = await this.write('delete', stub, 'DELETE', options.ifMatch);
    if (!result && options.ifMatch !== undefined) {
      const current = await this.readVersion(type, id).catch(() => undefined);
      if (current && !current.deleted) {
        throw preconditionFailed(`If-Match version ${options.ifMatch} does not match the current version ${current.version} of ${type}/${id}`);
      }
    }
    return result?.version;
  }

  /** Sets id, provisional meta.versionId / meta.lastUpdated (the database sets the real ones); validates. */
  private prepare<T extends Resource>(resource: T, id: string, _method: WriteMethod): T {
    const meta = { ...(resource.meta ?? {}) };
    meta.versionId = '1';
    meta.lastUpdated = new Date().toISOString();
    const prepared = { ...resource, id, meta } as T;
    assertValid(prepared);
    return prepared;
  }

  /**
   * The single write statement. kind:
   *  insert          - new id (create)
   *  upsert          - insert or bump the version (update, update-as-create)
   *  update-if-match - bump the version only if it equals expected (If-Match)
   *  delete          - mark deleted, drop index rows (optionally If-Match)
   * Returns the new version and whether a row was inserted, or undefined when no row matched.
   */
  private async write(
    kind: 'insert' | 'upsert' | 'update-if-match' | 'delete',
    resource: Resource,
    method: WriteMethod,
    expected?: number,
    binary?: BinaryPayload,
  ): Promise<{ version: number; last_updated: string; inserted: boolean } | undefined> {
    const type = resource.resourceType;
    const id = resource.id as string;
    const values: unknown[] = [id];
    const param = (v: unknown): string => {
      values.push(v);
      return `$${values.length}`;
    };
    const T = `"${type}"`;
    const ctes: string[] = [];

    if (kind === 'delete') {
      const versionCheck = expected !== undefined ? ` AND r.version = ${param(expected)}` : '';
      ctes.push(`up AS (UPDATE ${T} AS r SET version = r.version + 1, last_updated = ${NEXT}, deleted = true
        WHERE r.id = $1 AND NOT r.deleted${versionCheck}
        RETURNING r.id, r.version, r.last_updated, NULL::jsonb AS content, false AS inserted)`);
    } else {
      const json = `${param(JSON.stringify(resource))}::jsonb`;
      // meta.versionId and meta.lastUpdated of the stored JSON are set by the database
      // (wl_stamp), so concurrent writers never disagree about them.
      const bumped = `wl_stamp(${json}, r.version + 1, ${NEXT})`;
      if (kind === 'insert') {
        ctes.push(`up AS (INSERT INTO ${T} (id, version, last_updated, deleted, content)
          SELECT $1, 1, t.ts, false, wl_stamp(${json}, 1, t.ts) FROM (SELECT ${NOW} AS ts) t
          RETURNING id, version, last_updated, content, true AS inserted)`);
      } else if (kind === 'upsert') {
        ctes.push(`up AS (INSERT INTO ${T} AS r (id, version, last_updated, deleted, content)
          SELECT $1, 1, t.ts, false, wl_stamp(${json}, 1, t.ts) FROM (SELECT ${NOW} AS ts) t
          ON CONFLICT (id) DO UPDATE SET version = r.version + 1, last_updated = ${NEXT},
            deleted = false, content = ${bumped}
          RETURNING r.id, r.version, r.last_updated, r.content, (r.xmax = 0) AS inserted)`);
      } else {
        ctes.push(`up AS (UPDATE ${T} AS r SET version = r.version + 1, last_updated = ${NEXT}, deleted = false,
            content = ${bumped}
          WHERE r.id = $1 AND r.version = ${param(expected)}
          RETURNING r.id, r.version, r.last_updated, r.content, false AS inserted)`);
      }
    }

    const deleted = kind === 'delete';
    ctes.push(historyCte(type, method, deleted), outboxCte(type, deleted));

    // Index rows: the old ones go (unless this is a brand-new id), the new ones come.
    if (kind !== 'insert') {
      for (const table of indexTablesOf(type)) {
        ctes.push(`d_${table} AS (DELETE FROM idx_${table} WHERE resource_type = '${type}' AND resource_id = $1 AND EXISTS (SELECT 1 FROM up))`);
      }
    }
    if (!deleted) ctes.push(...this.indexCtes([resource], param, 'up'));
    if (binary) {
      ctes.push(`b AS (INSERT INTO binary_content (id, version, data) SELECT id, version, ${param(binary.data)} FROM up)`);
    }

    const text = `WITH ${ctes.join(',\n')}\nSELECT version, ${instantSql('last_updated')} AS last_updated, inserted FROM up`;
    const res = await this.db.query<{ version: number; last_updated: string; inserted: boolean }>(preparedStatement(text, values));
    const row = res.rows[0];
    if (!row) return undefined;
    if (resource.meta) {
      resource.meta.versionId = String(row.version);
      resource.meta.lastUpdated = row.last_updated;
    }
    return row;
  }
}

const INDEX_TABLE_NAMES = ['token', 'string', 'date', 'number', 'quantity', 'reference', 'uri', 'geo', 'composite'] as const satisfies readonly (keyof IndexRows)[];

interface IndexColumn {
  field: string;
  column: string;
  sqlType: string;
}

/** How each IndexRows list maps onto its idx_* table. */
const INDEX_COLUMNS: Record<(typeof INDEX_TABLE_NAMES)[number], IndexColumn[]> = {
  token: [
    { field: 'param', column: 'param', sqlType: 'text' },
    { field: 'system', column: 'system', sqlType: 'text' },
    { field: 'code', column: 'code', sqlType: 'text' },
    { field: 'display', column: 'display', sqlType: 'text' },
  ],
  string: [
    { field: 'param', column: 'param', sqlType: 'text' },
    { field: 'value', column: 'value', sqlType: 'text' },
    { field: 'exact', column: 'exact', sqlType: 'text' },
  ],
  date: [
    { field: 'param', column: 'param', sqlType: 'text' },
    { field: 'low', column: 'low', sqlType: 'timestamptz' },
    { field: 'high', column: 'high', sqlType: 'timestamptz' },
  ],
  number: [
    { field: 'param', column: 'param', sqlType: 'text' },
    { field: 'value', column: 'value', sqlType: 'numeric' },
    { field: 'low', column: 'low', sqlType: 'numeric' },
    { field: 'high', column: 'high', sqlType: 'numeric' },
  ],
  quantity: [
    { field: 'param', column: 'param', sqlType: 'text' },
    { field: 'value', column: 'value', sqlType: 'numeric' },
    { field: 'low', column: 'low', sqlType: 'numeric' },
    { field: 'high', column: 'high', sqlType: 'numeric' },
    { field: 'system', column: 'system', sqlType: 'text' },
    { field: 'code', column: 'code', sqlType: 'text' },
    { field: 'unit', column: 'unit', sqlType: 'text' },
  ],
  reference: [
    { field: 'param', column: 'param', sqlType: 'text' },
    { field: 'targetType', column: 'target_type', sqlType: 'text' },
    { field: 'targetId', column: 'target_id', sqlType: 'text' },
    { field: 'targetUrl', column: 'target_url', sqlType: 'text' },
  ],
  uri: [
    { field: 'param', column: 'param', sqlType: 'text' },
    { field: 'value', column: 'value', sqlType: 'text' },
  ],
  geo: [
    { field: 'param', column: 'param', sqlType: 'text' },
    { field: 'lat', column: 'lat', sqlType: 'float8' },
    { field: 'lng', column: 'lng', sqlType: 'float8' },
  ],
  composite: [
    { field: 'param', column: 'param', sqlType: 'text' },
    { field: 'system1', column: 'system1', sqlType: 'text' },
    { field: 'code1', column: 'code1', sqlType: 'text' },
    { field: 'system2', column: 'system2', sqlType: 'text' },
    { field: 'code2', column: 'code2', sqlType: 'text' },
    { field: 'low2', column: 'low2', sqlType: 'numeric' },
    { field: 'high2', column: 'high2', sqlType: 'numeric' },
    { field: 'dlow2', column: 'dlow2', sqlType: 'timestamptz' },
    { field: 'dhigh2', column: 'dhigh2', sqlType: 'timestamptz' },
    { field: 'text2', column: 'text2', sqlType: 'text' },
    { field: 'low3', column: 'low3', sqlType: 'numeric' },
    { field: 'high3', column: 'high3', sqlType: 'numeric' },
  ],
};

const tablesByType = new Map<string, (typeof INDEX_TABLE_NAMES)[number][]>();

/**
 * The index tables a type's search parameters can write to, so an update or delete only
 * clears those (a Patient never has composite or geo rows).
 */
function indexTablesOf(type: string): (typeof INDEX_TABLE_NAMES)[number][] {
  let tables = tablesByType.get(type);
  if (!tables) {
    const kinds = new Set(Object.values(getSearchParameters(type) ?? {}).map((sp) => sp.type));
    tables = INDEX_TABLE_NAMES.filter((t) => {
      if (t === 'geo') return kinds.has('special');
      // reference params also write `:identifier` token rows
      if (t === 'token') return kinds.has('token') || kinds.has('reference');
      // pair rows (search/index-rows.ts INDEX_PAIRS) live in idx_composite
      if (t === 'composite') return kinds.has('composite') || hasPairRows(type);
      return kinds.has(t);
    });
    tablesByType.set(type, tables);
  }
  return tables;
}

// Time comes from the database clock when the row lock is held, never earlier than the previous
// version's, so versions and lastUpdated always agree in order even when concurrent writers
// queue on the same row.
const NOW = `date_trunc('milliseconds', clock_timestamp())`;
const NEXT = `GREATEST(${NOW}, r.last_updated)`;

/** The history row of what `up` wrote. */
function historyCte(type: string, method: WriteMethod, deleted: boolean, n = ''): string {
  return `h${n} AS (INSERT INTO resource_history (resource_type, id, version, last_updated, deleted, method, content)
    SELECT '${type}', id, version, last_updated, ${deleted}, '${method}', content FROM up${n})`;
}

/** The outbox event of what `up` wrote (same transaction: nothing is lost between commit and delivery). */
function outboxCte(type: string, deleted: boolean, n = ''): string {
  const action = deleted ? `'delete'` : `CASE WHEN inserted THEN 'create' ELSE 'update' END`;
  return `o${n} AS (INSERT INTO outbox (resource_type, resource_id, version, action) SELECT '${type}', id, version, ${action} FROM up${n})`;
}

/** SQL selecting `l`, the current Type/id/_history/version of the resource whose id is idSql (a parameter). */
export function locationSql(type: string, idSql: string): string {
  assertType(type);
  return `SELECT '${type}/' || id || '/_history/' || version AS l FROM "${type}" WHERE id = ${idSql}`;
}

function assertType(type: string): void {
  if (!isResourceType(type)) throw notFound(`Unknown resource type "${type}"`);
}
