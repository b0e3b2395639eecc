// `npm run bench`: the FHIR server and its ceilings, measured in one run on this machine.
//   --quick    2 s per workload, 1 s warm-up (smoke check)
//   --verbose  per-workload progress, status codes, where the CPU went, server memory
//   --profile  write a V8 CPU profile of the FHIR server process to the OS temp dir
// Needs PostgreSQL (DATABASE_URL; default postgres://postgres@127.0.0.1:5432/postgres). A fresh
// database is created and dropped; the FHIR server and the ceiling run in child processes so the
// load generator (this process) does not share their event loop.
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultPoolSize } from '../../server/config.ts';
import { createTestDatabase } from '../support/db.ts';
import { forkServer, type ServerProc } from './procs.ts';
import {
  createShape,
  ingest,
  loadSynthea,
  measure,
  mixedShape,
  readShape,
  seed,
  tokenShape,
  transactionShape,
  updateShape,
  useAuth,
  type BenchOptions,
  type LoadResult,
} from './workloads.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const verbose = args.includes('--verbose');
const profileDir = args.includes('--profile') ? path.join(os.tmpdir(), 'wardlink-bench-profiles') : undefined;
const opts: BenchOptions = { connections: 10, seconds: quick ? 2 : 10, warmupSeconds: quick ? 1 : 2, verbose, databaseName: '' };
// DB_POOL_SIZE's default (both servers the same, so the ceiling stays comparable).
const POOL_SIZE = defaultPoolSize();
const INGEST_CONCURRENCY = 4;

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const corpusDir = path.resolve(repoRoot, '..', 'shared', 'corpus', 'synthea-r4', 'smart-on-fhir');

if (!process.env.DATABASE_URL) {
  process.env.DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
  console.log(`DATABASE_URL not set: using ${process.env.DATABASE_URL}`);
}

