// SLA timers across real server processes (`node server/main.ts` children on one PostgreSQL and
// one Redis, BullMQ keys under a per-run WARDLINK_REDIS_PREFIX):
//  (a) a consult's timer is in Redis, the process is SIGKILLed before the due time, a new process
//      on the same database + Redis starts, and the escalation happens exactly once;
//  (b) two processes share the work: overdue consults (created before they start, so both start
//      sweeps race for them, and while they run) each escalate exactly once.
// Short SLAs come from the department SLA extension itself (decimal minutes: 0.15 min = 9 s), no
// test-only switch. Consults are created in the test process through the engine on the shared
// database (client-credentials tokens carry no clinician role); the servers see the Task through
// the outbox and schedule its timer, exactly as for a Task created over HTTP.
// Needs DATABASE_URL (child processes cannot share an in-memory PGlite) and a Redis.
import type { Organization, Resource, Task } from '@medplum/fhirtypes';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../server/db/migrate.ts';
import { createDb, type Db } from '../../server/db/pool.ts';
import { loadDefinitions } from '../../server/fhir/definitions.ts';
import { Repository } from '../../server/fhir/repository.ts';
import type { FhirContext } from '../../server/fhir/request.ts';
import { createBullmqQueue, type BullmqJobQueue } from '../../server/jobs/bullmq.ts';
import { createLogger } from '../../server/logger.ts';
import { createRequest, dueOf, escalationLevel, SLA_QUEUE, slaJobId } from '../../server/workflow/engine.ts';
import { EXT_DEPARTMENT_SLA, WORKFLOW_STATUS_SYSTEM } from '../../server/workflow/model.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { startServerProcess, stopServerProcesses, type ServerProcess } from '../support/server-process.ts';
import { systemToken, TEST_CLIENT_ID, TEST_CLIENT_SECRET } from '../support/token.ts';
import { testRedisUrl, uniquePrefix } from '../jobs/support.ts';

const redisUrl = await testRedisUrl();
const skipReason = !process.env.DATABASE_URL
  ? 'no DATABASE_URL: server processes need a real PostgreSQL to share'
  : !redisUrl
    ? 'no REDIS_URL and no Redis answering on 127.0.0.1:6379'
    : undefined;
if (skipReason) console.warn(`tests/workflow/processes.test.ts skipped: ${skipReason}`);

const BASE = 'http://test.local/fhir';
const log = createLogger('silent');
const prefix = uniquePrefix();
let database: TestDatabase;
let db: Db;
let trusted: FhirContext;
let inspector: BullmqJobQueue;
const ids: Record<string, string> = {};

type Proc = ServerProcess;

function startProcess(name: string): Promise<Proc> {
  return startServerProcess(name, { DATABASE_URL: database.connectionString, REDIS_URL: redisUrl, WARDLINK_REDIS_PREFIX: prefix });
}

