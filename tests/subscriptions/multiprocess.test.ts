// websocket delivery across server processes (server/subscriptions/fanout.ts): two
// `node server/main.ts` children share one PostgreSQL and one Redis; a websocket client bound on
// process B gets every event, including those whose outbox rows process A relayed (each row is
// relayed by whichever process claims it). Writes go to A, so with two relays polling, about
// half of the events are relayed by A: without the Redis fan-out they would never reach B's socket.
// Also: a Subscription written on one process is matched by the other at once (each relay
// syncs its registry from the outbox before matching a batch, not only when told over Redis);
// rest-hook heartbeats keep their period with two processes (last sent time is in the
// database); Subscription.end turns a subscription off and the socket holding it (on the
// other process) is unbound.
// Needs DATABASE_URL (children cannot share an in-memory PGlite) and a Redis.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { startServerProcess, stopServerProcesses, type ServerProcess } from '../support/server-process.ts';
import { systemToken, TEST_CLIENT_ID, TEST_CLIENT_SECRET } from '../support/token.ts';
import { testRedisUrl, uniquePrefix } from '../jobs/support.ts';
import { startReceiver, statusOf, subscription, waitFor, type Receiver } from './harness.ts';

const redisUrl = await testRedisUrl();
const skipReason = !process.env.DATABASE_URL
  ? 'no DATABASE_URL: server processes need a real PostgreSQL to share'
  : !redisUrl
    ? 'no REDIS_URL and no Redis answering on 127.0.0.1:6379'
    : undefined;
if (skipReason) console.warn(`tests/subscriptions/multiprocess.test.ts skipped: ${skipReason}`);

const prefix = uniquePrefix();
let database: TestDatabase | undefined;

type Proc = ServerProcess;

function startProcess(name: string, redisPrefix = prefix): Promise<Proc> {
  return startServerProcess(name, {
    DATABASE_URL: database!.connectionString,
    REDIS_URL: redisUrl,
    WARDLINK_REDIS_PREFIX: redisPrefix,
    SUBSCRIPTION_ALLOWED_HOSTS: '127.0.0.1',
    WARDLINK_TEST_HOLD_OUTBOX_MS: undefined,
  });
}

beforeAll(async () => {
  if (skipReason) return;
  database = await createTestDatabase();
});
let receiver: Receiver | undefined;
afterAll(async () => {
  await receiver?.close();
  await stopServerProcesses();
  await database?.drop();
});

let procs: { a: Proc; b: Proc; call: (p: Proc, method: string, path: string, body?: unknown) => Promise<{ status: number; body: any }> } | undefined;

