// Subscription lifecycle and notification content over real HTTP / websocket (embedded PGlite or
// PostgreSQL): additional-context from a topic's notificationShape (workflow topics name the
// Task's ServiceRequest and Patient), Subscription.end turning a subscription off (and its
// socket unbound), $status counts and errors (a failure still being retried shows with status
// active; the count is the stored one after every event), type-level $status filtered by status.
import type { Bundle, Parameters } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startHarness, statusOf, subscription, waitFor, type Harness } from './harness.ts';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const LAST_EVENT = 'http://wardlink.org/fhir/StructureDefinition/workflow-last-event';
const WF_CREATED = 'http://wardlink.org/fhir/SubscriptionTopic/workflow-created';

async function connect(): Promise<{ ws: WebSocket; messages: any[]; closed: Promise<number> }> {
  const ws = new WebSocket(h.wsUrl);
  const messages: any[] = [];
  ws.on('message', (d) => messages.push(JSON.parse(d.toString())));
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return { ws, messages, closed };
}

async function bind(ids: string[]): Promise<string> {
  const res = await h.fhir('POST', 'Subscription/$get-ws-binding-token', { resourceType: 'Parameters', parameter: ids.map((id) => ({ name: 'id', valueId: id })) });
  expect(res.status).toBe(200);
  return res.body.parameter.find((p: { name: string }) => p.name === 'token').valueString;
}

const ofType = (messages: any[], type: string): Bundle[] => messages.filter((m) => m.resourceType === 'Bundle' && statusOf(m).type === type);

/** The additional-context references of each notification-event of a notification Bundle. */
function contexts(bundle: Bundle): string[][] {
  const params = bundle.entry?.[0]?.resource as Parameters;
  return (params.parameter ?? [])
    .filter((p) => p.name === 'notification-event')
    .map((p) => (p.part ?? []).filter((q) => q.name === 'additional-context').map((q) => q.valueReference?.reference as string));
}

function statusEntry(body: Bundle, id: string): ReturnType<typeof statusOf> | undefined {
  const entry = body.entry?.find((e) => JSON.stringify(e.resource).includes(`Subscription/${id}"`));
  return entry ? statusOf({ resourceType: 'Bundle', type: 'history', entry: [entry] }) : undefined;
}

