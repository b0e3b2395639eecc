// Subscriptions benchmark (issue 5): end-to-end notification latency, change committed ->
// websocket message received, p50 / p99 with N active websocket subscriptions under a paced
// write load through the FHIR API; then rest-hook deliveries per second to a local receiver.
// `npm run bench:subscriptions`. The server runs in a child process (server/main.ts) on a fresh
// database of the real PostgreSQL server (DATABASE_URL, default the local one), with the BullMQ
// queue on Redis (REDIS_URL, default the local one; SUB_BENCH_REDIS=off for the in-process queue).
//
// Each websocket subscription filters Patient?family=SubBench<i, 6 digits>, so each change (a
// Patient create, family SubBench<i>, i round robin) matches exactly one of the N subscriptions while
// the engine still checks it against all N. "Committed" is the moment the write's response
// arrives (the transaction has committed by then); the latency from the request being sent is
// printed beside it. A notification can arrive before the write's response: those count as 0.
//   SUB_BENCH_SUBS      websocket subscriptions (default 1000)   SUB_BENCH_SOCKETS  sockets (default 10)
//   SUB_BENCH_RATE      changes per second (default 200)         SUB_BENCH_SECONDS  duration (default 10)
//   SUB_BENCH_HOOKS     rest-hook subscriptions (default 50)     SUB_BENCH_HOOK_CHANGES  changes (default 200)
//   SUB_BENCH_CPU_PROF  a directory: the server writes a V8 CPU profile there on exit
//   SUB_BENCH_ECHO=1    copy the server's stderr to this process's
//   SUB_BENCH_LOG_LEVEL the server's LOG_LEVEL (debug: per-batch timings of the relay and the engine, on stdout)
//   SUB_BENCH_LOG       a file: the server's stdout goes there
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { loadavg } from 'node:os';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { createTestDatabase } from '../support/db.ts';
import { repoRoot } from '../support/fhir.ts';
import { systemToken, TEST_CLIENT_ID, TEST_CLIENT_SECRET } from '../support/token.ts';

