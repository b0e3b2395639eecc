// HL7 v2 benchmark: ADT^A01 messages per second and ACK latency (p50 / p99) over 1 and 5 MLLP
// connections against real PostgreSQL (DATABASE_URL, default the local server), each message a
// new patient + encounter written through the FHIR engine and audited, as in the server; then
// outbound throughput: REF^I12 messages through the outbound queue to a local MLLP receiver that
// ACKs each one. `npm run bench:hl7`.
//   HL7_BENCH_MESSAGES  messages per run (default 2000)   HL7_BENCH_POOL  pg pool size (default: DB_POOL_SIZE's)
//   HL7_BENCH_PIPELINE=0  without pipelined connections (BEGIN / COMMIT as round trips of their own)
//   HL7_GROUP_CONCURRENCY  groups of messages committed at once, as in the server (default 2; 0: no group commit)
//   HL7_BENCH_CONNECTIONS  the runs' connection counts (default 1,5)
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { Worker } from 'node:worker_threads';
import pg from 'pg';
import { defaultPoolSize } from '../../server/config.ts';
import { migrate } from '../../server/db/migrate.ts';
import { createDb } from '../../server/db/pool.ts';
import { loadDefinitions } from '../../server/fhir/definitions.ts';
import { AuditLog } from '../../server/audit/audit-log.ts';
import { Repository } from '../../server/fhir/repository.ts';
import { startHl7 } from '../../server/hl7/index.ts';
import { startMllpServer } from '../../server/hl7/mllp.ts';
import { enqueueOutbound, startOutboundWorker, type OutboundDeps } from '../../server/hl7/outbound/queue.ts';
import { createInProcessQueue } from '../../server/jobs/inprocess.ts';
import { createLogger } from '../../server/logger.ts';
import { createTestDatabase } from '../support/db.ts';

process.env.DATABASE_URL ??= 'postgres://postgres@127.0.0.1:5432/postgres';
const TOTAL = Number(process.env.HL7_BENCH_MESSAGES ?? 2000);
const POOL = Number(process.env.HL7_BENCH_POOL ?? defaultPoolSize());

// SQL statements per message: every query any pool client sends is counted.
let statements = 0;
const query = pg.Client.prototype.query as (...args: unknown[]) => unknown;
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  statements++;
  return query.apply(this, args);
} as typeof pg.Client.prototype.query;

