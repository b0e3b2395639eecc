// Messages back to the sender over real MLLP sockets: enhanced-mode application ACKs (MSH-16)
// to the sender's configured Endpoint, and OSU^O51 status updates for the referral Task an
// OMG^O19 order created (360X-style closed loop). The server side runs with the real job queue
// and outbox relay; the sender's system is an MLLP receiver in the test.
import type { Endpoint, Organization, Patient, ServiceRequest, Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMessage, type Message } from '../../server/hl7/message.ts';
import { startMllpServer, type MllpServer } from '../../server/hl7/mllp.ts';
import { REFERRAL_RESPONSE_TAG, SENDER_SYSTEM, STATUS_RECIPIENT_TAG } from '../../server/hl7/outbound/reply.ts';
import { MllpClient, findBy, log, mkMessage, parseAck, startHl7Env, storedNotes, type Hl7Env } from './support.ts';

let env: Hl7Env;
let client: MllpClient;
let partner: MllpServer;
/** Frames the sender's system received from us. */
const received: Message[] = [];

beforeAll(async () => {
  env = await startHl7Env({ jobs: true });
  client = await MllpClient.connect(env.hl7.port);
  partner = await startMllpServer({
    port: 0,
    host: '127.0.0.1',
    log,
    handler: async (frame) => {
      const m = parseMessage(frame.toString('utf8'));
      received.push(m);
      // The partner is in enhanced mode too: a commit ACK for what it received.
      return { response: `MSH|^~\\&|PARTNER|PARTNER|WARDLINK|WARDLINK|20240301120000||ACK|P${m.controlId}|P|2.5.1\rMSA|CA|${m.controlId}` };
    },
  });
});
afterAll(async () => {
  client?.close();
  await partner?.close();
  await env?.close();
});

let seq = 0;
const uid = (p: string) => `${p}${Date.now().toString(36)}${(seq++).toString(36)}`;

async function partnerEndpoint(senderKey: string): Promise<void> {
  await env.repo.create<Endpoint>({
    resourceType: 'Endpoint',
    status: 'active',
    identifier: [{ system: SENDER_SYSTEM, value: senderKey }],
    connectionType: { system: 'http://wardlink.example/fhir/CodeSystem/endpoint-connection-type', code: 'hl7v2-mllp' },
    payloadType: [{ text: 'HL7 v2 acknowledgements and order status updates' }],
    address: `mllp://127.0.0.1:${partner.port}`,
  });
}

async function waitFor<T>(fn: () => T | Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  let v = await fn();
  while (!ok(v) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    v = await fn();
  }
  return v;
}

const answersTo = (controlId: string) => received.filter((m) => m.segment('MSA')?.get(2) === controlId);

const notesOf = (controlId: string) => storedNotes(env, controlId);

