// Workflow benchmark (issue 6): SLA escalation lateness with many open timers in Redis, and
// transition throughput. `npm run bench:workflow [-- --backlog 100000 --seconds 60 ...]`.
// The server runs as a child process (server/main.ts) on a fresh database of the real PostgreSQL
// server (DATABASE_URL, default the local one) with BullMQ on Redis (REDIS_URL, default the local
// one) under its own key prefix (WARDLINK_REDIS_PREFIX), deleted afterwards.
//
//  1. backlog: --backlog open SLA timers in Redis (default 10,000; the size is 100,000),
//     due hours away so they sit in BullMQ's delayed set for the whole run (counted before the load
//     starts); --backlog-mode (below) picks timers only (default) or real consults behind them;
//  2. load: --rate consults/s (default 50) for --seconds (default 30) into --spread departments
//     whose stat SLA runs from 4 s to (seconds - 4) s, so due times are spread over the run; each
//     escalation's fire time is its Provenance.recorded (taken by the timer handler as it acts):
//     lateness = recorded - Task due time, p50 / p99 / max, and how many never escalated;
//  3. transitions: --connections clients (default 10) take backlog consults through
//     assign -> start -> complete ($assign / $start / $complete over HTTP) for --transition-seconds
//     (default 10): operations per second and latency p50 / p99.
// The caller is an administrator: a SMART access token signed with the server's own key (read from
// auth_key in the benchmark's database), as the sign-in flow would issue one.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg as osLoadavg } from 'node:os';
import { parseArgs } from 'node:util';
import type { Resource, Task } from '@medplum/fhirtypes';
import { Redis } from 'ioredis';
import { importJWK, SignJWT, type JWK } from 'jose';
import { migrate } from '../../server/db/migrate.ts';
import { createDb } from '../../server/db/pool.ts';
import { loadDefinitions } from '../../server/fhir/definitions.ts';
import { Repository } from '../../server/fhir/repository.ts';
import { createBullmqQueue } from '../../server/jobs/bullmq.ts';
import { createLogger } from '../../server/logger.ts';
import type { FhirContext } from '../../server/fhir/request.ts';
import { createRequest, setWorkflowRuntime, SLA_QUEUE, slaJobId } from '../../server/workflow/engine.ts';
import { EXT_DEPARTMENT_SLA, EXT_ESCALATION_LEVEL } from '../../server/workflow/model.ts';
import { createTestDatabase } from '../support/db.ts';
import { repoRoot } from '../support/fhir.ts';

const { values: args } = parseArgs({
  options: {
    backlog: { type: 'string', default: process.env.WF_BENCH_BACKLOG ?? '10000' },
    rate: { type: 'string', default: process.env.WF_BENCH_RATE ?? '50' },
    seconds: { type: 'string', default: process.env.WF_BENCH_SECONDS ?? '30' },
    spread: { type: 'string', default: '8' },
    connections: { type: 'string', default: '10' },
    'transition-seconds': { type: 'string', default: '10' },
    'backlog-concurrency': { type: 'string', default: '16' },
    'backlog-mode': { type: 'string', default: 'timers' },
    echo: { type: 'boolean', default: false },
    /** Write a CPU profile of the server process into this directory (node --cpu-prof). */
    profile: { type: 'string' },
  },
});
const BACKLOG = Number(args.backlog);
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const SPREAD = Math.max(1, Number(args.spread));
const CONNECTIONS = Number(args.connections);
const TRANSITION_SECONDS = Number(args['transition-seconds']);
const BACKLOG_CONCURRENCY = Number(args['backlog-concurrency']);
process.env.DATABASE_URL ??= 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `wlbench-${Date.now().toString(36)}`;

/** CPU seconds (user + system) a process has used so far, from /proc (Linux). */
function cpuSeconds(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100/s)
  } catch {
    return NaN;
  }
}
/** CPU seconds of the PostgreSQL backends serving one database (their title names it), now. */
function postgresCpuSeconds(dbName: string): number {
  let total = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.startsWith('postgres: ') && cmd.includes(` ${dbName} `)) total += cpuSeconds(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}
