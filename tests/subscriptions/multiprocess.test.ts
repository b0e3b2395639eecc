// websocket delivery across server processes (server/subscriptions/fanout.ts): two
// `node server/main.ts` children share one PostgreSQL and one Redis; a websocket client bound on
// process B gets every event, including those whose outbox rows process A relayed (each row is
// relayed by whichever process claims it). Writes go to A, so with two relays polling, about
// half of the events are relayed by A: without the Redis fan-out they would never reach B's socket.
// Needs DATABASE_URL (children cannot share an in-memory PGlite) and a Redis.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { startServerProcess, stopServerProcesses, type ServerProcess } from '../support/server-process.ts';
import { systemToken, TEST_CLIENT_ID, TEST_CLIENT_SECRET } from '../support/token.ts';
import { testRedisUrl, uniquePrefix } from '../jobs/support.ts';
import { statusOf, subscription, waitFor } from './harness.ts';

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

function startProcess(name: string): Promise<Proc> {
  return startServerProcess(name, {
    DATABASE_URL: database!.connectionString,
    REDIS_URL: redisUrl,
    WARDLINK_REDIS_PREFIX: prefix,
    SUBSCRIPTION_ALLOWED_HOSTS: '127.0.0.1',
    WARDLINK_TEST_HOLD_OUTBOX_MS: undefined,
  });
}

beforeAll(async () => {
  if (skipReason) return;
  database = await createTestDatabase();
});
afterAll(async () => {
  await stopServerProcesses();
  await database?.drop();
});

describe.skipIf(Boolean(skipReason))('websocket events across processes (Redis fan-out)', () => {
  it('a client bound on one process gets the events relayed by the other', async () => {
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
});