process.env.DATABASE_URL ??= 'postgres://postgres@127.0.0.1:5432/postgres';
const SUBS = Number(process.env.SUB_BENCH_SUBS ?? 1000);
const SOCKETS = Number(process.env.SUB_BENCH_SOCKETS ?? 10);
const RATE = Number(process.env.SUB_BENCH_RATE ?? 200);
const SECONDS = Number(process.env.SUB_BENCH_SECONDS ?? 10);
const HOOKS = Number(process.env.SUB_BENCH_HOOKS ?? 50);
const HOOK_CHANGES = Number(process.env.SUB_BENCH_HOOK_CHANGES ?? 200);
const REDIS = process.env.SUB_BENCH_REDIS === 'off' ? undefined : (process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');

const BP = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/';
const TOPIC = 'http://wardlink.org/fhir/SubscriptionTopic/resource-change';

function subscription(channel: 'websocket' | 'rest-hook', filter: string, endpoint?: string): unknown {
  return {
    resourceType: 'Subscription',
    meta: { profile: [`${BP}backport-subscription`] },
    status: 'requested',
    reason: 'bench',
    criteria: TOPIC,
    _criteria: { extension: [{ url: `${BP}backport-filter-criteria`, valueString: filter }] },
    channel: {
      extension: [
        { url: `${BP}backport-timeout`, valueUnsignedInt: 10 },
        { url: `${BP}backport-max-count`, valuePositiveInt: 1 },
      ],
      type: channel,
      endpoint,
      payload: 'application/fhir+json',
      _payload: { extension: [{ url: `${BP}backport-payload-content`, valueCode: 'id-only' }] },
    },
  };
}

/** Fixed width, so one subscription's filter is never a prefix of another's (string search is "starts with"). */
const family = (i: number): string => `SubBench${String(i).padStart(6, '0')}`;
const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startChild(databaseUrl: string): Promise<{ child: ChildProcess; fhirBase: string; origin: string }> {
  const port = 21000 + Math.floor(Math.random() * 4000);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    DATABASE_URL: databaseUrl,
    LOG_LEVEL: process.env.SUB_BENCH_LOG_LEVEL ?? 'warn',
    SEED_DEMO: 'false',
    HL7_PORT: '0',
    BOOTSTRAP_CLIENT_ID: TEST_CLIENT_ID,
    BOOTSTRAP_CLIENT_SECRET: TEST_CLIENT_SECRET,
    SUBSCRIPTION_ALLOWED_HOSTS: '127.0.0.1',
  };
  delete env.BASE_URL;
  delete env.WARDLINK_TEST_HOLD_OUTBOX_MS;
  // Its own Redis keys and channels: other runs on the same Redis never see its jobs or events.
  env.WARDLINK_REDIS_PREFIX = process.env.WARDLINK_REDIS_PREFIX ?? `subbench-${process.pid}-${Date.now().toString(36)}`;
  if (REDIS) env.REDIS_URL = REDIS;
  else delete env.REDIS_URL;
  const child = spawn(process.execPath, [...(process.env.SUB_BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.SUB_BENCH_CPU_PROF}`] : []), 'server/main.ts'], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => {
    if (out.length < 100_000) out += d;
    if (process.env.SUB_BENCH_LOG) appendFileSync(process.env.SUB_BENCH_LOG, d);
  });
  child.stderr!.on('data', (d) => { out += d; if (process.env.SUB_BENCH_ECHO) process.stderr.write(d); });
  const deadline = Date.now() + 90_000;
  let m: RegExpMatchArray | null;
  while (!(m = out.replace(/\u001b\[[0-9;]*m/g, '').match(/FHIR base: (\S+)/))) {
    if (child.exitCode !== null) throw new Error(`server exited: ${out}`);
    if (Date.now() > deadline) throw new Error(`server did not start: ${out}`);
    await sleep(100);
  }
  return { child, fhirBase: m[1], origin: new URL(m[1]).origin };
}

const database = await createTestDatabase();
const server = await startChild(database.connectionString);
const token = await systemToken(server.origin, TEST_CLIENT_ID, TEST_CLIENT_SECRET);
const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json', accept: 'application/fhir+json' };

async function fhir(method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${server.fhirBase}/${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : undefined;
}

async function parallel<T>(n: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

async function waitActive(ids: string[], what: string): Promise<void> {
  const until = Date.now() + 120_000;
  const pending = new Set(ids);
  while (pending.size > 0) {
    if (Date.now() > until) throw new Error(`${pending.size} ${what} subscriptions never became active`);
    const bundle = await fhir('GET', `Subscription?status=active&_elements=id&_count=1000`).catch(() => undefined);
    for (const e of bundle?.entry ?? []) pending.delete(e.resource.id);
    // the search pages at _count; check the rest one by one when few remain
    if (pending.size > 0 && pending.size < 50) {
      for (const id of [...pending]) if ((await fhir('GET', `Subscription/${id}`)).status === 'active') pending.delete(id);
    }
    if (pending.size > 0) await sleep(250);
  }
}

const rows: [string, string][] = [];
let exitCode = 0;
const load = (): string => loadavg().map((x) => x.toFixed(2)).join(' ');
rows.push(['load average (1/5/15 min) at start', load()]);
try {
  // ---------------------------------------------------------------- websocket latency
  let t0 = performance.now();
  const wsIds = await parallel(SUBS, 16, async (i) => (await fhir('POST', 'Subscription', subscription('websocket', `Patient?family=${family(i)}`))).id as string);
  await waitActive(wsIds, 'websocket');
  rows.push(['setup: websocket subscriptions created and active', `${SUBS} in ${((performance.now() - t0) / 1000).toFixed(1)} s`]);

  const arrivals = new Map<string, number>(); // Patient id -> first event-notification arrival
  let handshakes = 0;
  let notifications = 0;
  const sockets: WebSocket[] = [];
  const perSocket = Math.ceil(SUBS / SOCKETS);
  for (let s = 0; s < SOCKETS; s++) {
    const ids = wsIds.slice(s * perSocket, (s + 1) * perSocket);
    if (ids.length === 0) break;
    const params = await fhir('POST', 'Subscription/$get-ws-binding-token', { resourceType: 'Parameters', parameter: ids.map((id) => ({ name: 'id', valueId: id })) });
    const bindToken = params.parameter.find((p: { name: string }) => p.name === 'token').valueString as string;
    const wsUrl = params.parameter.find((p: { name: string }) => p.name === 'websocket-url').valueUrl as string;
    const ws = new WebSocket(wsUrl);
    ws.on('message', (data) => {
      const at = performance.now();
      const msg = JSON.parse(data.toString());
      if (msg.resourceType !== 'Bundle') return;
      const params = msg.entry?.[0]?.resource?.parameter as { name: string; valueCode?: string; part?: { name: string; valueReference?: { reference: string } }[] }[];
      const type = params?.find((p) => p.name === 'type')?.valueCode;
      if (type === 'handshake') handshakes++;
      if (type !== 'event-notification') return;
      for (const p of params.filter((x) => x.name === 'notification-event')) {
        notifications++;
        const ref = p.part?.find((q) => q.name === 'focus')?.valueReference?.reference ?? '';
        const id = ref.slice(ref.lastIndexOf('/') + 1);
        if (!arrivals.has(id)) arrivals.set(id, at);
      }
    });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send(`bind-with-token ${bindToken}`);
    sockets.push(ws);
  }
  t0 = performance.now();
  while (handshakes < SUBS && performance.now() - t0 < 60_000) await sleep(50);
  rows.push(['setup: websocket handshakes', `${handshakes} on ${sockets.length} sockets`]);

  // warm-up (not measured)
  await parallel(100, 10, (i) => fhir('POST', 'Patient', { resourceType: 'Patient', name: [{ family: family(i % SUBS) }] }));
  await sleep(1000);
  arrivals.clear();
  notifications = 0;

  const writes: { id?: string; sent: number; done: number; status: number }[] = [];
  const inflight = new Set<Promise<void>>();
  const total = RATE * SECONDS;
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    const w = { sent: performance.now(), done: 0, status: 0 } as (typeof writes)[number];
    writes.push(w);
    const p = fetch(`${server.fhirBase}/Patient`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ resourceType: 'Patient', name: [{ family: family(i % SUBS) }] }),
    })
      .then(async (res) => {
        w.done = performance.now();
        w.status = res.status;
        const body = (await res.json()) as { id?: string };
        w.id = body.id;
      })
      .catch(() => {
        w.done = performance.now();
      })
      .finally(() => inflight.delete(p));
    inflight.add(p);
  }
  await Promise.all(inflight);
  const driveSeconds = (performance.now() - start) / 1000;
  const drainUntil = performance.now() + 15_000;
  const ok = writes.filter((w) => w.status === 201 && w.id);
  while (ok.some((w) => !arrivals.has(w.id!)) && performance.now() < drainUntil) await sleep(50);

  const fromCommit: number[] = [];
  const fromSend: number[] = [];
  const writeMs: number[] = [];
  let early = 0;
  for (const w of ok) {
    writeMs.push(w.done - w.sent);
    const at = arrivals.get(w.id!);
    if (at === undefined) continue;
    if (at < w.done) early++;
    fromCommit.push(Math.max(0, at - w.done));
    fromSend.push(at - w.sent);
  }
  for (const a of [fromCommit, fromSend, writeMs]) a.sort((x, y) => x - y);
  const missing = ok.length - fromCommit.length;
  rows.push([`changes driven (target ${RATE}/s for ${SECONDS} s)`, `${writes.length} in ${driveSeconds.toFixed(1)} s = ${(writes.length / driveSeconds).toFixed(0)}/s, ${writes.length - ok.length} failed`]);
  rows.push(['write (POST Patient) latency p50 / p99', `${pct(writeMs, 50).toFixed(1)} / ${pct(writeMs, 99).toFixed(1)} ms`]);
  rows.push([`committed -> ws message p50 / p99 (${SUBS} subs)`, `${pct(fromCommit, 50).toFixed(1)} / ${pct(fromCommit, 99).toFixed(1)} ms  (max ${fromCommit.at(-1)?.toFixed(1)} ms)`]);
  rows.push(['request sent -> ws message p50 / p99', `${pct(fromSend, 50).toFixed(1)} / ${pct(fromSend, 99).toFixed(1)} ms`]);
  rows.push(['notifications received / missing / before response', `${notifications} / ${missing} / ${early}`]);
  rows.push(['load average after the websocket phase', load()]);
  if (missing > 0) exitCode = 1;
  for (const ws of sockets) ws.close();

  // ---------------------------------------------------------------- rest-hook throughput
  let received = 0;
  let firstAt = 0;
  let lastAt = 0;
  const receiver = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url === '/hook') {
        const now = performance.now();
        received++;
        if (!firstAt) firstAt = now;
        lastAt = now;
      }
      res.statusCode = 200;
      res.end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  const hookIds = await parallel(HOOKS, 8, async () => (await fhir('POST', 'Subscription', subscription('rest-hook', 'Patient?family=HookBench', `${hookUrl}/hook`))).id as string);
  await waitActive(hookIds, 'rest-hook');
  await sleep(500);
  received = 0;
  firstAt = 0;
  const expected = HOOKS * HOOK_CHANGES;
  const hookStart = performance.now();
  await parallel(HOOK_CHANGES, 10, () => fhir('POST', 'Patient', { resourceType: 'Patient', name: [{ family: 'HookBench' }] }));
  const hookWritten = performance.now();
  const hookUntil = hookWritten + 45_000;
  while (received < expected && performance.now() < hookUntil) await sleep(50);
  const span = ((lastAt || performance.now()) - hookStart) / 1000;
  rows.push([`rest-hook: ${HOOKS} subs x ${HOOK_CHANGES} changes (1 event per POST)`, `${received} / ${expected} delivered in ${span.toFixed(1)} s`]);
  rows.push(['rest-hook deliveries/s', `${(received / span).toFixed(0)}/s (writes took ${((hookWritten - hookStart) / 1000).toFixed(1)} s)`]);
  if (received < expected) exitCode = 1;
  rows.push(['load average after the rest-hook phase', load()]);
  await new Promise<void>((resolve) => receiver.close(() => resolve()));
} catch (err) {
  console.error(err);
  exitCode = 1;
} finally {
  const exited = new Promise((resolve) => server.child.once('exit', resolve));
  server.child.kill('SIGTERM');
  await Promise.race([exited, sleep(15_000)]);
  if (server.child.exitCode === null) server.child.kill('SIGKILL');
  await database.drop().catch(() => undefined);
}

const width = Math.max(...rows.map(([k]) => k.length));
console.log(`\nSubscriptions benchmark (PostgreSQL, ${REDIS ? 'BullMQ on Redis' : 'in-process queue'}, server in a child process)`);
for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v}`);
process.exit(exitCode);
