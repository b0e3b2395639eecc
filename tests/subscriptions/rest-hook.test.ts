// rest-hook subscriptions over real HTTP: handshake, ordered numbered events, payload levels,
// headers, heartbeats, retries with backoff, dead letter + error status, $status, $events, SSRF.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, statusOf, subscription, waitFor, type Harness } from './harness.ts';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const patient = (family: string) => ({ resourceType: 'Patient', name: [{ family }] });
const forPath = (path: string) => h.receiver.received.filter((r) => r.path === path);

describe('rest-hook subscriptions', () => {
  it('advertises the topics in the CapabilityStatement', async () => {
    const cs = await h.fhir('GET', 'metadata');
    const canonicals = cs.body.rest[0].extension
      .filter((e: { url: string }) => e.url.endsWith('capabilitystatement-subscriptiontopic-canonical'))
      .map((e: { valueCanonical: string }) => e.valueCanonical);
    expect(canonicals).toContain('http://wardlink.org/fhir/SubscriptionTopic/resource-change');
    const sub = cs.body.rest[0].resource.find((r: { type: string }) => r.type === 'Subscription');
    const ops = sub.operation.map((o: { name: string }) => o.name);
    expect(ops).toEqual(expect.arrayContaining(['status', 'events', 'get-ws-binding-token']));
  });

  it('refuses unknown topics and private endpoints not in the allow-list', async () => {
    const unknown = await h.fhir('POST', 'Subscription', subscription({ channel: 'rest-hook', endpoint: `${h.receiver.url}/x`, topic: 'http://example.org/nope' }));
    expect(unknown.status).toBe(400);
    for (const endpoint of ['http://10.1.2.3/hook', 'http://127.0.0.2:9/hook', 'http://169.254.169.254/latest', 'file:///etc/passwd']) {
      const res = await h.fhir('POST', 'Subscription', subscription({ channel: 'rest-hook', endpoint }));
      expect(res.status, endpoint).toBe(400);
    }
  });

  it('handshakes, then delivers numbered events in order with headers, payload and heartbeats', async () => {
    const family = `Hook${Date.now()}`;
    const created = await h.fhir(
      'POST',
      'Subscription',
      subscription({ channel: 'rest-hook', endpoint: `${h.receiver.url}/a`, filters: [`Patient?family=${family}`], heartbeat: 1, headers: ['Authorization: Bearer secret-a'], content: 'full-resource' }),
    );
    expect(created.status).toBe(201);
    expect(created.body.status).toBe('requested');
    const id = created.body.id;
    const hs = await waitFor(() => forPath('/a')[0], 10_000, 'handshake');
    expect(statusOf(hs.bundle).type).toBe('handshake');
    expect(hs.bundle.type).toBe('history');
    expect(hs.headers.authorization).toBe('Bearer secret-a');
    await waitFor(async () => (await h.fhir('GET', `Subscription/${id}`)).body.status === 'active', 10_000, 'active');

    const p1 = await h.fhir('POST', 'Patient', patient(family));
    await h.fhir('POST', 'Patient', patient('SomeoneElse'));
    const p1b = await h.fhir('PUT', `Patient/${p1.body.id}`, { ...p1.body, gender: 'female' });
    expect(p1b.status).toBe(200);
    const events = await waitFor(() => {
      const got = forPath('/a').filter((r) => statusOf(r.bundle).type === 'event-notification').flatMap((r) => statusOf(r.bundle).events);
      return got.length >= 2 && got;
    }, 10_000, 'events');
    expect(events.map((e) => e.number)).toEqual(['1', '2']);
    expect(events[0].focus).toBe(`${h.server.fhirBase}/Patient/${p1.body.id}`);
    const notes = forPath('/a').filter((r) => statusOf(r.bundle).type === 'event-notification');
    const resources = notes.flatMap((n) => n.bundle.entry!.slice(1).map((e) => e.resource as { gender?: string }));
    expect(resources.map((r) => r?.gender)).toEqual([undefined, 'female']);
    expect(notes[0].bundle.entry![1].request).toEqual({ method: 'POST', url: 'Patient' });

    const hb = await waitFor(() => forPath('/a').find((r) => statusOf(r.bundle).type === 'heartbeat'), 5000, 'heartbeat');
    expect(statusOf(hb.bundle).eventsSince).toBe('2');

    const status = await h.fhir('GET', `Subscription/${id}/$status`);
    expect(status.status).toBe(200);
    expect(status.body.type).toBe('searchset');
    const st = statusOf({ resourceType: 'Bundle', type: 'history', entry: status.body.entry });
    expect(st).toMatchObject({ type: 'query-status', status: 'active', eventsSince: '2' });

    const replay = await h.fhir('GET', `Subscription/${id}/$events?eventsSinceNumber=2&eventsUntilNumber=2&content=id-only`);
    expect(replay.status).toBe(200);
    const rs = statusOf(replay.body);
    expect(rs.type).toBe('query-event');
    expect(rs.events.map((e) => e.number)).toEqual(['2']);
    expect(replay.body.entry[1].resource).toBeUndefined();
    expect(replay.body.entry[1].fullUrl).toBe(`${h.server.fhirBase}/Patient/${p1.body.id}`);
  });

  it('retries with backoff while the receiver is down, keeping the order', async () => {
    const family = `Retry${Date.now()}`;
    let failing = false;
    h.receiver.respond = (path) => (path === '/b' && failing ? 503 : 200);
    const created = await h.fhir('POST', 'Subscription', subscription({ channel: 'rest-hook', endpoint: `${h.receiver.url}/b`, filters: [`Patient?family=${family}`], content: 'empty' }));
    await waitFor(async () => (await h.fhir('GET', `Subscription/${created.body.id}`)).body.status === 'active', 10_000, 'active');
    failing = true;
    for (let i = 0; i < 3; i++) await h.fhir('POST', 'Patient', patient(family));
    await new Promise((r) => setTimeout(r, 300));
    failing = false;
    const numbers = await waitFor(() => {
      const got = forPath('/b').flatMap((r) => statusOf(r.bundle).events.map((e) => e.number));
      return got.length >= 3 && got;
    }, 10_000, 'events after retry');
    expect(numbers).toEqual(['1', '2', '3']);
    // empty content: no focus
    const note = forPath('/b').find((r) => statusOf(r.bundle).type === 'event-notification')!;
    expect(note.bundle.entry!.length).toBe(1);
    expect(statusOf(note.bundle).events[0].focus).toBeUndefined();
    h.receiver.respond = () => 200;
  });

  it('dead-letters after the retry budget and puts the subscription in error', async () => {
    const family = `Dead${Date.now()}`;
    let failing = false;
    h.receiver.respond = (path) => (path === '/c' && failing ? 500 : 200);
    const created = await h.fhir('POST', 'Subscription', subscription({ channel: 'rest-hook', endpoint: `${h.receiver.url}/c`, filters: [`Patient?family=${family}`] }));
    const id = created.body.id;
    await waitFor(async () => (await h.fhir('GET', `Subscription/${id}`)).body.status === 'active', 10_000, 'active');
    failing = true;
    await h.fhir('POST', 'Patient', patient(family));
    await waitFor(async () => (await h.fhir('GET', `Subscription/${id}`)).body.status === 'error', 15_000, 'error status');
    const status = await h.fhir('GET', `Subscription/${id}/$status`);
    const st = statusOf({ resourceType: 'Bundle', type: 'history', entry: status.body.entry });
    expect(st.status).toBe('error');
    expect(st.error).toMatch(/HTTP 500/);
    const dead = await h.server.db.query(`SELECT first_event::text, last_event::text FROM subscription_dead_letter WHERE subscription_id = $1`, [id]);
    expect(dead.rows).toEqual([{ first_event: '1', last_event: '1' }]);
    // The subscriber catches up with $events.
    const replay = await h.fhir('GET', `Subscription/${id}/$events`);
    expect(statusOf(replay.body).events.map((e) => e.number)).toEqual(['1']);
    h.receiver.respond = () => 200;
  });

  it('a handshake that keeps failing ends in error', async () => {
    h.receiver.respond = (path) => (path === '/d' ? 404 : 200);
    const created = await h.fhir('POST', 'Subscription', subscription({ channel: 'rest-hook', endpoint: `${h.receiver.url}/d` }));
    const sub = await waitFor(async () => {
      const s = (await h.fhir('GET', `Subscription/${created.body.id}`)).body;
      return s.status === 'error' && s;
    }, 15_000, 'error status');
    expect(sub.error).toMatch(/handshake/);
    h.receiver.respond = () => 200;
  });
});