const log = (msg: string) => console.log(`[bench] ${msg}`);
const procs: ServerProc[] = [];
let dropDb: (() => Promise<void>) | undefined;
let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await Promise.allSettled(procs.map((p) => p.stop()));
    await dropDb?.().catch((e: unknown) => console.error('[bench] could not drop the database:', e));
  })();
  return cleaning;
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\n[bench] ${sig}: stopping servers and dropping the database`);
    void cleanup().finally(() => process.exit(130));
  });
}

function report(r: LoadResult) {
  if (!verbose) return;
  const rate = r.unit ? `${r.unitsPerSec?.toFixed(0)} ${r.unit}/s` : `${r.rps.toFixed(0)} req/s`;
  log(
    `${r.name}: ${rate}, p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms, statuses ${JSON.stringify(r.statuses)}, ` +
      `errors ${r.errors}, SQL/req ${r.sqlPerReq.toFixed(1)}, CPU ms/req: server ${r.cpuMsPerReq.toFixed(2)}, ` +
      `postgres ${r.postgresMsPerReq.toFixed(2)}, load generator ${r.loadgenMsPerReq.toFixed(2)}, ` +
      `outside the bench ${r.otherMsPerReq.toFixed(2)} (${r.otherPct.toFixed(0)}% of the machine), ` +
      `machine busy ${r.busyPct.toFixed(0)}%, server RSS ${r.serverRssMb.toFixed(0)} MB`,
  );
}

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '-');

async function main() {
  const started = performance.now();
  const corpus = await loadSynthea(corpusDir);
  const db = await createTestDatabase();
  dropDb = () => db.drop();
  opts.databaseName = new URL(db.connectionString).pathname.slice(1);
  log(`database ${new URL(db.connectionString).pathname.slice(1)}; starting the FHIR server and the ceiling`);
  const [fhir, ceiling, noauth] = await Promise.all([
    forkServer('fhir', db.connectionString, POOL_SIZE, profileDir),
    forkServer('ceiling', db.connectionString, POOL_SIZE),
    forkServer('fhir-noauth', db.connectionString, POOL_SIZE),
  ]);
  procs.push(fhir, ceiling, noauth);
  useAuth(fhir.headers);
  log(`FHIR ${fhir.url}/fhir, ceiling ${ceiling.url}; seeding patients`);
  const fx = await seed(fhir, ceiling, 500, 200);

  const step = async (r: Promise<LoadResult>) => {
    const result = await r;
    report(result);
    return result;
  };
  const reclaim = () => fx.updates.reclaim();
  const s = opts.seconds;
  log(`measuring: ${opts.connections} connections, ${opts.warmupSeconds} s warm-up + ${s} s each`);
  // Ceilings and FHIR figures alternate so slow drift on the shared machine hits both alike.
  const selectCeil = await step(measure('ceiling SELECT by pk', ceiling, readShape('/ceiling', fx.ceilingIds), opts));
  const read = await step(measure('(a) read Patient/{id}', fhir, readShape('/fhir/Patient', fx.readIds), opts));
  const readNoAuth = await step(measure('read, auth disabled (test-only)', noauth, readShape('/fhir/Patient', fx.readIds), opts));
  const tokens = await step(measure('token endpoint (client_credentials)', fhir, tokenShape(), opts));
  const insertCeil = await step(measure('ceiling INSERT', ceiling, createShape('/ceiling', 'application/json'), opts));
  const create = await step(measure('(b) create Patient', fhir, createShape('/fhir/Patient', 'application/fhir+json'), opts));
  const update = await step(measure('(c) update If-Match', fhir, updateShape(fx.updates), opts, reclaim));
  const tx = await step(measure('(d) transaction 10 Patients', fhir, transactionShape(), opts));
  const mixed = await step(measure('mixed 1/3 create/read/update', fhir, mixedShape(fx.readIds, fx.updates), opts, reclaim));
  log(`ingesting ${corpus.bodies.length} Synthea bundles (${corpus.entries.reduce((a, b) => a + b, 0)} resources), ${INGEST_CONCURRENCY} at a time`);
  const synthea = await step(ingest(fhir, corpus, INGEST_CONCURRENCY, s, opts));

  const rows: string[][] = [];
  const row = (name: string, r: LoadResult, rate: number, unit: string, ceil: number | undefined, target: number | undefined, targetText: string) => {
    const ratio = ceil ? rate / ceil : NaN;
    const verdict = target === undefined ? '' : (ceil ? ratio : rate) >= target ? 'ok' : 'BELOW';
    rows.push([
      name,
      `${fmt(rate)} ${unit}`,
      fmt(r.p50, 1),
      fmt(r.p99, 1),
      `${r.non2xx + r.errors}/${fmt(r.total + r.errors)}`,
      fmt(r.sqlPerReq, 1),
      ceil ? fmt(ceil) : '',
      ceil ? `${fmt(100 * ratio)}%` : '',
      targetText,
      verdict,
    ]);
  };
  row(selectCeil.name, selectCeil, selectCeil.rps, 'req/s', undefined, undefined, '');
  row(insertCeil.name, insertCeil, insertCeil.rps, 'req/s', undefined, undefined, '');
  row(read.name, read, read.rps, 'req/s', selectCeil.rps, 0.7, '>= 70% of SELECT');
  row(readNoAuth.name, readNoAuth, readNoAuth.rps, 'req/s', selectCeil.rps, undefined, '');
  rows.push([
    'auth cost on read',
    `${fmt(100 * (1 - read.rps / readNoAuth.rps), 1)}% slower`,
    '', '', '', '', '', '', '< 10% slower', 1 - read.rps / readNoAuth.rps < 0.1 ? 'ok' : 'BELOW',
  ]);
  row(tokens.name, tokens, tokens.rps, 'req/s', undefined, undefined, '');
  row(create.name, create, create.rps, 'req/s', insertCeil.rps, 0.4, '>= 40% of INSERT');
  row(update.name, update, update.rps, 'req/s', insertCeil.rps, 0.4, '>= 40% of INSERT');
  row(tx.name, tx, tx.rps, 'bundles/s', insertCeil.rps, undefined, `= ${fmt(tx.rps * 10)} resources/s`);
  row('(e) Synthea ingest', synthea, synthea.unitsPerSec ?? NaN, 'resources/s', insertCeil.rps, undefined, '');
  rows[rows.length - 1][8] = '>= 1,500 resources/s';
  rows[rows.length - 1][9] = (synthea.unitsPerSec ?? 0) >= 1500 ? 'ok' : 'BELOW';
  row(mixed.name, mixed, mixed.rps, 'req/s', undefined, 1500, '>= 1,500 req/s');

  const head = ['workload', 'throughput', 'p50 ms', 'p99 ms', 'non-2xx/all', 'SQL/req', 'ceiling/s', 'ratio', 'target', ''];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 || i >= 8 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  console.log('');
  console.log(`Wardlink bench: ${opts.connections} connections, ${s} s per workload after ${opts.warmupSeconds} s warm-up; PostgreSQL at ${new URL(db.connectionString).host}`);
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
  console.log('');
  console.log('throughput counts 2xx responses only; p50/p99 are per request (per bundle for ingest, posted');
  console.log(`${INGEST_CONCURRENCY} at a time); SQL/req = statements the server sent per 2xx response (per resource for`);
  console.log('ingest, BEGIN/COMMIT included); transaction and ingest ratios are per bundle / per resource vs one INSERT.');
  const notes = [read, create, update, tx, mixed, synthea].flatMap((r) => r.notes.map((n) => `${r.name}: ${n}`));
  if (fx.updates.refreshed) notes.push(`update: ${fx.updates.refreshed} version re-reads (non-2xx answers or requests cut off at the end of a run)`);
  const all = [selectCeil, read, readNoAuth, tokens, insertCeil, create, update, tx, mixed, synthea];
  const busy = all.filter((r) => r.otherPct >= 10);
  if (busy.length) {
    notes.push(
      `processes outside the bench used CPU during: ${busy.map((r) => `${r.name} (${r.otherPct.toFixed(0)}%)`).join(', ')}; ` +
        'those figures are depressed; rerun on a quiet machine to compare',
    );
  }
  for (const n of notes) console.log(`note: ${n}`);
  if (profileDir) log(`the FHIR server's CPU profile goes to ${profileDir} when it stops (open it in Chrome DevTools)`);
  log(`done in ${((performance.now() - started) / 1000).toFixed(0)} s; server RSS ${fmt(synthea.serverRssMb)} MB`);
}

try {
  await main();
} catch (e) {
  console.error('[bench] failed:', e);
  process.exitCode = 1;
} finally {
  await cleanup();
}
