// `npm run reindex [-- ResourceType]`: recomputes search index rows after SearchParameters or
// the index function change. Uses DATABASE_URL, or the embedded database under DATA_DIR.
import { loadConfig } from '../config.ts';
import { startEmbeddedPostgres } from '../db/embedded.ts';
import { migrate } from '../db/migrate.ts';
import { createDb } from '../db/pool.ts';
import { loadDefinitions } from '../fhir/definitions.ts';
import { reindex } from '../fhir/search/reindex.ts';

const config = loadConfig();
const resourceType = process.argv[2];
loadDefinitions();
const embedded = config.databaseUrl ? undefined : await startEmbeddedPostgres(config.dataDir);
const connectionString = config.databaseUrl ?? (embedded?.connectionString as string);
await migrate(connectionString);
const db = createDb(connectionString, 1, { namedStatements: !embedded });
try {
  await reindex(db, {
    resourceType,
    baseUrl: `${config.baseUrl}/fhir`,
    onProgress: (type, done) => console.log(`${type}: ${done} reindexed`),
  });
  console.log('Reindex complete.');
} finally {
  await db.close();
  await embedded?.stop();
}
