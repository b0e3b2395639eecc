// Runs the versioned migrations at start with knex (never edit a released migration: add one).
import knexFactory from 'knex';
import * as m001 from './migrations/001_core.ts';
import * as m002 from './migrations/002_jobs.ts';
import * as m003 from './migrations/003_hl7.ts';
import * as m004 from './migrations/004_auth.ts';
import * as m005 from './migrations/005_subscriptions.ts';
import * as m006 from './migrations/006_search.ts';
import * as m008 from './migrations/008_subscriptions_perf.ts';
import * as m009 from './migrations/009_statistics.ts';
import * as m010 from './migrations/010_reference_url_partial.ts';
import * as m011 from './migrations/011_pair_key.ts';

interface Migration {
  name: string;
  up: (knex: import('knex').Knex) => Promise<void>;
  down: (knex: import('knex').Knex) => Promise<void>;
}

// Listed explicitly rather than read from a folder, so the order is visible and no loader is
// needed for .ts files.
const MIGRATIONS: Migration[] = [m001, m002, m003, m004, m005, m006, m008, m009, m010, m011];

export async function migrate(connectionString: string): Promise<void> {
  const knex = knexFactory({ client: 'pg', connection: connectionString, pool: { min: 0, max: 1 } });
  try {
    await knex.migrate.latest({
      migrationSource: {
        getMigrations: async () => MIGRATIONS,
        getMigrationName: (m: Migration) => m.name,
        getMigration: async (m: Migration) => m,
      },
    });
  } finally {
    await knex.destroy();
  }
}