const loadavg = () => osLoadavg().map((n) => n.toFixed(1)).join(' ');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN);
const fmt = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : 'n/a');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function main(): Promise<void> {
  console.log(`workflow bench: backlog ${BACKLOG}, load ${RATE}/s for ${SECONDS}s over ${SPREAD} departments, transitions at ${CONNECTIONS} connections for ${TRANSITION_SECONDS}s`);
  loadDefinitions();
  const database = await createTestDatabase();
  await migrate(database.connectionString);
  const db = createDb(database.connectionString, 16);
  const repo = new Repository(db, { baseUrl: 'http://bench.local/fhir' }, db);
  let child: ChildProcess | undefined;
  const inspector = createBullmqQueue({ redisUrl: REDIS, log: createLogger('silent'), prefix: PREFIX });
  try {
    // ---------------------------------------------------------------- world
    const mk = async (r: Resource): Promise<{ id: string }> => ({ id: (await repo.create(r)).id as string });
    const hospital = await mk({ resourceType: 'Organization', name: 'Bench Hospital' });
    const admin = await mk({ resourceType: 'Practitioner', name: [{ family: 'BenchAdmin' }] });
    const head = await mk({ resourceType: 'Practitioner', name: [{ family: 'BenchHead' }] });
    const patient = await mk({ resourceType: 'Patient', name: [{ family: 'BenchPatient' }], managingOrganization: { reference: `Organization/${hospital.id}` } });
    const dept = async (name: string, statMinutes: number) =>
      (
        await mk({
          resourceType: 'Organization',
          name,
          partOf: { reference: `Organization/${hospital.id}` },
          extension: [
            {
              url: EXT_DEPARTMENT_SLA,
              extension: [
                { url: 'stat', valueDecimal: statMinutes },
                { url: 'urgent', valueDecimal: 600 },
                { url: 'routine', valueDecimal: 1380 },
                { url: 'second-tier-delay', valueDecimal: 600 },
                { url: 'head', valueReference: { reference: `Practitioner/${head.id}` } },
              ],
            },
          ],
        })
      ).id as string;
    const backlogDept = await dept('Backlog (stat 10 h)', 600);
    const loadDepts: { id: string; seconds: number }[] = [];
    const lo = 4;
    const hi = Math.max(lo + 1, SECONDS - 4);
    for (let i = 0; i < SPREAD; i++) {
      const seconds = SPREAD === 1 ? lo : lo + ((hi - lo) * i) / (SPREAD - 1);
      loadDepts.push({ id: await dept(`Load ${i} (stat ${seconds.toFixed(1)} s)`, seconds / 60), seconds });
    }

    // ---------------------------------------------------------------- server
    const port = await freePort();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: database.connectionString,
      REDIS_URL: REDIS,
      WARDLINK_REDIS_PREFIX: PREFIX,
      PORT: String(port),
      HOST: '127.0.0.1',
      HL7_PORT: '0',
      SEED_DEMO: 'false',
      LOG_LEVEL: 'warn',
      DB_POOL_SIZE: '20',
      RATE_LIMIT_PER_IP: '1000000',
    };
    delete env.BASE_URL;
    const profile = args.profile ? ['--cpu-prof', `--cpu-prof-dir=${args.profile}`] : [];
    child = spawn(process.execPath, [...profile, 'server/main.ts'], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => {
      out += d;
      if (args.echo) process.stderr.write(d);
    });
    const origin = `http://127.0.0.1:${port}`;
    const fhirBase = `${origin}/fhir`;
    for (const deadline = Date.now() + 60_000; !out.includes('FHIR base:'); await sleep(100)) {
      if (child.exitCode !== null) throw new Error(`server exited: ${out}`);
      if (Date.now() > deadline) throw new Error(`server did not start: ${out}`);
    }

    // An administrator's access token, signed with the server's key.
    const { rows } = await db.query<{ kid: string; alg: string; private_jwk: JWK }>(`SELECT kid, alg, private_jwk FROM auth_key WHERE active ORDER BY created_at DESC LIMIT 1`);
    const key = await importJWK(rows[0].private_jwk, rows[0].alg);
    const token = await new SignJWT({ client_id: 'wardlink-bench', scope: 'user/*.cruds', role: 'admin', fhirUser: `${fhirBase}/Practitioner/${admin.id}`, org: `Organization/${hospital.id}` })
      .setProtectedHeader({ alg: rows[0].alg, kid: rows[0].kid, typ: 'at+jwt' })
      .setIssuer(origin)
      .setAudience(fhirBase)
      .setSubject('bench-admin')
      .setIssuedAt()
      .setExpirationTime('4h')
      .setJti(randomUUID())
      .sign(key);
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json', accept: 'application/fhir+json' };
    const post = async (path: string, parameter: unknown[]): Promise<{ status: number; body: any }> => {
      const res = await fetch(`${fhirBase}/${path}`, { method: 'POST', headers, body: JSON.stringify({ resourceType: 'Parameters', parameter }) });
      return { status: res.status, body: await res.json() };
    };
    const request = async (department: string): Promise<Task> => {
      const res = await post('ServiceRequest/$request', [
        { name: 'workflow', valueString: 'consult' },
        { name: 'patient', valueReference: { reference: `Patient/${patient.id}` } },
        { name: 'department', valueReference: { reference: `Organization/${department}` } },
        { name: 'priority', valueString: 'stat' },
      ]);
      if (res.status !== 201) throw new Error(`$request: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.parameter.find((p: any) => p.name === 'task').resource as Task;
    };

    // ---------------------------------------------------------------- 1. backlog
    // --backlog-mode timers (default): one consult is created, and BACKLOG SLA timers exactly as
    //   the engine schedules them (queue workflow-sla, job sla-<taskId>, same data, delay 10 h) are
    //   put into the server's Redis queue for that many distinct Task ids: the Redis / BullMQ side
    //   of N open consults at thousands per second. The timers never fire within the run.
    // --backlog-mode engine: N real consults created by the engine in this process on the shared
    //   database (timers scheduled straight into the server's queue, and again by the server via
    //   the outbox). --backlog-mode http: N real consults over HTTP ServiceRequest/$request.
    // On a 2-CPU machine engine makes ~80 consults/s and http ~50/s, so real consults are opt-in.
    const MODE = args['backlog-mode'];
    if (!['timers', 'engine', 'http'].includes(MODE as string)) throw new Error('--backlog-mode must be timers, engine or http');
    const backlog: string[] = [];
    const t0 = performance.now();
    let next = 0;
    let lastReport = Date.now();
    setWorkflowRuntime({ now: () => new Date(), jobs: inspector, log: createLogger('silent') });
    const trusted: FhirContext = { repo, fhirBase, defaultCount: 50, maxCount: 1000, maxBinaryBytes: 1 << 20 };
    const template = MODE === 'timers' ? await request(backlogDept) : undefined;
    const createBacklog = async (): Promise<string> => {
      if (template) {
        const taskId = randomUUID();
        const fireAt = new Date(Date.now() + 10 * 3600_000);
        await inspector.add(SLA_QUEUE, { taskId, fireAt: fireAt.toISOString() }, { jobId: slaJobId(taskId), delayMs: fireAt.getTime() - Date.now() });
        return taskId;
      }
      if (MODE === 'http') return (await request(backlogDept)).id as string;
      const created = await createRequest(trusted, {
        workflow: 'consult',
        patient: `Patient/${patient.id}`,
        performer: `Organization/${backlogDept}`,
        priority: 'stat',
        requester: `Practitioner/${admin.id}`,
      });
      return created.task.id as string;
    };
    await Promise.all(
      Array.from({ length: BACKLOG_CONCURRENCY }, async () => {
        while (next < BACKLOG) {
          next++;
          backlog.push(await createBacklog());
          if (Date.now() - lastReport > 10_000) {
            lastReport = Date.now();
            console.log(`  backlog: ${backlog.length} / ${BACKLOG}`);
          }
        }
      }),
    );
    const backlogSeconds = (performance.now() - t0) / 1000;
    // Every backlog timer is in Redis (scheduled by the request itself, again by the outbox).
    let delayed = 0;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(500)) {
      delayed = await inspector.queue(SLA_QUEUE).getDelayedCount();
      if (delayed >= BACKLOG) break;
    }
    console.log(`backlog: ${BACKLOG} ${MODE === 'timers' ? 'SLA timers' : 'consults'} created in ${backlogSeconds.toFixed(1)} s (${(BACKLOG / backlogSeconds).toFixed(0)}/s, ${MODE === 'timers' ? 'timers only' : MODE === 'http' ? 'consults over HTTP' : 'consults by the engine in the bench process'}, ${BACKLOG_CONCURRENCY} concurrent); delayed SLA timers in Redis: ${delayed}`);

    // ---------------------------------------------------------------- 2. load + lateness
    const load: { id: string; due: number }[] = [];
    const createMs: number[] = [];
    let failures = 0;
    const inflight: Promise<void>[] = [];
    const start = performance.now();
    const cpuBefore = cpuSeconds(child.pid);
    const dbName = new URL(database.connectionString).pathname.slice(1);
    const pgBefore = postgresCpuSeconds(dbName);
    const total = Math.round(RATE * SECONDS);
    for (let i = 0; i < total; i++) {
      const at = start + (i * 1000) / RATE;
      const wait = at - performance.now();
      if (wait > 0) await sleep(wait);
      const d = loadDepts[i % loadDepts.length];
      const sent = performance.now();
      inflight.push(
        request(d.id).then(
          (task) => {
            createMs.push(performance.now() - sent);
            load.push({ id: task.id as string, due: Date.parse(task.restriction!.period!.end!) });
          },
          (e) => {
            failures++;
            if (failures <= 3) console.error(String(e));
          },
        ),
      );
    }
    await Promise.all(inflight);
    const offered = total / ((performance.now() - start) / 1000);
    const lastDue = Math.max(...load.map((l) => l.due));
    await sleep(Math.max(0, lastDue - Date.now()) + 5_000);
    // Server CPU over the load phase (creates, their escalations, timers, outbox): load-independent.
    const loadCpu = cpuSeconds(child.pid) - cpuBefore;
    // Backends that closed during the phase (idle 30 s) are not counted: a lower bound.
    const pgCpu = postgresCpuSeconds(dbName) - pgBefore;
    const loadLoadavg = loadavg();
    const lateness: number[] = [];
    const byDue: [number, number][] = [];
    let missing = 0;
    for (let i = 0; i < load.length; i += 50) {
      const batch = load.slice(i, i + 50);
      await Promise.all(
        batch.map(async (l) => {
          const task = await repo.readResource<Task>('Task', l.id);
          const level = task.extension?.find((e) => e.url === EXT_ESCALATION_LEVEL)?.valueInteger ?? 0;
          if (level < 1) return void missing++;
          let recorded: number | undefined;
          for (const h of task.relevantHistory ?? []) {
            const [type, id] = (h.reference as string).split('/');
            const p = await repo.readResource<any>(type, id);
            if (p.activity?.coding?.[0]?.code === 'escalated') recorded = Date.parse(p.recorded);
          }
          if (recorded === undefined) return void missing++;
          lateness.push(recorded - l.due);
          byDue.push([l.due, recorded - l.due]);
        }),
      );
    }
    lateness.sort((a, b) => a - b);
    createMs.sort((a, b) => a - b);
    console.log(
      `load: ${load.length} consults at ${offered.toFixed(1)}/s offered (${failures} failed; $request p50 ${fmt(pct(createMs, 50))} ms, p99 ${fmt(pct(createMs, 99))} ms), ` +
        `SLA ${lo}-${hi.toFixed(0)} s, with ${BACKLOG} other open timers`,
    );
    console.log(
      `server CPU over the load phase: ${loadCpu.toFixed(1)} s = ${((loadCpu * 1000) / Math.max(1, load.length)).toFixed(1)} ms per consult (create + escalation + timers), ` +
        `PostgreSQL backends >= ${pgCpu.toFixed(1)} s = ${((pgCpu * 1000) / Math.max(1, load.length)).toFixed(1)} ms per consult; load average ${loadLoadavg}`,
    );
    console.log(
      `escalation lateness (fire - due): p50 ${fmt(pct(lateness, 50))} ms, p99 ${fmt(pct(lateness, 99))} ms, max ${fmt(lateness.at(-1) ?? NaN)} ms, min ${fmt(lateness[0] ?? NaN)} ms; ` +
        `${lateness.length} escalated, ${missing} not escalated`,
    );

    // Where the tail is: lateness p50 / max per 5 s of due time.
    const first = Math.min(...byDue.map(([d]) => d));
    const buckets = new Map<number, number[]>();
    for (const [d, l] of byDue) {
      const k = Math.floor((d - first) / 5000);
      buckets.set(k, [...(buckets.get(k) ?? []), l]);
    }
    console.log(
      '  by due time: ' +
        [...buckets.entries()]
          .sort(([a], [b]) => a - b)
          .map(([k, ls]) => {
            ls.sort((a, b) => a - b);
            return `+${k * 5}s n=${ls.length} p50 ${fmt(pct(ls, 50))} max ${fmt(ls.at(-1)!)}`;
          })
          .join(' | '),
    );

    // ---------------------------------------------------------------- 3. transitions
    const steps: [string, unknown[]][] = [
      ['$assign', [{ name: 'owner', valueReference: { reference: `Practitioner/${admin.id}` } }]],
      ['$start', []],
      ['$complete', []],
    ];
    // Real open consults to move: the backlog's (engine / http), else the (escalated, still open)
    // load consults plus fresh ones.
    const movable = MODE === 'timers' ? load.map((l) => l.id) : backlog;
    while (MODE === 'timers' && movable.length < CONNECTIONS * TRANSITION_SECONDS * 5) movable.push((await request(backlogDept)).id as string);
    let cursor = 0;
    let ops = 0;
    let refused = 0;
    const opMs: number[] = [];
    const tStart = performance.now();
    const tCpu = cpuSeconds(child.pid);
    const tEnd = tStart + TRANSITION_SECONDS * 1000;
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        while (performance.now() < tEnd && cursor < movable.length) {
          const id = movable[cursor++];
          for (const [op, parameter] of steps) {
            if (performance.now() >= tEnd) break;
            const s = performance.now();
            const res = await post(`Task/${id}/${op}`, parameter);
            opMs.push(performance.now() - s);
            if (res.status === 200) ops++;
            else if (++refused <= 3) console.error(`${op} ${id}: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
          }
        }
      }),
    );
    const tSeconds = (performance.now() - tStart) / 1000;
    const transitionCpu = cpuSeconds(child.pid) - tCpu;
    opMs.sort((a, b) => a - b);
    console.log(
      `transitions: ${ops} in ${tSeconds.toFixed(1)} s = ${(ops / tSeconds).toFixed(0)} ops/s at ${CONNECTIONS} connections (assign/start/complete, ${refused} refused); ` +
        `latency p50 ${fmt(pct(opMs, 50))} ms, p99 ${fmt(pct(opMs, 99))} ms; server CPU ${((transitionCpu * 1000) / Math.max(1, ops)).toFixed(1)} ms per transition; load average ${loadavg()}`,
    );
  } finally {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child!.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    await inspector.close();
    const redis = new Redis(REDIS);
    let cursor = '0';
    do {
      const [nextCursor, keys] = await redis.scan(cursor, 'MATCH', `${PREFIX}:*`, 'COUNT', 1000);
      cursor = nextCursor;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
    await redis.quit();
    await db.close();
    await database.drop();
  }
}

await main();
