// Shared setup for the jobs tests: a migrated fresh database (real PostgreSQL with DATABASE_URL,
// in-memory PGlite without), whether Redis is there for the BullMQ suite, and small waits.
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { migrate } from '../../server/db/migrate.ts';
import { createDb, type Db } from '../../server/db/pool.ts';
import { createLogger } from '../../server/logger.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';

export const log = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

export interface MigratedDb {
  db: Db;
  database: TestDatabase;
  close(): Promise<void>;
}

export async function migratedDb(): Promise<MigratedDb> {
  const database = await createTestDatabase();
  await migrate(database.connectionString);
  // PGlite: one backend session, so one connection and no named statements (as server.ts).
  const db = createDb(database.connectionString, database.embedded ? 1 : 5, { namedStatements: !database.embedded });
  return {
    db,
    database,
    async close() {
      await db.close();
      await database.drop();
    },
  };
}

/** Answers within 500 ms whether something speaks Redis at host:port. */
function redisAnswers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

/**
 * Redis for the BullMQ tests: REDIS_URL when set (CI: then it must work, no skipping), else a
 * local Redis on 127.0.0.1:6379 if one answers, else undefined (the suite is skipped).
 */
export async function testRedisUrl(): Promise<string | undefined> {
  if (process.env.REDIS_URL) return process.env.REDIS_URL;
  return (await redisAnswers('127.0.0.1', 6379)) ? 'redis://127.0.0.1:6379' : undefined;
}

export const uniquePrefix = (): string => `wltest-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until check() is true (or throws after timeoutMs). */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** A promise with its resolve function outside, to hold a handler until the test lets go. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}
