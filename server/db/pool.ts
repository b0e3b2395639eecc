// The database handle the FHIR engine uses: a pg pool plus a transaction helper. SQL lives only
// in server/fhir and server/db; everything else goes through the repository.
import pg from 'pg';

// Return timestamps and bigints as strings; SQL formats instants itself (see INSTANT_SQL).
pg.types.setTypeParser(pg.types.builtins.TIMESTAMPTZ, (v) => v);
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => v);

/** SQL that renders a timestamptz column as a FHIR instant (UTC, milliseconds). */
export const instantSql = (column: string): string =>
  `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/** Something that runs SQL: the pool, or one client inside a transaction. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string | pg.QueryConfig,
    params?: unknown[],
  ): Promise<pg.QueryResult<R>>;
}

export interface Db extends Queryable {
  /** Runs fn in one SQL transaction on one connection; rolls back if it throws. */
  transaction<T>(fn: (client: Queryable) => Promise<T>): Promise<T>;
  /**
   * Runs a prepared statement whose best plan does not depend on its values with one plan for
   * all of them (see FIXED_PLAN). Where statements are not named (PGlite), the same as query.
   */
  queryFixedPlan: Queryable['query'];
  close(): Promise<void>;
  readonly pool: pg.Pool;
}

/** True for a Db (not a transaction's client): it has the fixed-plan connections. */
export function isDb(q: Queryable): q is Db {
  return typeof (q as Db).queryFixedPlan === 'function';
}

// PostgreSQL plans a prepared statement for its values (a custom plan) until it finds one plan
// for all values (generic) no costlier by its estimates. For some searches it never does although
// the plan is the same either way: a code + date range count is estimated far lower for given
// values than for unknown ones (the date filter's selectivity is multiplied in twice), so every
// call is planned again, a fifth of PostgreSQL's CPU for that search. The search compiler knows
// which statements have one right plan whatever the values (search.ts Source.fixedPlan), and
// runs those on connections where generic plans are forced. A second pool of the same size:
// it opens connections only as such searches come.
const FIXED_PLAN = '-c plan_cache_mode=force_generic_plan';

export interface DbOptions {
  /**
   * Use named (server-side prepared) statements where callers name them. Off for PGlite: all its
   * socket connections share one backend session, so names would collide across connections.
   */
  namedStatements: boolean;
}

export function createDb(connectionString: string, poolSize: number, options: DbOptions = { namedStatements: true }): Db {
  const pool = new pg.Pool({ connectionString, max: poolSize, idleTimeoutMillis: 30_000 });
  // An idle client that errors (server restart) must not crash the process.
  pool.on('error', () => {});
  const prepare = (sql: string | pg.QueryConfig): string | pg.QueryConfig =>
    options.namedStatements || typeof sql === 'string' ? sql : { text: sql.text, values: sql.values };
  let fixed: pg.Pool | undefined;
  const fixedPool = (): pg.Pool => {
    if (!fixed) {
      fixed = new pg.Pool({ connectionString, max: poolSize, idleTimeoutMillis: 30_000, options: FIXED_PLAN });
      fixed.on('error', () => {});
    }
    return fixed;
  };
  return {
    pool,
    query: (sql, params) => pool.query(prepare(sql) as string, params as unknown[]),
    queryFixedPlan: (sql, params) =>
      options.namedStatements ? fixedPool().query(sql as string, params as unknown[]) : pool.query(prepare(sql) as string, params as unknown[]),
    async transaction(fn) {
      const client = await pool.connect();
      const queryable: Queryable = { query: (sql, params) => client.query(prepare(sql) as string, params as unknown[]) };
      try {
        await client.query('BEGIN');
        const result = await fn(queryable);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        client.release();
      }
    },
    close: async () => {
      await Promise.all([pool.end(), fixed?.end()]);
    },
  };
}

/** True when the server at connectionString is PGlite (single backend session, WASM). */
export async function isPGlite(connectionString: string): Promise<boolean> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    const { rows } = await client.query<{ version: string }>('SELECT version()');
    return rows[0].version.includes('PGlite');
  } finally {
    await client.end();
  }
}

// Prepared (named) statements: PostgreSQL parses, analyzes and plans a named statement once per
// connection rather than on every call (where DbOptions.namedStatements allows names). Each
// distinct text gets a stable name, up to a bound per kind; later texts run unnamed (a prepared
// statement costs memory in every connection that has run it). Searches take many shapes (each
// combination of parameters, modifiers and value counts is its own text); writes fewer, but a
// batched write's text follows its resources' index tables and an HL7 v2 group's size.
const LIMITS = { write: 500, search: 200 };
const names = { write: new Map<string, string>(), search: new Map<string, string>() };

/**
 * A PostgreSQL array literal ('{"a","b",NULL}') of strings, numbers or nulls, as pg would send a
 * JS array, without its per-element regular expressions: the index rows of a write are dozens
 * of such values, and building them was a few percent of the HL7 v2 path's CPU.
 */
export function arrayLiteral(values: readonly (string | number | null | undefined)[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += ',';
    const v = values[i];
    if (v === null || v === undefined) {
      out += 'NULL';
      continue;
    }
    const s = String(v);
    out += s.includes('\\') || s.includes('"') ? `"${s.replace(/[\\"]/g, '\\$&')}"` : `"${s}"`;
  }
  return out + '}';
}

/** `text` as a prepared statement: named, unless its kind's registry is full. */
export function preparedStatement(text: string, values: unknown[], kind: 'write' | 'search' = 'write'): pg.QueryConfig {
  const registry = names[kind];
  let name = registry.get(text);
  if (!name && registry.size < LIMITS[kind]) {
    name = `${kind[0]}${registry.size + 1}`;
    registry.set(text, name);
  }
  return name ? { name, text, values } : { text, values };
}
