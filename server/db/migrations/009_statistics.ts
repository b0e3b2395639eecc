// Multi-column statistics of the index tables: functional dependencies only, no MCV lists.
//
// The MCV lists (001, 006) made the planner price every index path of every search by
// decompressing the list (pglz) and testing each clause against each of its items: 40% of
// PostgreSQL's CPU for Observation?code&date=ge&_total=accurate went to planning, half of it
// here. The dependencies alone carry what those statistics exist for (a code implies its param
// and resource type, so their selectivities are not multiplied into a 10x underestimate): on
// the bench data a common LOINC code is estimated at 37,061 rows for 36,626 and its code+date
// pair rows at 52,385, and planning that search went from 0.63 to 0.40 ms.
import type { Knex } from 'knex';

export const name = '009_statistics';

const STATISTICS: [name: string, columns: string, table: string][] = [
  ['idx_token_stats', 'resource_type, param, code, system', 'idx_token'],
  ['idx_reference_stats', 'resource_type, param, target_type', 'idx_reference'],
  ['idx_string_stats', 'resource_type, param', 'idx_string'],
  ['idx_date_stats', 'resource_type, param', 'idx_date'],
  ['idx_composite_stats', 'resource_type, param, code1, system1', 'idx_composite'],
];

export async function up(knex: Knex): Promise<void> {
  for (const [stat, columns, table] of STATISTICS) {
    await knex.raw(`DROP STATISTICS IF EXISTS ${stat}; CREATE STATISTICS ${stat} (dependencies) ON ${columns} FROM ${table}`);
  }
  // A sample of each table that holds rows (seconds even when large), so the new statistics are
  // there at once rather than at an autovacuum analyze that a large table may not see for weeks.
  // Not an empty one: analyzed empty, the planner takes it for empty while a first import fills it
  // (sequential scans, the HL7 v2 bench's PostgreSQL CPU per message up by half); never analyzed,
  // it assumes a few pages and uses the indexes until autovacuum analyzes the data.
  for (const [, , table] of STATISTICS) {
    const { rows } = await knex.raw(`SELECT EXISTS (SELECT 1 FROM ${table}) AS filled`);
    if (rows[0].filled) await knex.raw(`ANALYZE ${table}`);
  }
}

export async function down(knex: Knex): Promise<void> {
  for (const [stat, columns, table] of STATISTICS) {
    await knex.raw(`DROP STATISTICS IF EXISTS ${stat}; CREATE STATISTICS ${stat} (mcv, dependencies) ON ${columns} FROM ${table}`);
  }
}
