// A whole Wardlink server started inside the test process (startServer, as `npm start` does) on a
// fresh database of its own, with the bootstrap client and a system token: for tests that need
// the server's own wiring (seed, audit, shutdown) and want to reach its objects directly.
import { loadConfig } from '../../server/config.ts';
import { createLogger } from '../../server/logger.ts';
import { startServer, type RunningServer } from '../../server/server.ts';
import { createTestDatabase, type TestDatabase } from './db.ts';
import { systemToken, TEST_CLIENT_ID, TEST_CLIENT_SECRET } from './token.ts';

export interface InProcessServer {
  server: RunningServer;
  database: TestDatabase;
  /** A system/*.cruds access token of the bootstrap client. */
  accessToken: string;
  /** Stops the server (if still running) and drops its database. */
  close(): Promise<void>;
}

export async function startInProcessServer(env: Record<string, string> = {}): Promise<InProcessServer> {
  const database = await createTestDatabase();
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: database.connectionString,
    LOG_LEVEL: 'silent',
    HL7_PORT: '0',
    BOOTSTRAP_CLIENT_ID: TEST_CLIENT_ID,
    BOOTSTRAP_CLIENT_SECRET: TEST_CLIENT_SECRET,
    ...env,
  });
  const server = await startServer(config, createLogger('silent'));
  const accessToken = await systemToken(server.url, TEST_CLIENT_ID, TEST_CLIENT_SECRET);
  let stopped = false;
  return {
    server,
    database,
    accessToken,
    async close() {
      if (!stopped) await server.stop().catch(() => undefined);
      stopped = true;
      await database.drop();
    },
  };
}
