// The bench workloads: fixtures (patients to read and update), the autocannon request shapes for
// each workload, the measuring loop around autocannon, and the Synthea ingest.
import { TEST_CLIENT_ID, TEST_CLIENT_SECRET } from '../support/token.ts';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import autocannon, { type AutocannonOptions, type AutocannonRequest } from 'autocannon';
import type { ServerProc } from './procs.ts';

const FHIR_JSON = 'application/fhir+json';

export interface BenchOptions {
  connections: number;
  seconds: number;
  warmupSeconds: number;
  verbose: boolean;
  /** The bench's database: PostgreSQL backends serving other databases are not counted. */
  databaseName: string;
}

export interface LoadResult {
  name: string;
  seconds: number;
  /** Responses received (any status). */
  total: number;
  ok: number;
  non2xx: number;
  /** Connection errors and timeouts. */
  errors: number;
  /** 2xx responses per second. */
  rps: number;
  p50: number;
  p99: number;
  statuses: Record<string, number>;
  /** SQL statements the server sent per 2xx response. */
  sqlPerReq: number;
  /** Server process CPU per 2xx response, ms. */
  cpuMsPerReq: number;
  /** Whole machine busy (all cores) during the run, %. */
  busyPct: number;
  /** CPU per 2xx response (per resource for ingest), ms: this process (the load generator), all
   *  PostgreSQL processes (Linux /proc; NaN elsewhere), and whatever else ran on the machine. */
  loadgenMsPerReq: number;
  postgresMsPerReq: number;
  otherMsPerReq: number;
  /** Share of the machine (all cores) used by processes outside the bench during the run, %. */
  otherPct: number;
  serverRssMb: number;
  /** For workloads whose unit is not one request (ingest): units per second. */
  unitsPerSec?: number;
  unit?: string;
  notes: string[];
}

// ------------------------------------------------------------------------------------ helpers

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/**
 * CPU used so far by each PostgreSQL process, ms by pid: backends connected to the bench's
 * database plus the shared background processes (WAL writer, checkpointer, autovacuum...), not
 * backends of other databases (other test runs on the machine). Linux /proc only; undefined
 * elsewhere. Compare two snapshots per pid: a process that exits in between is not counted.
 */
export function postgresCpuMs(databaseName: string): Map<number, number> | undefined {
  const byPid = new Map<number, number>();
  let pids: string[];
  try {
    pids = readdirSync('/proc');
  } catch {
    return undefined;
  }
  for (const pid of pids) {
    if (!/^\d+$/.test(pid)) continue;
    let stat: string;
    let cmdline: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      if (stat.slice(stat.indexOf('(') + 1, close) !== 'postgres') continue;
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const clientBackend = /\(\d+\)|\[local\]/.test(cmdline);
      if (clientBackend && !cmdline.includes(` ${databaseName} `)) continue;
      const fields = stat.slice(close + 2).split(' ');
      // utime + stime (fields 14 and 15 of stat) in clock ticks; USER_HZ is 100 on Linux.
      byPid.set(Number(pid), (Number(fields[11]) + Number(fields[12])) * 10);
    } catch {
      continue;
    }
  }
  return byPid;
}

export function postgresDelta(before: Map<number, number> | undefined, after: Map<number, number> | undefined): number {
  if (!before || !after) return NaN;
  let ms = 0;
  for (const [pid, t] of after) ms += t - (before.get(pid) ?? 0);
  return ms;
}

function cpuTimes(databaseName: string): { busy: number; total: number; postgres: Map<number, number> | undefined } {
  let busy = 0;
  let total = 0;
  for (const c of os.cpus()) {
    const t = c.times;
    const all = t.user + t.nice + t.sys + t.idle + t.irq;
    total += all;
    busy += all - t.idle;
  }
  return { busy, total, postgres: postgresCpuMs(databaseName) };
}

