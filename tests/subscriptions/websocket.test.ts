// websocket subscriptions over a real socket: binding token, handshake per subscription, live
// events and heartbeats, several subscriptions on one socket, token expiry, and access: a
// subscriber never receives what its token could not read.
import type { Bundle } from '@medplum/fhirtypes';
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

async function connect(): Promise<{ ws: WebSocket; messages: any[] }> {
  const ws = new WebSocket(h.wsUrl);
  const messages: any[] = [];
  ws.on('message', (d) => messages.push(JSON.parse(d.toString())));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return { ws, messages };
}

async function bindingToken(ids: string[], token?: string): Promise<{ status: number; token?: string; url?: string }> {
  const res = await h.fhir('POST', 'Subscription/$get-ws-binding-token', { resourceType: 'Parameters', parameter: ids.map((id) => ({ name: 'id', valueId: id })) }, token);
  const p = (name: string) => res.body.parameter?.find((x: { name: string }) => x.name === name);
  return { status: res.status, token: p('token')?.valueString, url: p('websocket-url')?.valueUrl };
}

const ofType = (messages: any[], type: string, sub?: string): Bundle[] =>
  messages.filter((m) => m.resourceType === 'Bundle' && statusOf(m).type === type && (!sub || m.entry[0].resource.parameter[0].valueReference.reference.endsWith(`/Subscription/${sub}`)));

describe('websocket subscriptions', () => {
  it('binds several subscriptions on one socket and streams events and heartbeats', async () => {
    const fam = `Ws${Date.now()}`;
    const a = await h.fhir('POST', 'Subscription', subscription({ channel: 'websocket', filters: [`Patient?family=${fam}`], heartbeat: 1, content: 'full-resource' }));
    const b = await h.fhir('POST', 'Subscription', subscription({ channel: 'websocket', filters: [`Observation?status=final`] }));
    expect(a.status).toBe(201);
    await waitFor(async () => (await h.fhir('GET', `Subscription/${a.body.id}`)).body.status === 'active', 5000, 'active');
    await waitFor(async () => (await h.fhir('GET', `Subscription/${b.body.id}`)).body.status === 'active', 5000, 'active');
    const t = await bindingToken([a.body.id, b.body.id]);
    expect(t.status).toBe(200);
    expect(t.url).toMatch(/^ws:\/\/.*\/fhir\/ws$/);
    const { ws, messages } = await connect();
    ws.send(`bind-with-token ${t.token}`);
    await waitFor(() => ofType(messages, 'handshake').length === 2, 5000, 'two handshakes');

    const pat = await h.fhir('POST', 'Patient', { resourceType: 'Patient', name: [{ family: fam }] });
    await h.fhir('POST', 'Observation', { resourceType: 'Observation', status: 'final', code: { text: 'x' } });
    await h.fhir('POST', 'Observation', { resourceType: 'Observation', status: 'preliminary', code: { text: 'y' } });
    const evA = await waitFor(() => ofType(messages, 'event-notification', a.body.id)[0], 5000, 'event a');
    expect(statusOf(evA).events).toEqual([{ number: '1', focus: `${h.server.fhirBase}/Patient/${pat.body.id}` }]);
    expect((evA.entry![1].resource as { id: string }).id).toBe(pat.body.id);
    const evB = await waitFor(() => ofType(messages, 'event-notification', b.body.id)[0], 5000, 'event b');
    expect(statusOf(evB).events.map((e) => e.number)).toEqual(['1']);
    await waitFor(() => ofType(messages, 'heartbeat', a.body.id)[0], 5000, 'heartbeat');
    await new Promise((r) => setTimeout(r, 300));
    expect(ofType(messages, 'event-notification', b.body.id).length).toBe(1);
    ws.close();
  });

  it('refuses an expired or unknown binding token', async () => {
    const a = await h.fhir('POST', 'Subscription', subscription({ channel: 'websocket', filters: ['Patient?family=Nobody'] }));
    const t = await bindingToken([a.body.id]);
    await h.server.db.query(`UPDATE subscription_ws_token SET expires_at = now() - interval '1 second'`);
    const { ws, messages } = await connect();
    ws.send(`bind-with-token ${t.token}`);
    const err = await waitFor(() => messages.find((m) => m.resourceType === 'OperationOutcome'), 5000, 'error');
    expect(err.issue[0].diagnostics).toMatch(/expired/);
    expect(ofType(messages, 'handshake').length).toBe(0);
    ws.close();
  });

  it("a token restricted to one patient never sees another patient's events", async () => {
    const pa = await h.fhir('POST', 'Patient', { resourceType: 'Patient', name: [{ family: 'Alpha' }] });
    const pb = await h.fhir('POST', 'Patient', { resourceType: 'Patient', name: [{ family: 'Beta' }] });
    const limited = await h.tokenFor(`system/Subscription.cruds system/Observation.rs?subject=Patient/${pa.body.id}`);
    const sub = await h.fhir('POST', 'Subscription', subscription({ channel: 'websocket', filters: ['Observation'], content: 'full-resource' }), limited);
    expect(sub.status).toBe(201);
    // Another caller cannot bind it; the owner can.
    const other = await h.tokenFor(`system/Subscription.cruds system/Observation.rs?subject=Patient/${pb.body.id}`);
    expect((await bindingToken([sub.body.id], other)).status).toBe(403);
    const t = await bindingToken([sub.body.id], limited);
    expect(t.status).toBe(200);
    const { ws, messages } = await connect();
    ws.send(`bind-with-token ${t.token}`);
    await waitFor(() => ofType(messages, 'handshake').length === 1, 5000, 'handshake');
    await h.fhir('POST', 'Observation', { resourceType: 'Observation', status: 'final', code: { text: 'b' }, subject: { reference: `Patient/${pb.body.id}` } });
    const oa = await h.fhir('POST', 'Observation', { resourceType: 'Observation', status: 'final', code: { text: 'a' }, subject: { reference: `Patient/${pa.body.id}` } });
    const ev = await waitFor(() => ofType(messages, 'event-notification')[0], 5000, 'event');
    await new Promise((r) => setTimeout(r, 300));
    const all = ofType(messages, 'event-notification');
    expect(all.length).toBe(1);
    expect(statusOf(ev).events).toEqual([{ number: '1', focus: `${h.server.fhirBase}/Observation/${oa.body.id}` }]);
    // $events replays only what was numbered for it.
    const replay = await h.fhir('GET', `Subscription/${sub.body.id}/$events`, undefined, limited);
    expect(statusOf(replay.body).events.map((e) => e.number)).toEqual(['1']);
    ws.close();
  });
});
