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
  close(): Promise<void>;
  readonly pool: pg.Pool;
}

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
  return {
    pool,
    query: (sql, params) => pool.query(prepare(sql) as string, params as unknown[]),
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
    close: () => pool.end(),
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

// Hot statements (writes, the HL7 v2 path) take a few fixed shapes; each distinct text gets a
// stable name so PostgreSQL parses, analyzes and plans it once per connection rather than on
// every call (where DbOptions.namedStatements allows names).
const statementNames = new Map<string, string>();

/** A stable prepared-statement name for a statement text. */
export function statementName(text: string): string {
  let name = statementNames.get(text);
  if (!name) {
    name = `w${statementNames.size + 1}`;
    statementNames.set(text, name);
  }
  return name;
}

/**
 * Searches take many more shapes (each combination of parameters, modifiers and value counts is
 * its own text), so their names come from a bounded registry: the first SEARCH_STATEMENTS
 * distinct texts are prepared (each costs memory in every connection that runs it), later ones
 * run unnamed. Undefined: run it unnamed.
 */
const SEARCH_STATEMENTS = 200;
const searchNames = new Map<string, string>();
export function searchStatementName(text: string): string | undefined {
  let name = searchNames.get(text);
  if (!name && searchNames.size < SEARCH_STATEMENTS) {
    name = `s${searchNames.size + 1}`;
    searchNames.set(text, name);
  }
  return name;
}