/** Machine busy %, and the CPU not used by the server split into load generator and the rest. */
function cpuSplit(
  c0: ReturnType<typeof cpuTimes>,
  c1: ReturnType<typeof cpuTimes>,
  server0: number,
  server1: number,
  loadgen: NodeJS.CpuUsage,
  units: number,
): { busyPct: number; otherPct: number; loadgenMsPerReq: number; postgresMsPerReq: number; otherMsPerReq: number } {
  const busyMs = c1.busy - c0.busy;
  const loadgenMs = (loadgen.user + loadgen.system) / 1000;
  const postgresMs = postgresDelta(c0.postgres, c1.postgres);
  const otherMs = busyMs - loadgenMs - (server1 - server0) - (Number.isNaN(postgresMs) ? 0 : postgresMs);
  return {
    busyPct: (100 * busyMs) / Math.max(1, c1.total - c0.total),
    otherPct: (100 * Math.max(0, otherMs)) / Math.max(1, c1.total - c0.total),
    loadgenMsPerReq: units ? loadgenMs / units : NaN,
    postgresMsPerReq: units ? postgresMs / units : NaN,
    otherMsPerReq: units ? Math.max(0, otherMs) / units : NaN,
  };
}

function header(headers: Record<string, string | string[]>, name: string): string | undefined {
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() === name) return Array.isArray(v) ? v[0] : v;
  }
  return undefined;
}

function versionFromEtag(etag: string | undefined): number | undefined {
  const m = etag && /^(?:W\/)?"(\d+)"$/.exec(etag.trim());
  return m ? Number(m[1]) : undefined;
}

/** Runs fn over items with at most `concurrency` in flight. */
async function parallel<T>(items: T[], concurrency: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  });
  await Promise.all(workers);
}

/** Authorization header of the FHIR server under test (set by run.ts once it is up). */
let authHeaders: Record<string, string> = {};
export function useAuth(headers: Record<string, string>): void {
  authHeaders = headers;
}

function runAutocannon(opts: AutocannonOptions, onResponse: (status: number, ms: number) => void) {
  return new Promise<{ duration: number; errors: number; timeouts: number }>((resolve, reject) => {
    const instance = autocannon(opts, (err, result) => (err ? reject(err) : resolve(result)));
    instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => onResponse(status, ms));
  });
}

// ------------------------------------------------------------------------------------ fixtures

let serial = 0;
/** A small, valid Patient (about 300 bytes). */
export function smallPatient(extra: Record<string, unknown> = {}): Record<string, unknown> {
  const n = ++serial;
  return {
    resourceType: 'Patient',
    identifier: [{ system: 'urn:wardlink:bench', value: `bench-${process.pid}-${n}` }],
    active: true,
    name: [{ use: 'official', family: `Bench${n % 997}`, given: ['Pat', `N${n % 31}`] }],
    gender: n % 2 ? 'female' : 'male',
    birthDate: `19${50 + (n % 50)}-0${1 + (n % 9)}-1${n % 10}`,
    telecom: [{ system: 'phone', value: `555-${String(n % 10000).padStart(4, '0')}` }],
    ...extra,
  };
}

async function createOn(url: string, body: string, contentType: string): Promise<{ location: string; etag?: string; text: string }> {
  const res = await fetch(url, { method: 'POST', headers: { ...authHeaders, 'content-type': contentType }, body });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`POST ${url} answered ${res.status}: ${text.slice(0, 500)}`);
  return { location: res.headers.get('location') ?? '', etag: res.headers.get('etag') ?? undefined, text };
}

/** Patients whose current version the bench tracks, so every update can send the right If-Match. */
export class VersionedPool {
  private readonly versions = new Map<string, number>();
  private free: string[] = [];
  private readonly busy = new Set<string>();
  private readonly fhirUrl: string;
  refreshed = 0;

  constructor(fhirUrl: string) {
    this.fhirUrl = fhirUrl;
  }

  add(id: string, version: number): void {
    this.versions.set(id, version);
    this.free.push(id);
  }

  get size(): number {
    return this.versions.size;
  }

  /** A patient nobody is updating right now, with its current version. */
  take(): { id: string; version: number } {
    let id = this.free.shift();
    if (id === undefined) {
      // Should not happen with the pool much larger than the connection count; fall back to any.
      id = [...this.versions.keys()][Math.floor(Math.random() * this.versions.size)];
    }
    this.busy.add(id);
    return { id, version: this.versions.get(id) as number };
  }

