// Shared setup for the search tests: a fresh PostgreSQL database per test file (migrated), a
// Repository to write with, and a small query helper.
import type { Resource } from '@medplum/fhirtypes';
import { afterAll, beforeAll } from 'vitest';
import { migrate } from '../../../server/db/migrate.ts';
import { createDb, type Db, type Queryable } from '../../../server/db/pool.ts';
import { loadDefinitions } from '../../../server/fhir/definitions.ts';
import { Repository } from '../../../server/fhir/repository.ts';
import { search, type SearchOptions } from '../../../server/fhir/search/search.ts';
import { createTestDatabase } from '../../support/db.ts';

export const FHIR_BASE = 'http://test.local/fhir';

export interface TestDb {
  db: Db;
  repo: Repository;
  drop(): Promise<void>;
}

/** A fresh migrated database (on DATABASE_URL's server, or an in-memory PGlite without it). */
export async function freshDb(): Promise<TestDb> {
  loadDefinitions();
  const database = await createTestDatabase();
  await migrate(database.connectionString);
  const db = createDb(database.connectionString, database.embedded ? 1 : 4, { namedStatements: !database.embedded });
  const repo = new Repository(db, { baseUrl: FHIR_BASE }, db);
  return {
    db,
    repo,
    async drop() {
      await db.close();
      await database.drop();
    },
  };
}

/**
 * A fresh database for the test file, loaded with the fixtures (each written as an update at its
 * id) before the file's tests and dropped after them. Its db and repo are ready inside tests.
 */
export function loadedDb(fixtures: Resource[]): TestDb {
  let t: TestDb | undefined;
  beforeAll(async () => {
    t = await freshDb();
    for (const r of fixtures) await t.repo.update(r);
  });
  afterAll(async () => {
    await t?.drop();
  });
  const ready = (): TestDb => {
    if (!t) throw new Error('loadedDb: used outside a test');
    return t;
  };
  return {
    get db() {
      return ready().db;
    },
    get repo() {
      return ready().repo;
    },
    drop: () => ready().drop(),
  };
}

export const OPTIONS: SearchOptions = { fhirBase: FHIR_BASE, defaultCount: 100, maxCount: 1000, strict: false };

/** "Patient?name=x&gender=y" -> request parts. */
export function parseQuery(q: string): { resourceType?: string; params: [string, string][] } {
  const [path, query = ''] = q.split('?');
  const params = [...new URLSearchParams(query).entries()] as [string, string][];
  return { resourceType: path || undefined, params };
}

export interface BundleJson {
  total?: number;
  link?: { relation: string; url: string }[];
  entry?: { fullUrl?: string; resource: { resourceType: string; id: string; [k: string]: unknown }; search: { mode: string } }[];
}

export async function run(db: Db, q: string, opts: Partial<SearchOptions> = {}): Promise<BundleJson> {
  const text = await search(db, parseQuery(q), { ...OPTIONS, ...opts });
  return JSON.parse(text) as BundleJson;
}

/** Runs a search and also returns the SQL statements it sent, in order. */
export async function searchSql(db: Db, q: string): Promise<{ sql: string[]; bundle: BundleJson }> {
  const sql: string[] = [];
  const spy: Queryable = {
    query: (statement, values) => {
      sql.push(typeof statement === 'string' ? statement : statement.text);
      return db.query(statement, values);
    },
  };
  const bundle = JSON.parse(await search(spy, parseQuery(q), OPTIONS)) as BundleJson;
  return { sql, bundle };
}

export function ids(b: BundleJson, mode = 'match'): string[] {
  return (b.entry ?? []).filter((e) => e.search.mode === mode).map((e) => e.resource.id);
}
