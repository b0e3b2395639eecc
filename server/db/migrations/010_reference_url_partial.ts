// The index of references by absolute URL (a reference to another server, searched as
// `performer=http://other.org/fhir/Practitioner/9`) holds only the rows that have one. Nearly
// every reference points into this server (target_type / target_id, target_url NULL: 931 of
// 2.2 million rows on the search bench data), and each of those rows cost an insertion into
// this index on every write for nothing. A search by URL (`target_url = $1`) implies the
// predicate, so the planner still uses it.
import type { Knex } from 'knex';

export const name = '010_reference_url_partial';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP INDEX IF EXISTS idx_reference_url;
    CREATE INDEX idx_reference_url ON idx_reference (resource_type, param, target_url) WHERE target_url IS NOT NULL;
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP INDEX IF EXISTS idx_reference_url;
    CREATE INDEX idx_reference_url ON idx_reference (resource_type, param, target_url);
  `);
}