  /** Called with the update's response; an unusable answer makes the pool re-read the version. */
  done(id: string, status: number, etag: string | undefined): void {
    const v = status >= 200 && status < 300 ? versionFromEtag(etag) : undefined;
    if (v === undefined) {
      void this.refresh(id);
      return;
    }
    this.versions.set(id, v);
    this.busy.delete(id);
    this.free.push(id);
  }

  private async refresh(id: string): Promise<void> {
    const res = await fetch(`${this.fhirUrl}/fhir/Patient/${id}`, { headers: authHeaders });
    await res.arrayBuffer();
    const v = versionFromEtag(res.headers.get('etag') ?? undefined);
    this.refreshed++;
    this.busy.delete(id);
    if (v !== undefined) {
      this.versions.set(id, v);
      this.free.push(id);
    }
  }

  /** After a run stops, requests that were in flight never answered: re-read those versions. */
  async reclaim(): Promise<void> {
    await new Promise((r) => setTimeout(r, 300));
    const lost = [...this.busy];
    this.free = this.free.filter((id) => !this.busy.has(id));
    await parallel(lost, 10, (id) => this.refresh(id));
  }
}

export interface Fixtures {
  /** Ids of Patients in the FHIR server, for reads. */
  readIds: string[];
  /** Ids of rows in the ceiling table holding the same JSON, for the SELECT ceiling. */
  ceilingIds: string[];
  updates: VersionedPool;
}

export async function seed(fhir: ServerProc, ceiling: ServerProc, readCount: number, updateCount: number): Promise<Fixtures> {
  const readIds: string[] = [];
  const ceilingIds: string[] = [];
  const updates = new VersionedPool(fhir.url);
  await parallel(Array.from({ length: readCount }), 8, async () => {
    const created = await createOn(`${fhir.url}/fhir/Patient`, JSON.stringify(smallPatient()), FHIR_JSON);
    const stored = JSON.parse(created.text) as { id: string };
    readIds.push(stored.id);
    // The ceiling stores exactly what the FHIR server returns for a read: same bytes to send.
    const c = await createOn(`${ceiling.url}/ceiling`, created.text, 'application/json');
    ceilingIds.push(c.location.split('/').pop() as string);
  });
  await parallel(Array.from({ length: updateCount }), 8, async () => {
    const created = await createOn(`${fhir.url}/fhir/Patient`, JSON.stringify(smallPatient()), FHIR_JSON);
    const stored = JSON.parse(created.text) as { id: string; meta: { versionId: string } };
    updates.add(stored.id, Number(stored.meta.versionId));
  });
  return { readIds, ceilingIds, updates };
}

// ------------------------------------------------------------------------------------ request shapes

export type Shape = () => Omit<AutocannonOptions, 'url' | 'connections' | 'duration'>;

export function readShape(pathPrefix: string, ids: string[]): Shape {
  let i = 0;
  return () => ({
    requests: [
      {
        method: 'GET',
        setupRequest(req) {
          req.path = `${pathPrefix}/${ids[i++ % ids.length]}`;
          return req;
        },
      },
    ],
  });
}

/** Prebuilt bodies, rotated, so the load generator spends its CPU sending, not building. */
function rotating(bodies: string[]): () => string {
  let i = 0;
  return () => bodies[i++ % bodies.length];
}

export function createShape(pathName: string, contentType: string): Shape {
  const next = rotating(Array.from({ length: 200 }, () => JSON.stringify(smallPatient())));
  return () => ({
    requests: [
      {
        method: 'POST',
        path: pathName,
        headers: { 'content-type': contentType },
        setupRequest(req) {
          req.body = next();
          return req;
        },
      },
    ],
  });
}

function updateRequest(pool: VersionedPool, req: AutocannonRequest, context: Record<string, unknown>): AutocannonRequest {
  const { id, version } = pool.take();
  context.id = id;
  req.method = 'PUT';
  req.path = `/fhir/Patient/${id}`;
  req.headers = { ...authHeaders, 'content-type': FHIR_JSON, 'if-match': `W/"${version}"` };
  req.body = JSON.stringify(smallPatient({ id }));
  return req;
}