// CPU per message, which the other load on a shared machine disturbs far less than wall time:
// this process (listener + mapping + pg client) plus the Postgres backends serving its pool
// (/proc/<pid>/stat utime + stime; Postgres runs on this machine).
const TICK_MS = 10;
function backendCpuMs(pids: number[]): Map<number, number> {
  const cpu = new Map<number, number>();
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      cpu.set(pid, (Number(fields[11]) + Number(fields[12])) * TICK_MS);
    } catch {
      // backend gone
    }
  }
  return cpu;
}
async function backendPids(db: { query: (sql: string) => Promise<{ rows: { pid: number }[] }> }): Promise<number[]> {
  const res = await db.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'");
  return res.rows.map((r) => r.pid);
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

interface RunResult {
  rate: number;
  p50: number;
  p99: number;
  errors: number;
  perMessage: number;
  nodeCpu: number;
  /** Of nodeCpu, in the kernel (socket system calls). */
  nodeSys: number;
  pgCpu: number;
}

type Sent = { latencies: number[]; errors: number; seconds: number };

async function run(port: number, connections: number, total: number, pids: () => Promise<number[]>): Promise<RunResult> {
  // The sender runs on its own thread (hl7-sender.ts); its CPU while sending counts with this
  // process's (process.cpuUsage covers every thread), its start-up does not.
  const worker = new Worker(new URL('./hl7-sender.ts', import.meta.url), { workerData: { port, connections, total } });
  const answer = (): Promise<unknown> =>
    new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
  await answer(); // 'ready': connected
  const statementsBefore = statements;
  const pgBefore = backendCpuMs(await pids());
  const cpuBefore = process.cpuUsage();
  const done = answer();
  worker.postMessage('go');
  const { latencies, errors, seconds } = (await done) as Sent;
  const cpu = process.cpuUsage(cpuBefore);
  let pgCpu = 0;
  for (const [pid, ms] of backendCpuMs(await pids())) pgCpu += ms - (pgBefore.get(pid) ?? 0);
  await worker.terminate();
  latencies.sort((a, b) => a - b);
  return { rate: total / seconds, p50: pct(latencies, 50), p99: pct(latencies, 99), errors, perMessage: (statements - statementsBefore) / total,
    nodeCpu: (cpu.user + cpu.system) / 1000 / total, nodeSys: cpu.system / 1000 / total, pgCpu: pgCpu / total };
}

/** REF^I12 x n through the outbound queue (in-process, 4 workers) to a local receiver that ACKs AA. */
async function outbound(n: number): Promise<void> {
  let received = 0;
  let allIn: () => void = () => {};
  const done = new Promise<void>((r) => (allIn = r));
  const receiver = await startMllpServer({
    port: 0,
    host: '127.0.0.1',
    log,
    handler: async (frame) => {
      const controlId = frame.toString('utf8').split('\r')[0].split('|')[9];
      if (++received === n) allIn();
      return { response: `MSH|^~\\&|RCV|RCV|WARDLINK|HOSP|20240301120000||ACK^I12^ACK|A${controlId}|P|2.5.1\rMSA|AA|${controlId}` };
    },
  });
  const jobs = createInProcessQueue({ db, log, pollMs: 20 });
  const deps: OutboundDeps = { db, jobs, log, fhirBase: 'http://bench/fhir' };
  startOutboundWorker(deps);
  try {
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      const id = `OUT${Date.now().toString(36)}${i}`;
      const text = `MSH|^~\\&|WARDLINK|HOSP|RCV|RCV|20240301120000||REF^I12^REF_I12|${id}|P|2.5.1\rRF1|A^Accepted^HL70283|R^Routine^HL70280||||${id}`;
      await enqueueOutbound(deps, `mllp://127.0.0.1:${receiver.port}`, 'REF^I12', id, text);
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`only ${received} of ${n} outbound messages arrived`)), 120_000)));
    // The timer is cleared once all arrived, or it would hold the process open for two minutes.
    await Promise.race([done, timeout]).finally(() => clearTimeout(timer));
    const seconds = (performance.now() - start) / 1000;
    console.log(`Outbound REF^I12 to a local MLLP receiver (queue + send + ACK check): ${(n / seconds).toFixed(0)} messages/s (${n} messages), load average ${loadavg()[0].toFixed(2)}`);
  } finally {
    await jobs.close();
    await receiver.close();
  }
}

loadDefinitions();
const database = await createTestDatabase();
await migrate(database.connectionString);
const db = createDb(database.connectionString, POOL);
const pipeline = process.env.HL7_BENCH_PIPELINE !== '0';
const log = createLogger('silent');
const audit = new AuditLog(new Repository(db, { baseUrl: 'http://bench/fhir' }, db), log, { serverName: 'Wardlink' });
const groupConcurrency = Number(process.env.HL7_GROUP_CONCURRENCY ?? 2);
const hl7 = await startHl7({ db, log, fhirBase: 'http://bench/fhir', port: 0, host: '127.0.0.1', pipeline, audit, groupConcurrency });
try {
  const pids = () => backendPids(db);
  await run(hl7.port, 5, 200, pids); // warm-up: prepared statements, JIT, all pool connections open
  for (const connections of (process.env.HL7_BENCH_CONNECTIONS ?? '1,5').split(',').map(Number)) {
    const r = await run(hl7.port, connections, TOTAL, pids);
    console.log(
      `ADT^A01 over ${connections} MLLP connection${connections > 1 ? 's' : ''}${pipeline ? '' : ' (not pipelined)'}${groupConcurrency === 2 ? '' : ` (group concurrency ${groupConcurrency})`}: ${r.rate.toFixed(0)} messages/s, ACK p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms` +
        `, ${r.perMessage.toFixed(1)} SQL statements/message, CPU/message ${r.nodeCpu.toFixed(2)} ms node (${r.nodeSys.toFixed(2)} in the kernel) + ${r.pgCpu.toFixed(2)} ms postgres` +
        `, load average ${loadavg()[0].toFixed(2)}` +
        (r.errors ? `, ${r.errors} not AA` : ''),
    );
  }
  await outbound(Number(process.env.HL7_BENCH_OUTBOUND ?? 1000));
} finally {
  await audit.stop();
  await hl7.stop();
  await db.close();
  await database.drop();
}
