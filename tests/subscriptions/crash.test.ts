// Issue 5: "Kill the server between commit and delivery (a test hook), start it again: the event
// is delivered once." A real server runs in a child process on a fresh PostgreSQL database; the
// test-only hook WARDLINK_TEST_HOLD_OUTBOX_MS (server/jobs/outbox-relay.ts) keeps committed
// outbox rows undelivered for a while, the test kills the process with SIGKILL inside that
// window, starts a new one on the same database (without the hook) and checks that the
// rest-hook receiver gets the event exactly once, with event number 1.
//
// Needs a real PostgreSQL server (DATABASE_URL in the test environment): the in-memory PGlite
// of tests/support/db.ts lives inside the test process and cannot outlive a killed child.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { repoRoot } from '../support/fhir.ts';
import { systemToken, TEST_CLIENT_ID, TEST_CLIENT_SECRET } from '../support/token.ts';
import { startReceiver, statusOf, subscription, waitFor, type Receiver } from './harness.ts';

const realPostgres = Boolean(process.env.DATABASE_URL);
const HOLD_MS = 1500;

let database: TestDatabase | undefined;
let receiver: Receiver | undefined;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  if (!realPostgres) return;
  database = await createTestDatabase();
  receiver = await startReceiver();
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await receiver?.close();
  await database?.drop();
});

interface Child {
  child: ChildProcess;
  fhirBase: string;
  origin: string;
  output: () => string;
}

async function start(extra: Record<string, string>): Promise<Child> {
  const port = 20000 + Math.floor(Math.random() * 5000);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    DATABASE_URL: database!.connectionString,
    LOG_LEVEL: 'info',
    SEED_DEMO: 'false',
    HL7_PORT: '0',
    BOOTSTRAP_CLIENT_ID: TEST_CLIENT_ID,
    BOOTSTRAP_CLIENT_SECRET: TEST_CLIENT_SECRET,
    SUBSCRIPTION_ALLOWED_HOSTS: '127.0.0.1',
    ...extra,
  };
  delete env.REDIS_URL; // the in-process (database-backed) job queue: nothing outside Postgres
  delete env.BASE_URL; // vitest sets BASE_URL=/ (Vite's)
  if (!extra.WARDLINK_TEST_HOLD_OUTBOX_MS) delete env.WARDLINK_TEST_HOLD_OUTBOX_MS;
  const child = spawn(process.execPath, ['server/main.ts'], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const deadline = Date.now() + 90_000;
  let m: RegExpMatchArray | null;
  while (!(m = out.match(/FHIR base: (\S+)/))) {
    if (child.exitCode !== null) throw new Error(`server exited: ${out}`);
    if (Date.now() > deadline) throw new Error(`server did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const fhirBase = m[1].replace(/\u001b\[[0-9;]*m/g, '');
  return { child, fhirBase, origin: new URL(fhirBase).origin, output: () => out };
}

async function fhir(c: Child, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${c.fhirBase}/${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json', accept: 'application/fhir+json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

describe.skipIf(!realPostgres)('crash between commit and delivery', () => {
  it('delivers the event exactly once after a SIGKILL and a restart', async () => {
    const rx = receiver!;
    const first = await start({ WARDLINK_TEST_HOLD_OUTBOX_MS: String(HOLD_MS) });
    const token = await systemToken(first.origin, TEST_CLIENT_ID, TEST_CLIENT_SECRET);
    const fam = `Crash${Date.now()}`;
    const sub = await fhir(first, token, 'POST', 'Subscription', subscription({ channel: 'rest-hook', endpoint: `${rx.url}/hook`, filters: [`Patient?family=${fam}`] }));
    expect(sub.status).toBe(201);
    const id = sub.body.id as string;
    const forSub = () => rx.received.filter((r) => r.bundle.entry?.[0]?.resource && JSON.stringify(r.bundle.entry[0].resource).includes(`Subscription/${id}`));
    // The Subscription's own outbox event is held too: the handshake comes after HOLD_MS.
    await waitFor(() => forSub().some((r) => statusOf(r.bundle).type === 'handshake'), 15_000, 'handshake');
    await waitFor(async () => (await fhir(first, token, 'GET', `Subscription/${id}`)).body.status === 'active', 10_000, 'active');

    const pat = await fhir(first, token, 'POST', 'Patient', { resourceType: 'Patient', name: [{ family: fam }] });
    expect(pat.status).toBe(201);
    // Committed (the 201 came back), not delivered (held): kill the process now.
    await new Promise((r) => setTimeout(r, 200));
    const exited = new Promise((resolve) => first.child.once('exit', resolve));
    first.child.kill('SIGKILL');
    await exited;
    expect(forSub().filter((r) => statusOf(r.bundle).type === 'event-notification')).toEqual([]);
    expect(first.output()).toContain('TEST HOOK');

    const second = await start({});
    const event = await waitFor(() => forSub().find((r) => statusOf(r.bundle).type === 'event-notification'), 20_000, 'event after restart');
    expect(statusOf(event.bundle).events).toEqual([{ number: '1', focus: `${second.fhirBase}/Patient/${pat.body.id}` }]);
    // Give a duplicate the chance to show up, then check there is none.
    await new Promise((r) => setTimeout(r, 1500));
    const events = forSub().filter((r) => statusOf(r.bundle).type === 'event-notification');
    expect(events.flatMap((r) => statusOf(r.bundle).events.map((e) => e.number))).toEqual(['1']);
    expect(forSub().filter((r) => statusOf(r.bundle).type === 'handshake').length).toBe(1);

    const token2 = await systemToken(second.origin, TEST_CLIENT_ID, TEST_CLIENT_SECRET);
    const status = await fhir(second, token2, 'GET', `Subscription/${id}/$status`);
    expect(status.status).toBe(200);
    expect(JSON.stringify(status.body)).toContain('"valueString":"1"');

    const stopped = new Promise((resolve) => second.child.once('exit', resolve));
    second.child.kill('SIGTERM');
    expect(await stopped).toBe(0);
  }, 180_000);
});

describe.skipIf(realPostgres)('crash between commit and delivery (skipped)', () => {
  it.skip('needs DATABASE_URL: the in-memory PGlite of the test process cannot be shared with a killed and restarted child server', () => undefined);
});
