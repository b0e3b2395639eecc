// Starts one real Wardlink server for the whole test run (on a fresh database, see db.ts) and
// hands its URL to the test files; stops it and drops the database at the end.
import type { TestProject } from 'vitest/node';
import { loadConfig } from '../../server/config.ts';
import { createLogger } from '../../server/logger.ts';
import { startServer, type RunningServer } from '../../server/server.ts';
import { createTestDatabase, type TestDatabase } from './db.ts';
import { systemToken, TEST_CLIENT_ID, TEST_CLIENT_SECRET } from './token.ts';

let server: RunningServer | undefined;
let database: TestDatabase | undefined;

export async function setup(project: TestProject): Promise<void> {
  database = await createTestDatabase();
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: database.connectionString,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    MAX_BINARY_BYTES: String(1024 * 1024),
    DB_POOL_SIZE: database.embedded ? '1' : '10',
    BOOTSTRAP_CLIENT_ID: TEST_CLIENT_ID,
    BOOTSTRAP_CLIENT_SECRET: TEST_CLIENT_SECRET,
    SEED_DEMO: 'false',
    HL7_PORT: '0',
  });
  server = await startServer(config, createLogger(config.logLevel));
  project.provide('token', await systemToken(server.url, TEST_CLIENT_ID, TEST_CLIENT_SECRET));
  project.provide('fhirBase', server.fhirBase);
  project.provide('baseUrl', server.url);
  project.provide('databaseUrl', database.connectionString);
  project.provide('embedded', database.embedded);
}

export async function teardown(): Promise<void> {
  await server?.stop();
  await database?.drop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    fhirBase: string;
    baseUrl: string;
    databaseUrl: string;
    embedded: boolean;
    /** A system/*.cruds access token of the bootstrap client (SMART Backend Services style). */
    token: string;
  }
}
