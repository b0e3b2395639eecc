// The original-mode transaction on a pipelined connection: BEGIN leaves with the first statement
// and COMMIT with the last, one socket write each (a write is a system call, and the HL7 path
// sends four per message); what it writes commits, or rolls back whole when the last statement
// fails. PostgreSQL only (the embedded PGlite is used without pipelining).
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPipelinedPool, PipelinedTransaction } from '../../server/hl7/pipelined.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';

let database: TestDatabase;
let pool: pg.Pool;
let flushes = 0;

beforeAll(async () => {
  database = await createTestDatabase();
  pool = createPipelinedPool(database.connectionString, 1);
  // Count what the connection's socket sends to the server, write by write.
  pool.on('connect', (client) => {
    const socket = (client as unknown as { connection: { stream: { _write: Function; _writev?: Function } } }).connection.stream;
    const write = socket._write.bind(socket);
    socket._write = (...args: unknown[]) => (flushes++, write(...args));
    const writev = socket._writev?.bind(socket);
    if (writev) socket._writev = (...args: unknown[]) => (flushes++, writev(...args));
  });
  await pool.query('CREATE TABLE t (x integer NOT NULL)');
});
afterAll(async () => {
  await pool?.end();
  await database?.drop();
});

const count = async () => Number((await pool.query('SELECT count(*) AS n FROM t')).rows[0].n);

describe.skipIf(!process.env.DATABASE_URL)('pipelined transaction', () => {
  it('sends BEGIN with the first statement and COMMIT with the last: one write each', async () => {
    const before = flushes;
    const tx = await PipelinedTransaction.open(pool);
    try {
      await tx.query('INSERT INTO t VALUES (1)');
      expect(flushes - before).toBe(1);
      await tx.query('INSERT INTO t VALUES (2)');
      expect(flushes - before).toBe(2);
      await tx.commitWith(tx.query('INSERT INTO t VALUES (3)'));
      expect(flushes - before).toBe(3);
    } finally {
      tx.release();
    }
    expect(await count()).toBe(3);
  });

  it('rolls everything back when the last statement fails, and the connection goes on', async () => {
    const tx = await PipelinedTransaction.open(pool);
    try {
      await tx.query('INSERT INTO t VALUES (4)');
      await expect(tx.commitWith(tx.query('INSERT INTO t VALUES (NULL)'))).rejects.toThrow(/null value/);
    } finally {
      tx.release();
    }
    expect(await count()).toBe(3);
  });
});