async function twoProcesses(): Promise<NonNullable<typeof procs>> {
  if (procs) return procs;
  const a = await startProcess('A');
  const b = await startProcess('B');
  // Each process signs its own tokens: ask each for one.
  const tokens = new Map<Proc, string>();
  for (const p of [a, b]) tokens.set(p, await systemToken(p.origin, TEST_CLIENT_ID, TEST_CLIENT_SECRET));
  const call = async (p: Proc, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${p.fhirBase}/${path}`, {
      method,
      headers: { authorization: `Bearer ${tokens.get(p)}`, 'content-type': 'application/fhir+json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  procs = { a, b, call };
  return procs;
}

describe.skipIf(Boolean(skipReason))('websocket events across processes (Redis fan-out)', () => {
  it('a client bound on one process gets the events relayed by the other', async () => {
    const { a, b, call } = await twoProcesses();
    const fam = `Multi${Date.now()}`;
    const sub = await call(a, 'POST', 'Subscription', subscription({ channel: 'websocket', filters: [`Patient?family=${fam}`] }));
    expect(sub.status).toBe(201);
    const id = sub.body.id as string;
    await waitFor(async () => (await call(b, 'GET', `Subscription/${id}`)).body.status === 'active', 10_000, 'active');
    const bound = await call(b, 'POST', 'Subscription/$get-ws-binding-token', { resourceType: 'Parameters', parameter: [{ name: 'id', valueId: id }] });
    const bindToken = bound.body.parameter.find((p: { name: string }) => p.name === 'token').valueString as string;
    const ws = new WebSocket(`${b.origin.replace('http', 'ws')}/fhir/ws`);
    const messages: any[] = [];
    ws.on('message', (d) => messages.push(JSON.parse(d.toString())));
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send(`bind-with-token ${bindToken}`);
    await waitFor(() => messages.some((m) => m.resourceType === 'Bundle' && statusOf(m).type === 'handshake'), 5000, 'handshake');

    const N = 12;
    for (let i = 0; i < N; i++) {
      expect((await call(a, 'POST', 'Patient', { resourceType: 'Patient', name: [{ family: fam }] })).status).toBe(201);
      await new Promise((r) => setTimeout(r, 60)); // spread over several relay polls of both processes
    }
    const numbers = () =>
      messages.filter((m) => m.resourceType === 'Bundle' && statusOf(m).type === 'event-notification').flatMap((m) => statusOf(m).events.map((e) => Number(e.number)));
    await waitFor(() => numbers().length >= N, 10_000, `${N} events on B's socket`);
    await new Promise((r) => setTimeout(r, 300));
    expect(numbers().sort((x, y) => x - y)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    ws.close();
  }, 120_000);

  it('a Subscription written on one process matches events written on the other right after, without Redis telling it', async () => {
    const { a, call } = await twoProcesses();
    // C shares the database but not the Redis prefix: no fan-out, no announcement reaches it.
    // What it knows of Subscriptions written on A comes from the outbox (the registry sync).
    const b = await startProcess('C', `${prefix}-c`);
    const token = await systemToken(b.origin, TEST_CLIENT_ID, TEST_CLIENT_SECRET);
    const callC = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${b.fhirBase}/${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as any };
    };
    const run = `Race${Date.now()}`;
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) {
      const sub = await call(a, 'POST', 'Subscription', subscription({ channel: 'websocket', filters: [`Patient?family=${run}x${i}`] }));
      expect(sub.status).toBe(201);
      ids.push(sub.body.id);
      // No wait: the Patient is written on B the moment A answered for the Subscription.
      expect((await callC('POST', 'Patient', { resourceType: 'Patient', name: [{ family: `${run}x${i}` }] })).status).toBe(201);
    }
    for (const id of ids) {
      const numbers = await waitFor(async () => {
        const replay = await call(a, 'GET', `Subscription/${id}/$events`);
        const got = statusOf(replay.body).events.map((e) => e.number);
        return got.length > 0 && got;
      }, 5_000, `event of Subscription/${id}`);
      expect(numbers).toEqual(['1']);
    }
    await b.kill();
  }, 120_000);

  it('rest-hook heartbeats keep their period with two processes; end turns a subscription off and unbinds it on the other process', async () => {
    const { a, b, call } = await twoProcesses();
    receiver = await startReceiver();
    const rx = receiver;
    const hook = await call(a, 'POST', 'Subscription', subscription({ channel: 'rest-hook', endpoint: `${rx.url}/beat`, filters: ['Patient?family=NobodyAtAll'], heartbeat: 1 }));
    expect(hook.status).toBe(201);
    const beats = () => rx.received.filter((r) => r.path === '/beat' && statusOf(r.bundle).type === 'heartbeat');
    const arrivals: number[] = [];
    const seen = new Set<unknown>();
    const until = Date.now() + 5000;
    while (Date.now() < until) {
      for (const r of beats()) if (!seen.has(r)) (seen.add(r), arrivals.push(Date.now()));
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(arrivals.length).toBeGreaterThanOrEqual(2);
    // Both processes run the heartbeat sweep; one period (1 s) still separates two heartbeats.
    const gaps = arrivals.slice(1).map((t, i) => t - arrivals[i]);
    expect(Math.min(...gaps)).toBeGreaterThan(850);
    expect(arrivals.length).toBeLessThanOrEqual(6);

    const fam = `End${Date.now()}`;
    const ending = await call(a, 'POST', 'Subscription', { ...subscription({ channel: 'websocket', filters: [`Patient?family=${fam}`] }), end: new Date(Date.now() + 3000).toISOString() });
    const id = ending.body.id as string;
    await waitFor(async () => (await call(b, 'GET', `Subscription/${id}`)).body.status === 'active', 10_000, 'active');
    const bound = await call(b, 'POST', 'Subscription/$get-ws-binding-token', { resourceType: 'Parameters', parameter: [{ name: 'id', valueId: id }] });
    const ws = new WebSocket(`${b.origin.replace('http', 'ws')}/fhir/ws`);
    const messages: any[] = [];
    ws.on('message', (d) => messages.push(JSON.parse(d.toString())));
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send(`bind-with-token ${bound.body.parameter.find((p: { name: string }) => p.name === 'token').valueString}`);
    await waitFor(() => messages.some((m) => m.resourceType === 'Bundle' && statusOf(m).type === 'handshake'), 5000, 'handshake');
    await waitFor(async () => (await call(a, 'GET', `Subscription/${id}`)).body.status === 'off', 10_000, 'off');
    expect(await closed).toBe(4001);
  }, 120_000);
});
