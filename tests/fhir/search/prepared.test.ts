// Searches run as prepared statements (parsed once per connection, and PostgreSQL may keep one
// plan for all values), except those whose best plan depends on the value: a string prefix or
// :contains pattern (LIKE), where only a known pattern can use the index. Checked on the
// connection itself (pg_prepared_statements), with the answers right for every value.
// PostgreSQL only: the embedded PGlite shares one session between connections, so it runs
// every statement unnamed (DbOptions.namedStatements).
import type { Patient } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type Db } from '../../../server/db/pool.ts';
import { freshDb, ids, run, type TestDb } from './helpers.ts';

const MRN = 'http://hospital.example.org/mrn';
const FAMILIES = ['Smith', 'Smithers', 'Jones', 'Johnson', 'Brown'];
let t: TestDb;
let one: Db; // a single connection: its prepared statements are the ones it has run

beforeAll(async () => {
  t = await freshDb();
  for (let i = 0; i < 20; i++) {
    await t.repo.update<Patient>({
      resourceType: 'Patient',
      id: `p${i}`,
      identifier: [{ system: MRN, value: `M${i}` }],
      name: [{ family: FAMILIES[i % FAMILIES.length] }],
      gender: i % 2 ? 'female' : 'male',
    });
  }
  one = createDb(t.db.pool.options.connectionString as string, 1);
});
afterAll(async () => {
  await one?.close();
  await t?.drop();
});

type PreparedRow = { statement: string; generic_plans: string; custom_plans: string };

/** The statements prepared on `one`'s connection (planned as usual), or on its fixed-plan one. */
async function prepared(fragment: string, on: 'usual' | 'fixed' | 'both' = 'both'): Promise<PreparedRow[]> {
  const sql = 'SELECT statement, generic_plans::text, custom_plans::text FROM pg_prepared_statements WHERE statement LIKE $1';
  const usual = on === 'fixed' ? [] : (await one.query<PreparedRow>(sql, [`%${fragment}%`])).rows;
  const fixed = on === 'usual' ? [] : (await one.queryFixedPlan<PreparedRow>(sql, [`%${fragment}%`])).rows;
  return [...usual, ...fixed];
}

describe.skipIf(!process.env.DATABASE_URL)('prepared search statements', () => {
  it('a token search is prepared once and answers each value right, however many times it runs', async () => {
    for (let round = 0; round < 3; round++) {
      for (const i of [0, 7, 13, 19]) {
        expect(ids(await run(one, `Patient?identifier=${encodeURIComponent(`${MRN}|M${i}`)}`))).toEqual([`p${i}`]);
      }
    }
    expect(ids(await run(one, `Patient?identifier=${encodeURIComponent(`${MRN}|none`)}`))).toEqual([]);
    const statements = await prepared("param = $4 AND (x1.system = $1 AND x1.code = $2)");
    expect(statements).toHaveLength(1);
    expect(Number(statements[0].generic_plans) + Number(statements[0].custom_plans)).toBe(13);
  });

  it('a search whose plan cannot depend on its values runs with one plan for all of them', async () => {
    // identifier=system|code: one index condition, nothing else to filter by.
    for (const i of [1, 2, 3, 4, 5, 6, 7]) {
      expect(ids(await run(one, `Patient?identifier=${encodeURIComponent(`${MRN}|M${i}`)}&_count=7`))).toEqual([`p${i}`]);
    }
    const fixed = await prepared('LIMIT 8)', 'fixed');
    expect(fixed).toHaveLength(1);
    expect(fixed[0]).toMatchObject({ generic_plans: '7', custom_plans: '0' });
    expect(await prepared('LIMIT 8)', 'usual')).toEqual([]);
  });

  it('with a range, a condition left to filter by or a token of few values, PostgreSQL plans for the values as it sees fit', async () => {
    // A date range alone: how many rows it matches decides between plans.
    await run(one, 'Patient?birthdate=ge2000&_count=9');
    // A second condition filters the driver's rows: its selectivity may too.
    await run(one, `Patient?identifier=${encodeURIComponent(`${MRN}|M3`)}&gender=female&_count=9`);
    // A token of few values: one may be most rows, another none.
    await run(one, 'Patient?gender=female&_count=9');
    expect(await prepared('LIMIT 10)', 'fixed')).toEqual([]);
    expect(await prepared('LIMIT 10)', 'usual')).toHaveLength(3);
  });

  it('the page size is part of the statement text, not a bind parameter (an unknown LIMIT rules out one plan for all values)', async () => {
    await run(one, 'Patient?gender=female&_count=3');
    const statements = await prepared('idx_token');
    expect(statements.some((s) => /LIMIT 4\b/.test(s.statement))).toBe(true);
  });

  it('a string prefix search is planned for its value each time: never prepared', async () => {
    for (const prefix of ['smi', 'jo', 'b', 'smith']) {
      const expected = FAMILIES.map((f, k) => [f, k] as const).filter(([f]) => f.toLowerCase().startsWith(prefix));
      const want = Array.from({ length: 20 }, (_, i) => i).filter((i) => expected.some(([, k]) => i % FAMILIES.length === k));
      expect(ids(await run(one, `Patient?name=${prefix}`)).sort()).toEqual(want.map((i) => `p${i}`).sort());
    }
    expect(await prepared('idx_string')).toEqual([]);
    // Nor with a token beside it: one condition planned by value makes the whole statement so.
    await run(one, 'Patient?name=smi&gender=female');
    expect(await prepared('idx_string')).toEqual([]);
  });

  it('an exact string match has no pattern: it is prepared like a token', async () => {
    expect(ids(await run(one, 'Patient?name:exact=Jones')).sort()).toEqual(['p12', 'p17', 'p2', 'p7']);
    expect(await prepared('x1.exact = $1')).toHaveLength(1);
  });
});
