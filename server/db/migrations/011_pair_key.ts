// Token + date pair rows are found by one 64-bit key instead of three text columns.
//
// `Observation?code=X&date=ge...&_total=accurate` counts every match off the index
// (resource_type, param, code1, dhigh2, ...). On PostgreSQL 15 the btree checks every scan key on
// every index entry it passes, and an entry's columns after a text column are found by walking
// the text columns before them: per entry, three text comparisons and a slow column lookup for
// each key. That was half of PostgreSQL's CPU for the count (perf: nocache_index_getattr,
// _bt_checkkeys, memcmp, texteq).
//
// key1 = hashtextextended(resource_type | param | code1): one int8 comparison, and every column
// the scan reads after it (the date bounds, the system) sits at a fixed offset. Measured on the
// search bench data (1M Observations): 1.88 -> 1.40 ms of PostgreSQL CPU per search.
//
// The hash is the one PostgreSQL's hash partitioning relies on (stable across platforms and
// versions). Two (type, pair, code) triples with the same 64-bit key would share their rows'
// scans (as HAPI FHIR's hashed index columns accept); the system is still compared exactly.
// A generated column: every writer (repository, reindex, bench loader) fills it without knowing.
// Adding it rewrites idx_composite once (about a minute for 5 million rows).
import type { Knex } from 'knex';

export const name = '011_pair_key';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE idx_composite ADD COLUMN key1 bigint GENERATED ALWAYS AS (hashtextextended(resource_type || '|' || param || '|' || code1, 0)) STORED;
    DROP INDEX IF EXISTS idx_composite_date_high;
    DROP INDEX IF EXISTS idx_composite_date_low;
    -- As before (006): the bound scanned depends on the date prefix, hence two.
    CREATE INDEX idx_composite_key_high ON idx_composite (key1, dhigh2, dlow2, system1, resource_id) WHERE dhigh2 IS NOT NULL;
    CREATE INDEX idx_composite_key_low ON idx_composite (key1, dlow2, dhigh2, system1, resource_id) WHERE dlow2 IS NOT NULL;
  `);
  // Statistics for the new column, where rows exist (see 009: never ANALYZE an empty table).
  const { rows } = await knex.raw(`SELECT EXISTS (SELECT 1 FROM idx_composite) AS any`);
  if (rows[0]?.any) await knex.raw('ANALYZE idx_composite');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP INDEX IF EXISTS idx_composite_key_high;
    DROP INDEX IF EXISTS idx_composite_key_low;
    ALTER TABLE idx_composite DROP COLUMN IF EXISTS key1;
    CREATE INDEX idx_composite_date_high ON idx_composite (resource_type, param, code1, dhigh2, dlow2, system1, resource_id) WHERE dhigh2 IS NOT NULL;
    CREATE INDEX idx_composite_date_low ON idx_composite (resource_type, param, code1, dlow2, dhigh2, system1, resource_id) WHERE dlow2 IS NOT NULL;
  `);
}