function updateDone(pool: VersionedPool, status: number, context: Record<string, unknown>, headers: Record<string, string | string[]>) {
  pool.done(context.id as string, status, header(headers, 'etag'));
}

export function updateShape(pool: VersionedPool): Shape {
  return () => ({
    requests: [
      {
        setupRequest: (req, context) => updateRequest(pool, req, context),
        onResponse: (status, _body, context, headers) => updateDone(pool, status, context, headers),
      },
    ],
  });
}

/** 10 Patients with urn:uuid fullUrls, each linking to the one before (Patient.link.other). */
export function transactionBundle(size = 10): string {
  const uuids = Array.from({ length: size }, () => `urn:uuid:${randomUUID()}`);
  return JSON.stringify({
    resourceType: 'Bundle',
    type: 'transaction',
    entry: uuids.map((fullUrl, i) => ({
      fullUrl,
      resource: smallPatient(i === 0 ? {} : { link: [{ other: { reference: uuids[i - 1] }, type: 'seealso' }] }),
      request: { method: 'POST', url: 'Patient' },
    })),
  });
}

/** POST /oauth2/token: client_credentials with client_secret_basic (the bootstrap client). */
export function tokenShape(): Shape {
  const basic = Buffer.from(`${encodeURIComponent(TEST_CLIENT_ID)}:${encodeURIComponent(TEST_CLIENT_SECRET)}`).toString('base64');
  return () => ({
    requests: [
      {
        method: 'POST',
        path: '/oauth2/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${basic}` },
        body: 'grant_type=client_credentials&scope=system%2F*.cruds',
      },
    ],
  });
}

export function transactionShape(): Shape {
  const next = rotating(Array.from({ length: 50 }, () => transactionBundle(10)));
  return () => ({
    requests: [
      {
        method: 'POST',
        path: '/fhir',
        headers: { 'content-type': FHIR_JSON },
        setupRequest(req) {
          req.body = next();
          return req;
        },
      },
    ],
  });
}

/** create, read, update in turn (1/3 each). */
export function mixedShape(readIds: string[], pool: VersionedPool): Shape {
  const nextCreate = rotating(Array.from({ length: 200 }, () => JSON.stringify(smallPatient())));
  let turn = 0;
  let r = 0;
  return () => ({
    requests: [
      {
        setupRequest(req, context) {
          const kind = turn++ % 3;
          context.kind = kind;
          if (kind === 0) {
            req.method = 'POST';
            req.path = '/fhir/Patient';
            req.headers = { ...authHeaders, 'content-type': FHIR_JSON };
            req.body = nextCreate();
            return req;
          }
          if (kind === 1) {
            req.method = 'GET';
            req.path = `/fhir/Patient/${readIds[r++ % readIds.length]}`;
            req.headers = { ...authHeaders };
            req.body = undefined;
            return req;
          }
          return updateRequest(pool, req, context);
        },
        onResponse(status, _body, context, headers) {
          if (context.kind === 2) updateDone(pool, status, context, headers);
        },
      },
    ],
  });
}

// ------------------------------------------------------------------------------------ measuring

export async function measure(name: string, target: ServerProc, shape: Shape, opts: BenchOptions, after?: () => Promise<void>): Promise<LoadResult> {
  const base = { url: target.url, connections: opts.connections, timeout: 30, headers: target.headers };
  if (opts.warmupSeconds > 0) {
    await runAutocannon({ ...base, duration: opts.warmupSeconds, ...shape() }, () => {});
    await after?.();
  }
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let ok = 0;
  const s0 = await target.stats();
  const c0 = cpuTimes(opts.databaseName);
  const l0 = process.cpuUsage();
  const result = await runAutocannon({ ...base, duration: opts.seconds, ...shape() }, (status, ms) => {
    latencies.push(ms);
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (status >= 200 && status < 300) ok++;
  });
  const l1 = process.cpuUsage(l0);
  const c1 = cpuTimes(opts.databaseName);
  const s1 = await target.stats();
  await after?.();
  const sorted = Float64Array.from(latencies).sort();
  const total = latencies.length;
  return {
    name,
    seconds: result.duration,
    total,
    ok,
    non2xx: total - ok,
    errors: result.errors,
    rps: ok / result.duration,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    statuses,
    sqlPerReq: ok ? (s1.queries - s0.queries) / ok : NaN,
    cpuMsPerReq: ok ? (s1.cpuMs - s0.cpuMs) / ok : NaN,
    ...cpuSplit(c0, c1, s0.cpuMs, s1.cpuMs, l1, ok),
    serverRssMb: s1.rssMb,
    notes: [],
  };
}

