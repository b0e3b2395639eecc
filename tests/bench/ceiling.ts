// The ceiling the FHIR figures are compared with: a bare Koa app that does only the minimum
// database work with `pg` on its own table in the same database, at the same pool size.
//   GET  /ceiling/{id}  one SELECT content::text by primary key, sent as the stored JSON
//   POST /ceiling       parse the JSON body, one INSERT, 201 with a Location
// No router, no validation, no history, no index rows: nothing a FHIR server could skip.
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import pg from 'pg';

export interface Ceiling {
  /** Origin, e.g. http://127.0.0.1:40123; paths are /ceiling and /ceiling/{id}. */
  url: string;
  pool: pg.Pool;
  stop(): Promise<void>;
}

const TABLE = 'bench_ceiling';

async function readBody(req: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function startCeiling(connectionString: string, poolSize: number): Promise<Ceiling> {
  const pool = new pg.Pool({ connectionString, max: poolSize });
  pool.on('error', () => {});
  await pool.query(`CREATE TABLE IF NOT EXISTS ${TABLE} (id text PRIMARY KEY, content jsonb NOT NULL)`);

  const app = new Koa();
  app.use(async (ctx) => {
    if (ctx.method === 'GET' && ctx.path.startsWith('/ceiling/')) {
      const id = ctx.path.slice('/ceiling/'.length);
      const res = await pool.query<{ json: string }>({
        name: 'ceiling-read',
        text: `SELECT content::text AS json FROM ${TABLE} WHERE id = $1`,
        values: [id],
      });
      if (res.rows.length === 0) {
        ctx.status = 404;
        return;
      }
      ctx.type = 'application/json';
      ctx.body = res.rows[0].json;
      return;
    }
    if (ctx.method === 'POST' && ctx.path === '/ceiling') {
      const text = await readBody(ctx.req);
      try {
        JSON.parse(text);
      } catch {
        ctx.status = 400;
        return;
      }
      const id = randomUUID();
      await pool.query({ name: 'ceiling-insert', text: `INSERT INTO ${TABLE} (id, content) VALUES ($1, $2)`, values: [id, text] });
      ctx.status = 201;
      ctx.set('Location', `/ceiling/${id}`);
      return;
    }
    ctx.status = 404;
  });

  const server = createServer(app.callback());
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    pool,
    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await pool.end();
    },
  };
}