describe('enhanced mode: application ACK back to the sender', () => {
  const app = 'ENHAPP';
  const fac = uid('ENHFAC');
  beforeAll(() => partnerEndpoint(`${app}|${fac}`));

  const a28 = (control: string, appAck: string, pid = true) =>
    mkMessage([
      `MSH|^~\\&|${app}|${fac}|WARDLINK|HOSP|20240301120000||ADT^A28^ADT_A05|${control}|P|2.5.1|||AL|${appAck}`,
      'EVN|A28|20240301120000',
      ...(pid ? [`PID|1||${control}^^^&1.2.3.4&ISO^MR||Enhanced^Ena||19700101|F`] : []),
    ]);

  it('MSH-16 AL: CA on the connection, then AA as a message of its own to the sender endpoint', async () => {
    const control = uid('E');
    const commit = parseAck((await client.request(a28(control, 'AL'))) as string);
    expect(commit.code).toBe('CA');
    const [appAck] = await waitFor(() => answersTo(control), (l) => l.length > 0);
    expect(appAck, 'application ACK delivered').toBeDefined();
    expect(appAck.messageCode).toBe('ACK');
    expect(appAck.segment('MSA')?.get(1)).toBe('AA');
    // Addressed to the sender (MSH-5/6 = its MSH-3/4), asking for a commit ACK back, no app ACK.
    expect(appAck.msh.get(5)).toBe(app);
    expect(appAck.msh.get(6)).toBe(fac);
    expect(appAck.msh.get(15)).toBe('AL');
    expect(appAck.msh.get(16)).toBe('NE');
    const outbound = await waitFor(
      async () => (await env.db.query<{ status: string; ack: string }>(`SELECT status, ack FROM hl7_outbound WHERE message_type = 'ACK' AND raw LIKE $1`, [`%MSA|AA|${control}%`])).rows[0],
      (r) => r?.status === 'sent',
    );
    expect(outbound.ack).toContain(`MSA|CA|${appAck.controlId}`);
    expect((await notesOf(control)).join(' ')).toMatch(/Application ACK AA queued for mllp:\/\/127\.0\.0\.1:/);
  });

  it('MSH-16 ER: no application ACK on success, AE with its ERR on failure', async () => {
    const ok = uid('E');
    expect(parseAck((await client.request(a28(ok, 'ER'))) as string).code).toBe('CA');
    const bad = uid('E');
    expect(parseAck((await client.request(a28(bad, 'ER', false))) as string).code).toBe('CA');
    const [appAck] = await waitFor(() => answersTo(bad), (l) => l.length > 0);
    expect(appAck.segment('MSA')?.get(1)).toBe('AE');
    const err = appAck.segment('ERR');
    expect(err?.get(2)).toBe('PID');
    expect(err?.get(3)).toBe('100');
    await new Promise((r) => setTimeout(r, 500));
    expect(answersTo(ok)).toHaveLength(0);
  });

  it('without an Endpoint for the sender the application ACK stays in the store, with a note', async () => {
    const control = uid('E');
    const lone = mkMessage([
      `MSH|^~\\&|LONEAPP|LONEFAC|WARDLINK|HOSP|20240301120000||ADT^A28^ADT_A05|${control}|P|2.5.1|||AL|AL`,
      'EVN|A28|20240301120000',
      `PID|1||${control}^^^&1.2.3.4&ISO^MR||Lone^Lou||19700101|M`,
    ]);
    expect(parseAck((await client.request(lone)) as string).code).toBe('CA');
    const notes = await waitFor(() => notesOf(control), (n) => n.length > 0);
    expect(notes.join(' ')).toContain('No MLLP Endpoint is configured for sender LONEAPP|LONEFAC');
    const row = await env.db.query<{ app_ack: string }>('SELECT app_ack FROM hl7_message WHERE control_id = $1', [control]);
    expect(row.rows[0].app_ack).toContain(`MSA|AA|${control}`);
  });
});