// ------------------------------------------------------------------------------------ Synthea

export interface SyntheaCorpus {
  files: string[];
  bodies: string[];
  entries: number[];
}

export async function loadSynthea(dir: string): Promise<SyntheaCorpus> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
  // Organizations and Practitioners first, as a loader would; patient bundles carry their own copies.
  files.sort((a, b) => Number(/Information/.test(b)) - Number(/Information/.test(a)));
  const bodies: string[] = [];
  const entries: number[] = [];
  for (const f of files) {
    const text = await readFile(path.join(dir, f), 'utf8');
    const bundle = JSON.parse(text) as { type?: string; entry?: unknown[] };
    if (bundle.type !== 'transaction') throw new Error(`${f} is not a transaction Bundle`);
    bodies.push(text);
    entries.push(bundle.entry?.length ?? 0);
  }
  return { files, bodies, entries };
}

/**
 * POSTs every bundle of the corpus, `concurrency` at a time, and keeps going round the corpus
 * until `minSeconds` have passed (at least one full pass). Resources per second = entries of the
 * bundles that committed / wall time.
 */
export async function ingest(target: ServerProc, corpus: SyntheaCorpus, concurrency: number, minSeconds: number, opts: BenchOptions): Promise<LoadResult> {
  const post = async (i: number) => {
    const t = performance.now();
    const res = await fetch(`${target.url}/fhir`, { method: 'POST', headers: { ...authHeaders, 'content-type': FHIR_JSON }, body: corpus.bodies[i] });
    const text = await res.text();
    return { status: res.status, ms: performance.now() - t, text };
  };
  // Warm-up: one patient bundle, not counted.
  await post(corpus.bodies.length - 1);

  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  const notes: string[] = [];
  let resources = 0;
  let ok = 0;
  let passes = 0;
  let next = 0;
  const s0 = await target.stats();
  const c0 = cpuTimes(opts.databaseName);
  const l0 = process.cpuUsage();
  const start = performance.now();
  const elapsed = () => (performance.now() - start) / 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (;;) {
        if (next >= corpus.bodies.length) {
          if (elapsed() >= minSeconds) return;
          next = 0;
        }
        const i = next++;
        if (i === corpus.bodies.length - 1) passes++;
        const r = await post(i);
        latencies.push(r.ms);
        statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        if (r.status === 200) {
          ok++;
          resources += corpus.entries[i];
        } else if (notes.length < 3) {
          notes.push(`${corpus.files[i]} answered ${r.status}: ${r.text.slice(0, 300)}`);
        }
      }
    }),
  );
  const seconds = elapsed();
  const l1 = process.cpuUsage(l0);
  const c1 = cpuTimes(opts.databaseName);
  const s1 = await target.stats();
  const sorted = Float64Array.from(latencies).sort();
  if (passes > 1) notes.push(`the corpus (${corpus.bodies.length} bundles) was posted ${passes} times to fill ${minSeconds} s`);
  return {
    name: 'ingest',
    seconds,
    total: latencies.length,
    ok,
    non2xx: latencies.length - ok,
    errors: 0,
    rps: ok / seconds,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    statuses,
    sqlPerReq: resources ? (s1.queries - s0.queries) / resources : NaN,
    cpuMsPerReq: resources ? (s1.cpuMs - s0.cpuMs) / resources : NaN,
    ...cpuSplit(c0, c1, s0.cpuMs, s1.cpuMs, l1, resources),
    serverRssMb: s1.rssMb,
    unitsPerSec: resources / seconds,
    unit: 'resources',
    notes,
  };
}