describe('notification content and subscription lifecycle', () => {
  it("workflow topics carry the Task's ServiceRequest and Patient as additional-context", async () => {
    const patient = await h.fhir('POST', 'Patient', { resourceType: 'Patient', name: [{ family: 'Context' }] });
    const sr = await h.fhir('POST', 'ServiceRequest', {
      resourceType: 'ServiceRequest',
      status: 'active',
      intent: 'order',
      subject: { reference: `Patient/${patient.body.id}` },
    });
    expect(sr.status).toBe(201);
    const sub = await h.fhir('POST', 'Subscription', subscription({ channel: 'websocket', topic: WF_CREATED, content: 'full-resource' }));
    expect(sub.status).toBe(201);
    await waitFor(async () => (await h.fhir('GET', `Subscription/${sub.body.id}`)).body.status === 'active', 5000, 'active');
    const { ws, messages } = await connect();
    ws.send(`bind-with-token ${await bind([sub.body.id])}`);
    await waitFor(() => ofType(messages, 'handshake').length === 1, 5000, 'handshake');

    const task = await h.fhir('POST', 'Task', {
      resourceType: 'Task',
      status: 'requested',
      intent: 'order',
      extension: [{ url: LAST_EVENT, valueCode: 'created' }],
      focus: { reference: `ServiceRequest/${sr.body.id}` },
      for: { reference: `Patient/${patient.body.id}` },
    });
    expect(task.status).toBe(201);
    // A Task of another workflow event does not fire the topic.
    await h.fhir('POST', 'Task', { resourceType: 'Task', status: 'requested', intent: 'order', extension: [{ url: LAST_EVENT, valueCode: 'accepted' }] });
    const ev = await waitFor(() => ofType(messages, 'event-notification')[0], 5000, 'event');
    const base = h.server.fhirBase;
    expect(contexts(ev)).toEqual([[`${base}/ServiceRequest/${sr.body.id}`, `${base}/Patient/${patient.body.id}`]]);
    // full-resource: the focus, then the context resources themselves.
    const entries = ev.entry!.slice(1);
    expect(entries.map((e) => e.fullUrl)).toEqual([`${base}/Task/${task.body.id}`, `${base}/ServiceRequest/${sr.body.id}`, `${base}/Patient/${patient.body.id}`]);
    expect(entries.map((e) => e.resource?.resourceType)).toEqual(['Task', 'ServiceRequest', 'Patient']);
    expect(entries[1].request).toEqual({ method: 'GET', url: `ServiceRequest/${sr.body.id}` });

    // $events replays the same context (stored with the event).
    const replay = await h.fhir('GET', `Subscription/${sub.body.id}/$events?content=id-only`);
    expect(contexts(replay.body)).toEqual([[`${base}/ServiceRequest/${sr.body.id}`, `${base}/Patient/${patient.body.id}`]]);
    expect(replay.body.entry.slice(1).map((e: { fullUrl: string }) => e.fullUrl)).toEqual(entries.map((e) => e.fullUrl));
    expect(replay.body.entry[2].resource).toBeUndefined();
    await new Promise((r) => setTimeout(r, 300));
    expect(ofType(messages, 'event-notification').length).toBe(1);
    ws.close();
  });

  it('turns a subscription off when its end passes, and unbinds its socket', async () => {
    const fam = `Ending${Date.now()}`;
    const body = { ...subscription({ channel: 'websocket', filters: [`Patient?family=${fam}`] }), end: new Date(Date.now() + 2500).toISOString() };
    const sub = await h.fhir('POST', 'Subscription', body);
    expect(sub.status).toBe(201);
    const id = sub.body.id as string;
    await waitFor(async () => (await h.fhir('GET', `Subscription/${id}`)).body.status === 'active', 5000, 'active');
    const { ws, messages, closed } = await connect();
    ws.send(`bind-with-token ${await bind([id])}`);
    await waitFor(() => ofType(messages, 'handshake').length === 1, 5000, 'handshake');
    await h.fhir('POST', 'Patient', { resourceType: 'Patient', name: [{ family: fam }] });
    await waitFor(() => ofType(messages, 'event-notification').length === 1, 5000, 'event before the end');

    const off = await waitFor(async () => {
      const s = (await h.fhir('GET', `Subscription/${id}`)).body;
      return s.status === 'off' && s;
    }, 10_000, 'status off');
    expect(off.status).toBe('off');
    // The socket had only this subscription: it is closed.
    expect(await closed).toBe(4001);
    // Nothing is numbered after the end.
    await h.fhir('POST', 'Patient', { resourceType: 'Patient', name: [{ family: fam }] });
    await new Promise((r) => setTimeout(r, 500));
    const st = await h.fhir('GET', `Subscription/${id}/$status`);
    expect(statusEntry(st.body, id)).toMatchObject({ status: 'off', eventsSince: '1' });
  });

  it('$status: counts every event, shows a failure being retried, and filters by status', async () => {
    const fam = `Counts${Date.now()}`;
    let failing = false;
    h.receiver.respond = (path) => (path === '/counts' && failing ? 503 : 200);
    const sub = await h.fhir('POST', 'Subscription', subscription({ channel: 'rest-hook', endpoint: `${h.receiver.url}/counts`, filters: [`Patient?family=${fam}`], content: 'id-only' }));
    const id = sub.body.id as string;
    await waitFor(async () => (await h.fhir('GET', `Subscription/${id}`)).body.status === 'active', 10_000, 'active');
    // Five changes written at once (several may share an outbox batch): five numbers, 1..5.
    await Promise.all(Array.from({ length: 5 }, () => h.fhir('POST', 'Patient', { resourceType: 'Patient', name: [{ family: fam }] })));
    const delivered = await waitFor(() => {
      const got = h.receiver.received.filter((r) => r.path === '/counts').flatMap((r) => statusOf(r.bundle).events.map((e) => e.number));
      return got.length >= 5 && got;
    }, 10_000, 'five events');
    expect(delivered).toEqual(['1', '2', '3', '4', '5']);
    // Each notification's events-since-subscription-start is at least its highest event number.
    for (const r of h.receiver.received.filter((x) => x.path === '/counts' && statusOf(x.bundle).type === 'event-notification')) {
      const s = statusOf(r.bundle);
      expect(Number(s.eventsSince)).toBeGreaterThanOrEqual(Math.max(...s.events.map((e) => Number(e.number))));
    }
    let st = statusEntry((await h.fhir('GET', `Subscription/${id}/$status`)).body, id);
    expect(st).toMatchObject({ type: 'query-status', status: 'active', eventsSince: '5' });
    expect(st?.error).toBeUndefined();

    // The endpoint fails: still active (being retried), the failure shows in $status.
    failing = true;
    await h.fhir('POST', 'Patient', { resourceType: 'Patient', name: [{ family: fam }] });
    st = await waitFor(async () => {
      const s = statusEntry((await h.fhir('GET', `Subscription/${id}/$status`)).body, id);
      return s?.error ? s : undefined;
    }, 10_000, 'retrying error');
    expect(st).toMatchObject({ status: 'active', eventsSince: '6' });
    expect(st?.error).toMatch(/HTTP 503/);
    failing = false;
    await waitFor(() => h.receiver.received.some((r) => r.path === '/counts' && statusOf(r.bundle).events.some((e) => e.number === '6')), 10_000, 'event 6 after recovery');
    st = await waitFor(async () => {
      const s = statusEntry((await h.fhir('GET', `Subscription/${id}/$status`)).body, id);
      return s && !s.error ? s : undefined;
    }, 5000, 'error cleared');
    expect(st).toMatchObject({ status: 'active', eventsSince: '6' });

    // Type-level $status filtered by status lists this one among the active, not among the errors.
    const active = await h.fhir('GET', 'Subscription/$status?status=active');
    expect(active.status).toBe(200);
    expect(statusEntry(active.body, id)).toBeDefined();
    const errors = await h.fhir('GET', 'Subscription/$status?status=error');
    expect(statusEntry(errors.body, id)).toBeUndefined();
    expect(errors.body.entry.every((e: { resource: Parameters }) => e.resource.parameter?.find((p) => p.name === 'status')?.valueCode === 'error')).toBe(true);
    h.receiver.respond = () => 200;
  });

  it('websocket heartbeats carry the subscription count, not what one socket saw', async () => {
    const fam = `Beat${Date.now()}`;
    const sub = await h.fhir('POST', 'Subscription', subscription({ channel: 'websocket', filters: [`Patient?family=${fam}`], heartbeat: 1 }));
    const id = sub.body.id as string;
    await waitFor(async () => (await h.fhir('GET', `Subscription/${id}`)).body.status === 'active', 5000, 'active');
    // Two events before any client binds: the handshake and heartbeats count them.
    for (let i = 0; i < 2; i++) await h.fhir('POST', 'Patient', { resourceType: 'Patient', name: [{ family: fam }] });
    await waitFor(async () => statusEntry((await h.fhir('GET', `Subscription/${id}/$status`)).body, id)?.eventsSince === '2', 5000, 'two events');
    const { ws, messages } = await connect();
    ws.send(`bind-with-token ${await bind([id])}`);
    const hs = await waitFor(() => ofType(messages, 'handshake')[0], 5000, 'handshake');
    expect(statusOf(hs).eventsSince).toBe('2');
    const hb = await waitFor(() => ofType(messages, 'heartbeat')[0], 5000, 'heartbeat');
    expect(statusOf(hb).eventsSince).toBe('2');
    ws.close();
  });
});