describe('closed-loop referral: OMG^O19 in, OSU^O51 out as the Task changes', () => {
  const app = 'REFAPP';
  const fac = uid('REFFAC');
  beforeAll(() => partnerEndpoint(`${app}|${fac}`));

  const omg = (control: string, placer: string) =>
    mkMessage([
      `MSH|^~\\&|${app}|${fac}|WARDLINK|HOSP|20240301120000||OMG^O19^OMG_O19|${control}|P|2.5.1`,
      `PID|1||P${placer}^^^&1.2.3.4&ISO^MR||Referred^Rita||19650304|F`,
      `ORC|NW|${placer}^REFAPP^1.2.3.77^ISO||||||||20240301115500|||1234^Sender^Sam^^^Dr`,
      `OBR|1|${placer}^REFAPP^1.2.3.77^ISO||CARDCONS^Cardiology consultation^L|||20240301115500`,
      'NTE|1||Chest pain on exertion, please assess',
    ]);

  const osuFor = (placer: string) => received.filter((m) => m.messageCode === 'OSU' && m.segment('ORC')?.get(2) === placer);

  it('creates a tagged referral Task, and sends OSU^O51 on each status change only', async () => {
    const placer = uid('ORD');
    expect(parseAck((await client.request(omg(uid('O'), placer))) as string).code).toBe('AA');
    const [task] = (await findBy(env, 'Task', [['identifier', `urn:oid:1.2.3.77|${placer}`]])) as Task[];
    expect(task).toMatchObject({ status: 'requested', intent: 'order', code: { coding: [{ code: 'fulfill' }] } });
    expect(task.meta?.tag).toEqual(expect.arrayContaining([expect.objectContaining({ system: STATUS_RECIPIENT_TAG, code: `${app}|${fac}` })]));
    expect(task.focus?.reference).toMatch(/^ServiceRequest\//);

    const accepted = await env.repo.update<Task>({ ...task, status: 'accepted' });
    const [first] = await waitFor(() => osuFor(placer), (l) => l.length > 0);
    expect(first, 'OSU^O51 delivered').toBeDefined();
    expect(first.triggerEvent).toBe('O51');
    expect(first.msh.get(5)).toBe(app);
    expect(first.msh.get(6)).toBe(fac);
    const orc = first.segment('ORC');
    expect(orc?.get(1)).toBe('SC');
    expect(orc?.get(2, 3)).toBe('1.2.3.77');
    expect(orc?.get(3)).toBe(task.id);
    expect(orc?.get(5)).toBe('IP');
    expect(orc?.get(16)).toBe('accepted');
    expect(first.segment('PID')?.get(5)).toBe('Referred');

    // A resent order does not reset what the receiving side decided.
    expect(parseAck((await client.request(omg(uid('O'), placer))) as string).code).toBe('AA');
    const [again] = (await findBy(env, 'Task', [['identifier', `urn:oid:1.2.3.77|${placer}`]])) as Task[];
    expect(again.status).toBe('accepted');

    // A change that keeps the status sends nothing; the next status change sends the next OSU.
    await env.repo.update<Task>({ ...accepted.resource, businessStatus: { text: 'Booked for Tuesday' } });
    const latest = (await findBy(env, 'Task', [['identifier', `urn:oid:1.2.3.77|${placer}`]]))[0] as Task;
    await env.repo.update<Task>({ ...latest, status: 'completed' });
    const both = await waitFor(() => osuFor(placer), (l) => l.length >= 2);
    await new Promise((r) => setTimeout(r, 400));
    expect(osuFor(placer)).toHaveLength(2);
    expect(both[1].segment('ORC')?.get(5)).toBe('CM');
    expect(both[1].segment('ORC')?.get(16)).toBe('completed');
    expect(both[1].all('NTE').map((n) => n.get(3))).toContain('Booked for Tuesday');
  });
});

describe('closed-loop referral: REF^I12 in, RRI^I12 out as it is answered', () => {
  const app = 'REFSYS';
  const fac = uid('CLINIC');
  beforeAll(() => partnerEndpoint(`${app}|${fac}`));

  const ref = (event: string, id: string, mrn: string) =>
    mkMessage([
      `MSH|^~\\&|${app}|${fac}|WARDLINK|HOSP|20240301120000||REF^${event}^REF_I12|${uid('R')}|P|2.5.1`,
      `RF1|P^Pending^HL70283|R^Routine^HL70280|Med^Medical^HL70281||O^Outpatient^HL70284|${id}^${app}|20240301|20240315`,
      'PRD|RP^Referring Provider^HL70286|Powell^Robert^^^Dr|||||PLN1001^SL',
      'PRD|RT^Referred to Provider^HL70286|Cardio^Carla^^^Dr|||||PLN2002^SL',
      `PID|1||${mrn}^^^&1.2.3.4&ISO^MR||Doe^Ref||19600101|M`,
      'PR1|1||183519002^Referral to cardiology service^SCT',
    ]);
  const rriFor = (id: string) => received.filter((m) => m.messageCode === 'RRI' && m.segment('RF1')?.get(6) === id);

  it('answers the referrer when the Task is accepted and then completed, not when the referrer itself cancels', async () => {
    const id = uid('REF');
    const mrn = uid('M');
    expect(parseAck((await client.request(ref('I12', id, mrn))) as string).code).toBe('AA');
    const [task] = (await findBy(env, 'Task', [['identifier', `urn:wardlink:hl7v2:authority:${app}|${id}`]])) as Task[];
    expect(task.status).toBe('requested');
    expect(task.meta?.tag).toEqual(expect.arrayContaining([expect.objectContaining({ system: REFERRAL_RESPONSE_TAG, code: `${app}|${fac}` })]));

    const accepted = await env.repo.update<Task>({ ...task, status: 'accepted', businessStatus: { text: 'Seen within two weeks' } });
    const [first] = await waitFor(() => rriFor(id), (l) => l.length > 0);
    expect(first, 'RRI^I12 delivered').toBeDefined();
    expect([first.messageCode, first.triggerEvent, first.msh.get(9, 3)]).toEqual(['RRI', 'I12', 'RRI_I12']);
    expect([first.msh.get(5), first.msh.get(6)]).toEqual([app, fac]);
    const rf1 = first.segment('RF1');
    expect(rf1?.get(1)).toBe('A');
    expect(rf1?.get(11)).toBe(task.id);
    expect(first.all('PRD').map((p) => [p.get(1), p.get(2)])).toEqual([
      ['RP', 'Powell'],
      ['RT', 'Cardio'],
    ]);
    expect(first.segment('PID')?.get(3)).toBe(mrn);
    expect(first.all('NTE').map((n) => n.get(3))).toEqual(['Referral accepted', 'Seen within two weeks']);

    // The referrer modifies its referral (REF^I13, still RF1-1 P): our answer stands.
    expect(parseAck((await client.request(ref('I13', id, mrn))) as string).code).toBe('AA');
    const [modified] = (await findBy(env, 'Task', [['identifier', `urn:wardlink:hl7v2:authority:${app}|${id}`]])) as Task[];
    expect(modified.status).toBe('accepted');

    await env.repo.update<Task>({ ...accepted.resource, status: 'completed' });
    const both = await waitFor(() => rriFor(id), (l) => l.length >= 2);
    expect(both[1].segment('RF1')?.get(1)).toBe('A');
    expect(both[1].segment('NTE')?.get(3)).toBe('Referral completed');

    // The referrer's own cancel (REF^I14) changes the Task, and is not echoed back to it.
    expect(parseAck((await client.request(ref('I14', id, mrn))) as string).code).toBe('AA');
    const [cancelled] = (await findBy(env, 'Task', [['identifier', `urn:wardlink:hl7v2:authority:${app}|${id}`]])) as Task[];
    expect(cancelled.status).toBe('cancelled');
    await new Promise((r) => setTimeout(r, 600));
    expect(rriFor(id)).toHaveLength(2);
    const sent = await env.db.query<{ status: string }>(`SELECT status FROM hl7_outbound WHERE message_type = 'RRI^I12' AND raw LIKE $1`, [`%|${id}^${app}|%`]);
    expect(sent.rows.map((r) => r.status)).toEqual(['sent', 'sent']);
  });

  it('answers a referral entered over FHIR to the MLLP Endpoint of the requesting Organization, R when declined', async () => {
    const endpoint = await env.repo.create<Endpoint>({
      resourceType: 'Endpoint',
      status: 'active',
      connectionType: { system: 'http://wardlink.example/fhir/CodeSystem/endpoint-connection-type', code: 'hl7v2-mllp' },
      payloadType: [{ text: 'HL7 v2 referral answers' }],
      address: `mllp://127.0.0.1:${partner.port}`,
    });
    const org = await env.repo.create<Organization>({ resourceType: 'Organization', name: 'Northside Clinic', endpoint: [{ reference: `Endpoint/${endpoint.id}` }] });
    const patient = await env.repo.create<Patient>({ resourceType: 'Patient', identifier: [{ system: 'urn:oid:1.2.3.4', value: uid('M') }], name: [{ family: 'Fhir', given: ['Fay'] }] });
    const placer = uid('FHIRREF');
    const sr = await env.repo.create<ServiceRequest>({
      resourceType: 'ServiceRequest',
      identifier: [{ system: 'urn:northside:referrals', value: placer, type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'PLAC' }] } }],
      status: 'active',
      intent: 'order',
      subject: { reference: `Patient/${patient.id}` },
    });
    const task = await env.repo.create<Task>({
      resourceType: 'Task',
      status: 'requested',
      intent: 'order',
      code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }] },
      focus: { reference: `ServiceRequest/${sr.id}` },
      for: { reference: `Patient/${patient.id}` },
      requester: { reference: `Organization/${org.id}` },
    });
    await env.repo.update<Task>({ ...task, status: 'rejected', statusReason: { text: 'Outside our catchment area' } });
    const [answer] = await waitFor(() => rriFor(placer), (l) => l.length > 0);
    expect(answer, 'RRI^I12 delivered').toBeDefined();
    expect(answer.segment('RF1')?.get(1)).toBe('R');
    expect(answer.segment('RF1')?.get(6, 2)).toBe('urn:northside:referrals');
    expect(answer.segment('NTE')?.get(3)).toBe('Referral rejected: Outside our catchment area');
    expect(answer.segment('PID')?.get(5)).toBe('Fhir');
  });
});
