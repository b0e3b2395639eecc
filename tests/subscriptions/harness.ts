// A real Wardlink server with subscriptions running, a rest-hook receiver and helpers, for the
// subscription tests. server.ts starts the subscriptions and serves the websocket endpoint on the
// server's own port (so tests also go through the relay wake-up on API writes).
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Bundle, Parameters } from '@medplum/fhirtypes';
import { loadConfig } from '../../server/config.ts';
import { createLogger } from '../../server/logger.ts';
import { startServer, type RunningServer } from '../../server/server.ts';
import { startSubscriptions, WS_PATH, type RunningSubscriptions } from '../../server/subscriptions/index.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { systemToken, TEST_CLIENT_ID, TEST_CLIENT_SECRET } from '../support/token.ts';

export interface Harness {
  server: RunningServer;
  subs: RunningSubscriptions;
  token: string;
  wsUrl: string;
  receiver: Receiver;
  fhir(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: any }>;
  tokenFor(scope: string): Promise<string>;
  close(): Promise<void>;
}

export interface Received {
  path: string;
  headers: IncomingMessage['headers'];
  bundle: Bundle;
}

export interface Receiver {
  url: string;
  received: Received[];
  /** Status the receiver answers with (default 200). */
  respond: (path: string) => number;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const r: Receiver = { url: '', received: [], respond: () => 200, close: async () => undefined };
  const server: Server = createServer((req, res) => {
    let data = '';
    req.on('data', (c) => (data += c));
    req.on('end', () => {
      const status = r.respond(req.url ?? '/');
      if (status < 300) r.received.push({ path: req.url ?? '/', headers: req.headers, bundle: JSON.parse(data) });
      res.statusCode = status;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  r.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return r;
}

export async function startHarness(env: Record<string, string> = {}): Promise<Harness> {
  const database: TestDatabase = await createTestDatabase();
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: database.connectionString,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    HL7_PORT: '0',
    HL7_ENABLED: 'false',
    SEED_DEMO: 'false',
    BOOTSTRAP_CLIENT_ID: TEST_CLIENT_ID,
    BOOTSTRAP_CLIENT_SECRET: TEST_CLIENT_SECRET,
    SUBSCRIPTION_ALLOWED_HOSTS: '127.0.0.1',
    SUBSCRIPTION_RETRY_ATTEMPTS: '3',
    SUBSCRIPTION_RETRY_BACKOFF_MS: '200',
    ...env,
  });
  const log = createLogger(config.logLevel);
  const server = await startServer(config, log);
  // The running engine server.ts started (one per outbox relay).
  const subs = await startSubscriptions({ config, db: server.db, log, jobs: server.jobs, outbox: server.outbox });
  const wsUrl = `${server.url.replace(/^http/, 'ws')}${WS_PATH}`;
  const token = await systemToken(server.url, TEST_CLIENT_ID, TEST_CLIENT_SECRET);
  const receiver = await startReceiver();
  return {
    server,
    subs,
    token,
    wsUrl,
    receiver,
    async fhir(method, path, body, tok = token) {
      const res = await fetch(`${server.fhirBase}/${path}`, {
        method,
        headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/fhir+json', accept: 'application/fhir+json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
    tokenFor: (scope) => systemToken(server.url, TEST_CLIENT_ID, TEST_CLIENT_SECRET, scope),
    async close() {
      await receiver.close();
      await server.stop();
      await database.drop();
    },
  };
}

export const BP = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/';
export const TOPIC = 'http://wardlink.org/fhir/SubscriptionTopic/resource-change';

export function subscription(o: {
  channel: 'rest-hook' | 'websocket';
  endpoint?: string;
  filters?: string[];
  content?: 'empty' | 'id-only' | 'full-resource';
  heartbeat?: number;
  maxCount?: number;
  headers?: string[];
  topic?: string;
}): Record<string, unknown> {
  const ext: unknown[] = [];
  if (o.heartbeat) ext.push({ url: `${BP}backport-heartbeat-period`, valueUnsignedInt: o.heartbeat });
  ext.push({ url: `${BP}backport-timeout`, valueUnsignedInt: 5 });
  if (o.maxCount) ext.push({ url: `${BP}backport-max-count`, valuePositiveInt: o.maxCount });
  return {
    resourceType: 'Subscription',
    meta: { profile: [`${BP}backport-subscription`] },
    status: 'requested',
    reason: 'test',
    criteria: o.topic ?? TOPIC,
    _criteria: { extension: (o.filters ?? []).map((f) => ({ url: `${BP}backport-filter-criteria`, valueString: f })) },
    channel: {
      extension: ext,
      type: o.channel,
      endpoint: o.endpoint,
      payload: 'application/fhir+json',
      _payload: { extension: [{ url: `${BP}backport-payload-content`, valueCode: o.content ?? 'id-only' }] },
      header: o.headers,
    },
  };
}

export function statusOf(bundle: Bundle): { type?: string; status?: string; eventsSince?: string; events: { number: string; focus?: string }[]; error?: string } {
  const params = bundle.entry?.[0]?.resource as Parameters;
  const p = (name: string) => params.parameter?.find((x) => x.name === name);
  return {
    type: p('type')?.valueCode,
    status: p('status')?.valueCode,
    eventsSince: p('events-since-subscription-start')?.valueString,
    error: p('error')?.valueCodeableConcept?.text,
    events: (params.parameter ?? [])
      .filter((x) => x.name === 'notification-event')
      .map((x) => ({
        number: x.part?.find((q) => q.name === 'event-number')?.valueString as string,
        focus: x.part?.find((q) => q.name === 'focus')?.valueReference?.reference,
      })),
  };
}

export async function waitFor<T>(fn: () => T | undefined | false | Promise<T | undefined | false>, ms = 10_000, what = 'condition'): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
