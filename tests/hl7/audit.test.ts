// The audit trail covers the HL7 v2 door too: every message received over MLLP is recorded in an
// AuditEvent (DICOM "Import") naming the sender, MSH-9 / MSH-10, the ACK and every resource the
// message wrote (stored messages of one sender folded per flush window, as reads are); a refused
// message is recorded as a failure with the reason; a resend answered from the store adds nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../server/server.ts';
import { startInProcessServer, type InProcessServer } from '../support/in-process-server.ts';
import { MllpClient, mkMessage, parseAck } from './support.ts';

let env: InProcessServer;
let server: RunningServer;
let accessToken: string;
let client: MllpClient;

beforeAll(async () => {
  env = await startInProcessServer();
  ({ server, accessToken } = env);
  client = await MllpClient.connect(server.hl7Port);
}, 120_000);
afterAll(async () => {
  client?.close();
  await env?.close();
});

const control = `AUD${Date.now().toString(36)}`;
const mrn = `MAUD${Date.now().toString(36)}`;
const a01 = (id: string) =>
  mkMessage([
    `MSH|^~\\&|AUDITAPP|AUDITFAC|WARDLINK|HOSP|20240301120000+0100||ADT^A01^ADT_A01|${id}|P|2.5.1`,
    'EVN|A01|20240301120000+0100',
    `PID|1||${mrn}^^^&1.2.3.4&ISO^MR||Audit^Anna||19800215|F`,
    'PV1|1|I|WARD^101^1',
  ]);

async function importEvents(): Promise<any[]> {
  const res = await fetch(`${server.fhirBase}/AuditEvent?type=http://dicom.nema.org/resources/ontology/DCM|110107&_count=50`, {
    headers: { authorization: `Bearer ${accessToken}` },
  });
  expect(res.status).toBe(200);
  return ((await res.json()).entry ?? []).map((e: any) => e.resource);
}

async function eventFor(controlId: string): Promise<any> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const found = (await importEvents()).find((e) => e.entity?.some((x: any) => x.detail?.some((d: any) => d.type === 'MSH-10' && d.valueString === controlId)));
    if (found || Date.now() > deadline) return found;
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('audit of inbound HL7 v2', () => {
  it('records a stored message with its sender, MSH-9 / MSH-10 and the resources it wrote; a resend adds nothing', async () => {
    expect(parseAck((await client.request(a01(control))) as string).code).toBe('AA');
    const event = await eventFor(control);
    expect(event).toBeDefined();
    expect(event.action).toBe('C');
    expect(event.outcome).toBe('0');
    expect(event.agent.find((a: any) => a.requestor).who.identifier).toEqual({ system: 'urn:wardlink:hl7v2:sender', value: 'AUDITAPP|AUDITFAC' });
    const refs = event.entity.map((e: any) => e.what?.reference).filter(Boolean);
    expect(refs.some((r: string) => r.startsWith('Patient/'))).toBe(true);
    expect(refs.some((r: string) => r.startsWith('Encounter/'))).toBe(true);
    const message = event.entity.find((e: any) => e.detail?.some((d: any) => d.valueString === control));
    expect(message.detail).toEqual(expect.arrayContaining([{ type: 'MSH-9', valueString: 'ADT^A01' }, { type: 'ACK', valueString: 'AA' }]));

    // The same MSH-10 again is answered from the store: no second event.
    expect(parseAck((await client.request(a01(control))) as string).code).toBe('AA');
    await new Promise((r) => setTimeout(r, 600));
    const mine = (await importEvents()).filter((e) => e.entity?.some((x: any) => x.detail?.some((d: any) => d.valueString === control)));
    expect(mine).toHaveLength(1);
  });

  it('folds a burst of stored messages from one sender into few events, each message listed once', async () => {
    const burst = [1, 2, 3, 4, 5].map((i) => `${control}B${i}`);
    for (const id of burst) expect(parseAck((await client.request(a01(id))) as string).code).toBe('AA');
    for (const id of burst) expect(await eventFor(id)).toBeDefined();
    const events = (await importEvents()).filter((e) => e.entity?.some((x: any) => x.detail?.some((d: any) => burst.includes(d.valueString))));
    expect(events.length).toBeLessThan(burst.length);
    const listed = events.flatMap((e) => e.entity.flatMap((x: any) => (x.detail ?? []).filter((d: any) => d.type === 'MSH-10').map((d: any) => d.valueString)));
    expect(listed.filter((id: string) => burst.includes(id)).sort()).toEqual([...burst].sort());
    expect(events.every((e) => e.period?.start && e.period?.end)).toBe(true);
  });

  it('records a refused message as a failure with the reason', async () => {
    const bad = `BAD${Date.now().toString(36)}`;
    const raw = mkMessage([`MSH|^~\\&|AUDITAPP|AUDITFAC|WARDLINK|HOSP|20240301120000+0100||ZZZ^Z99|${bad}|P|2.5.1`]);
    const ack = parseAck((await client.request(raw)) as string);
    expect(ack.code).toBe('AR');
    const event = await eventFor(bad);
    expect(event.outcome).toBe('4');
    expect(event.outcomeDesc).toBeTruthy();
  });
});
