// The embedded default: PGlite (PostgreSQL compiled to WASM) with its data under DATA_DIR,
// served on a loopback socket so the very same `pg` driver and SQL run as in production.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { pg_trgm } from '@electric-sql/pglite/contrib/pg_trgm';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

export interface EmbeddedPostgres {
  connectionString: string;
  stop(): Promise<void>;
}

export async function startEmbeddedPostgres(dataDir: string): Promise<EmbeddedPostgres> {
  const dir = path.resolve(dataDir, 'pg');
  mkdirSync(dir, { recursive: true });
  const db = await PGlite.create({ dataDir: dir, extensions: { pg_trgm } });
  // PGlite is single-connection: the server is used with a pool of exactly one connection,
  // so transactions never interleave on the shared backend.
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0 });
  await server.start();
  const hostPort = server.getServerConn();
  return {
    connectionString: `postgres://postgres@${hostPort}/postgres`,
    async stop() {
      await server.stop();
      await db.close();
    },
  };
}