function kill(p: Proc, signal: NodeJS.Signals): Promise<void> {
  return p.kill(signal);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(fn: () => Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function make(key: string, resource: Resource): Promise<void> {
  const r = await trusted.repo.create(resource);
  ids[key] = r.id as string;
}

function department(name: string, statMinutes: number): Organization {
  return {
    resourceType: 'Organization',
    name,
    partOf: { reference: `Organization/${ids.hospital}` },
    extension: [
      {
        url: EXT_DEPARTMENT_SLA,
        extension: [
          { url: 'stat', valueDecimal: statMinutes },
          { url: 'urgent', valueDecimal: 120 },
          { url: 'routine', valueDecimal: 600 },
          // The second tier stays far away: one escalation per consult is the whole story here.
          { url: 'second-tier-delay', valueDecimal: 600 },
          { url: 'head', valueReference: { reference: `Practitioner/${ids.head}` } },
        ],
      },
    ],
  };
}

async function consult(dept: string): Promise<Task> {
  const created = await createRequest(trusted, {
    workflow: 'consult',
    patient: `Patient/${ids.patient}`,
    performer: `Organization/${ids[dept]}`,
    priority: 'stat',
    requester: `Practitioner/${ids.requester}`,
  });
  return created.task;
}

const readTask = (id: string) => trusted.repo.readResource<Task>('Task', id);
const seedOf = (t: Task) => t.businessStatus?.coding?.find((c) => c.system === WORKFLOW_STATUS_SYSTEM)?.code;

/** Escalation Provenances recorded for a Task (its relevantHistory, as the engine links them). */
async function escalations(id: string): Promise<number> {
  const task = await readTask(id);
  let n = 0;
  for (const h of task.relevantHistory ?? []) {
    const [type, pid] = (h.reference as string).split('/');
    const p = await trusted.repo.readResource<any>(type, pid);
    if (p.activity?.coding?.[0]?.code === 'escalated') n++;
  }
  return n;
}

async function timerInRedis(taskId: string): Promise<boolean> {
  return !!(await inspector.queue(SLA_QUEUE).getDeduplicationJobId(slaJobId(taskId)));
}

beforeAll(async () => {
  if (skipReason) return;
  loadDefinitions();
  database = await createTestDatabase();
  await migrate(database.connectionString);
  db = createDb(database.connectionString, 4);
  trusted = { repo: new Repository(db, { baseUrl: BASE }, db), fhirBase: BASE, defaultCount: 50, maxCount: 500, maxBinaryBytes: 1 << 20 };
  inspector = createBullmqQueue({ redisUrl: redisUrl!, log, prefix });
  await make('hospital', { resourceType: 'Organization', name: 'Process Test Hospital' });
  await make('requester', { resourceType: 'Practitioner', name: [{ family: 'Requester' }] });
  await make('head', { resourceType: 'Practitioner', name: [{ family: 'Head' }] });
  await make('patient', { resourceType: 'Patient', name: [{ family: 'Patient' }], managingOrganization: { reference: `Organization/${ids.hospital}` } });
  await make('slow', department('Cardiology (stat 9 s)', 0.15));
  await make('fast', department('Neurology (stat 1.2 s)', 0.02));
}, 60_000);

afterAll(async () => {
  if (skipReason) return;
  await stopServerProcesses();
  await inspector?.close();
  // Leave nothing behind in the shared Redis.
  const redis = new Redis(redisUrl!);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await redis.del(...keys);
  } while (cursor !== '0');
  await redis.quit();
  await db?.close();
  await database?.drop();
}, 60_000);

describe.skipIf(!!skipReason)('SLA timers across server processes (Postgres + Redis)', () => {
  it('survives a SIGKILL before the due time: the new process escalates exactly once', async () => {
    const first = await startProcess('first');
    const task = await consult('slow');
    const due = dueOf(task)!.getTime();
    // The running server saw the Task (outbox) and put its timer in Redis.
    await waitFor(() => timerInRedis(task.id!), 10_000, 'the SLA timer in Redis');
    expect(Date.now()).toBeLessThan(due);
    await kill(first, 'SIGKILL');
    expect(first.child.signalCode).toBe('SIGKILL');
    const before = await readTask(task.id!);
    expect(escalationLevel(before)).toBe(0);
    expect(Date.now()).toBeLessThan(due); // killed before it was due

    const second = await startProcess('second');
    const escalated = await waitFor(async () => {
      const t = await readTask(task.id!);
      return escalationLevel(t) > 0 && t;
    }, due - Date.now() + 20_000, 'the escalation');
    expect(seedOf(escalated)).toBe('ESCALATED');
    expect(escalated.businessStatus?.text).toMatch(/escalat/i);
    // Nothing else fires for it (a duplicate timer, a second sweep).
    await sleep(2_000);
    expect(escalationLevel(await readTask(task.id!))).toBe(1);
    expect(await escalations(task.id!)).toBe(1);
    // And the restarted server serves the escalated Task over HTTP.
    const token = await systemToken(second.origin, TEST_CLIENT_ID, TEST_CLIENT_SECRET);
    const res = await fetch(`${second.origin}/fhir/Task/${task.id}`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(seedOf((await res.json()) as Task)).toBe('ESCALATED');
    await kill(second, 'SIGTERM');
  }, 120_000);

  it('two processes on one Postgres + Redis escalate each overdue consult exactly once', async () => {
    // Overdue before either process starts: both start sweeps schedule them at once.
    const early: Task[] = [];
    for (let i = 0; i < 10; i++) early.push(await consult('fast'));
    await sleep(1_500);
    const [a, b] = await Promise.all([startProcess('A'), startProcess('B')]);
    // And more while both run (each timer is added by whichever process relays the event).
    const late: Task[] = [];
    for (let i = 0; i < 10; i++) late.push(await consult('fast'));
    const all = [...early, ...late];
    await waitFor(async () => {
      for (const t of all) if (escalationLevel(await readTask(t.id!)) === 0) return false;
      return true;
    }, 30_000, 'every consult escalated');
    await sleep(2_000);
    for (const t of all) {
      const now = await readTask(t.id!);
      expect(seedOf(now)).toBe('ESCALATED');
      expect(escalationLevel(now)).toBe(1);
      expect(await escalations(t.id!)).toBe(1);
    }
    // Both processes took part in the run (each has a worker on the queue).
    const workers = await inspector.queue(SLA_QUEUE).getWorkers();
    expect(workers.length).toBeGreaterThanOrEqual(2);
    await Promise.all([kill(a, 'SIGTERM'), kill(b, 'SIGTERM')]);
  }, 120_000);
});
