// Outbound v2 over MLLP to a real receiver (our MLLP listener framing, in the test): REF^I12 built
// from a referral, retried with backoff while the receiver is down, delivered once it is up;
// a message that never gets through ends in the dead-letter list.
import net from 'node:net';
import type { Endpoint, Organization, Patient, ServiceRequest, Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createInProcessQueue } from '../../server/jobs/inprocess.ts';
import type { JobQueue } from '../../server/jobs/queue.ts';
import { refI12 } from '../../server/hl7/outbound/build.ts';
import { deadLetters, enqueueOutbound, outboundListener, startOutboundWorker, type OutboundDeps } from '../../server/hl7/outbound/queue.ts';
import { startMllpServer, type MllpServer } from '../../server/hl7/mllp.ts';
import { parseMessage } from '../../server/hl7/message.ts';
import { FHIR_BASE, log, startHl7Env, type Hl7Env } from './support.ts';

let env: Hl7Env;
let jobs: JobQueue;
let deps: OutboundDeps;

beforeAll(async () => {
  env = await startHl7Env();
  jobs = createInProcessQueue({ db: env.db, log, pollMs: 100 });
  deps = { db: env.db, jobs, log, fhirBase: FHIR_BASE, attempts: 6, backoffMs: 150, ackTimeoutMs: 2000 };
  startOutboundWorker(deps);
});
afterAll(async () => {
  await jobs?.close();
  await env?.close();
});

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function receiver(port: number, got: string[]): Promise<MllpServer> {
  return startMllpServer({
    port,
    host: '127.0.0.1',
    log,
    handler: async (frame) => {
      const text = frame.toString('utf8');
      got.push(text);
      const controlId = parseMessage(text).controlId;
      return { response: `MSH|^~\\&|RCV|RCV|WARDLINK|WARDLINK|20240101000000||ACK^I12^ACK|A${controlId}|P|2.5.1\rMSA|AA|${controlId}` };
    },
  });
}

async function outboundRow(id: string) {
  return (await env.db.query<{ status: string; attempts: number; ack: string | null }>('SELECT status, attempts, ack FROM hl7_outbound WHERE id = $1', [id])).rows[0];
}

async function waitFor<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  let v = await fn();
  while (!ok(v) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    v = await fn();
  }
  return v;
}

const patient: Patient = { resourceType: 'Patient', id: 'p1', identifier: [{ system: 'urn:oid:1.2.3.4', value: 'MRN1' }], name: [{ family: 'Doe', given: ['Jane'] }], gender: 'female', birthDate: '1970-01-01' };
const sr: ServiceRequest = { resourceType: 'ServiceRequest', id: 'sr1', identifier: [{ value: 'REF-1' }], status: 'active', intent: 'order', priority: 'urgent', subject: { reference: 'Patient/p1' }, authoredOn: '2024-03-01' };
const task: Task = { resourceType: 'Task', status: 'requested', intent: 'order', restriction: { period: { end: '2024-03-15' } } };

describe('HL7 v2 outbound', () => {
  it('retries while the receiver is down and delivers REF^I12 once it is up', async () => {
    const port = await freePort();
    const msg = refI12({ serviceRequest: sr, task, patient }, { application: 'WARDLINK', facility: 'HOSP' }, { application: 'RCV', facility: 'RCV' });
    const id = (await enqueueOutbound(deps, `mllp://127.0.0.1:${port}`, 'REF^I12', msg.controlId, msg.text)) as string;
    const failedOnce = await waitFor(() => outboundRow(id), (r) => r.attempts >= 1);
    expect(failedOnce.status).toBe('pending');
    const got: string[] = [];
    const server = await receiver(port, got);
    try {
      const sent = await waitFor(() => outboundRow(id), (r) => r.status === 'sent');
      expect(sent.status).toBe('sent');
      expect(sent.ack).toContain(`MSA|AA|${msg.controlId}`);
      const received = parseMessage(got[0]);
      expect(received.messageCode).toBe('REF');
      expect(received.triggerEvent).toBe('I12');
      expect(received.segment('RF1')?.get(1)).toBe('P');
      expect(received.segment('RF1')?.get(2)).toBe('A');
      expect(received.segment('PID')?.get(5)).toBe('Doe');
    } finally {
      await server.close();
    }
  });

  it('puts a message that never gets through on the dead-letter list', async () => {
    const port = await freePort();
    const short = { ...deps, attempts: 2, backoffMs: 50 };
    const msg = refI12({ serviceRequest: sr, task, patient }, { application: 'W', facility: 'H' }, { application: 'R', facility: 'R' });
    const id = (await enqueueOutbound(short, `mllp://127.0.0.1:${port}`, 'REF^I12', msg.controlId, msg.text)) as string;
    const row = await waitFor(() => outboundRow(id), (r) => r.status === 'dead');
    expect(row).toMatchObject({ status: 'dead', attempts: 2 });
    expect((await deadLetters(env.db)).map((d) => d.id)).toContain(id);
  });

  it('sends a new referral Task to the MLLP Endpoint of its owner organisation, once per event', async () => {
    const got: string[] = [];
    const port = await freePort();
    const server = await receiver(port, got);
    try {
      const endpoint = await env.repo.create<Endpoint>({
        resourceType: 'Endpoint',
        status: 'active',
        connectionType: { system: 'http://wardlink.example/fhir/CodeSystem/endpoint-connection-type', code: 'hl7v2-mllp' },
        payloadType: [{ text: 'HL7 v2 REF^I12' }],
        address: `mllp://127.0.0.1:${port}`,
      });
      const org = await env.repo.create<Organization>({ resourceType: 'Organization', name: 'Cardiology Clinic', endpoint: [{ reference: `Endpoint/${endpoint.id}` }] });
      const p = await env.repo.create<Patient>({ ...patient, id: undefined });
      const s = await env.repo.create<ServiceRequest>({ ...sr, id: undefined, subject: { reference: `Patient/${p.id}` } });
      const t = await env.repo.create<Task>({
        ...task,
        code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }] },
        focus: { reference: `ServiceRequest/${s.id}` },
        for: { reference: `Patient/${p.id}` },
        owner: { reference: `Organization/${org.id}` },
      });
      const listener = outboundListener(deps);
      const event = { eventId: '1', resourceType: 'Task', resourceId: t.id as string, version: 1, action: 'create' as const, at: '', attempt: 1 };
      await listener(event);
      await listener({ ...event, attempt: 2 }); // redelivered: no second message
      await waitFor(async () => got.length, (n) => n >= 1);
      await new Promise((r) => setTimeout(r, 300));
      expect(got).toHaveLength(1);
      expect(parseMessage(got[0]).segment('RF1')?.get(6)).toBe('REF-1');
    } finally {
      await server.close();
    }
  });
});
