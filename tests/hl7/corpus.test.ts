// Every message of the shared HL7 v2 corpus goes over a real TCP socket to the real MLLP
// listener: supported ones are answered AA (or CA in enhanced mode) with their resources stored,
// the rest AE / AR with an ERR that says why, and none of them leaves partial data or stops
// the listener.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MllpClient, corpusMessage, corpusNames, parseAck, startHl7Env, type Hl7Env } from './support.ts';

/** Corpus messages that must be refused, with the ACK code and HL7 error code (table 0357). */
const REFUSED: Record<string, { code: string; err: string }> = {
  'ACK_1.hl7': { code: 'AR', err: '200' }, // an ACK is not a message we process
  'ACK_2.hl7': { code: 'AR', err: '203' }, // v2.1
  'ACK_3.hl7': { code: 'AR', err: '203' }, // "2.6.1" is no HL7 version
  'ADT_A24_1.hl7': { code: 'CR', err: '201' }, // A24 (link) unsupported; MSH-15 AL -> enhanced mode
  'ERP_Z99_1.hl7': { code: 'AR', err: '200' },
  'ORU_R01_6.hl7': { code: 'AE', err: '101' }, // PID-3 has no identifier value
  'ORU_R01_7.hl7': { code: 'AR', err: '202' }, // MSH-11 "N" is not a processing id
  'SIU_S12_3.hl7': { code: 'AE', err: '100' }, // no SCH segment
  'invalid/ADT_O01_1.hl7': { code: 'AR', err: '201' },
  'invalid/ORM_O01_1.hl7': { code: 'AR', err: '101' },
  'invalid/ORM_O01_2.hl7': { code: 'AE', err: '100' },
  'invalid/UNKNOWN_1.hl7': { code: 'AR', err: '101' },
};

/** MSH-15 and MSH-16 NE: the sender asked for no acknowledgement at all. */
const NO_ACK = new Set(['ADT_A04_5.hl7', 'ORU_R01_9.hl7']);

let env: Hl7Env;
let client: MllpClient;

beforeAll(async () => {
  env = await startHl7Env();
  client = await MllpClient.connect(env.hl7.port);
});
afterAll(async () => {
  client?.close();
  await env?.close();
});

function errCode(err: string[]): string {
  // v2.5+: ERR-3 = code^text^HL70357; v2.3/2.4: ERR-1 = seg^seq^field^code&text&HL70357
  return err[3] ? err[3].split('^')[0] : (err[1]?.split('^')[3] ?? '').split('&')[0];
}

async function storedMessage(controlId: string) {
  const res = await env.db.query<{ status: string; resources: string[]; errors: unknown }>(
    `SELECT status, resources, errors FROM hl7_message WHERE control_id = $1 ORDER BY id DESC LIMIT 1`,
    [controlId],
  );
  return res.rows[0];
}

describe('HL7 v2 corpus over MLLP', () => {
  for (const name of corpusNames()) {
    it(`answers ${name}`, async () => {
      const raw = corpusMessage(name);
      const controlId = raw.toString('utf8').split('\r')[0].split(raw.toString('utf8')[3])[9];
      if (NO_ACK.has(name)) {
        expect(await client.request(raw, 1500)).toBeUndefined();
        // No ACK asked for, but the message is stored and processed all the same.
        let row;
        for (let i = 0; i < 50 && row?.status !== 'processed'; i++) {
          await new Promise((r) => setTimeout(r, 100));
          row = await storedMessage(controlId);
        }
        expect(row?.status).toBe('processed');
        return;
      }
      const ack = await client.request(raw);
      expect(ack, 'an ACK').toBeDefined();
      const parsed = parseAck(ack as string);
      expect(parsed.msh[8]).toMatch(/^ACK/);
      const refused = REFUSED[name];
      if (refused) {
        expect(parsed.code).toBe(refused.code);
        expect(parsed.err.length).toBeGreaterThan(0);
        expect(errCode(parsed.err[0])).toBe(refused.err);
        return;
      }
      expect(['AA', 'CA']).toContain(parsed.code);
      expect(parsed.controlId).toBe(controlId);
      // The ACK's MSH mirrors the sender: its receiving application is the sender's MSH-3.
      const sent = raw.toString('utf8').split('\r')[0].split('|');
      expect(parsed.msh[4]).toBe(sent[2].trim());
      let row = await storedMessage(controlId);
      for (let i = 0; i < 50 && row?.status === 'received'; i++) {
        await new Promise((r) => setTimeout(r, 100));
        row = await storedMessage(controlId);
      }
      expect(row.status).toBe('processed');
      expect(row.resources.length).toBeGreaterThan(0);
      const types = new Set(row.resources.map((r) => r.split('/')[0]));
      const expected: Record<string, string[]> = {
        ADT: ['Patient'],
        SIU: ['Appointment'],
        ORU: raw.includes('\rOBX|') ? ['DiagnosticReport', 'Observation'] : ['DiagnosticReport'],
        ORM: ['ServiceRequest'],
        REF: ['ServiceRequest', 'Task'],
      };
      for (const t of expected[name.slice(0, 3)] ?? []) expect(types, `${name} produced ${t}`).toContain(t);
      // Each reference points at a stored resource.
      for (const ref of row.resources.slice(0, 5)) {
        const [type, id] = ref.split('/');
        await expect(env.repo.read(type, id)).resolves.toBeDefined();
      }
    });
  }

  for (const name of corpusNames('invalid')) {
    it(`refuses ${name} with an ERR`, async () => {
      const ack = await client.request(corpusMessage(name));
      const parsed = parseAck(ack as string);
      expect(parsed.code).toBe(REFUSED[name].code);
      expect(errCode(parsed.err[0])).toBe(REFUSED[name].err);
    });
  }

  it('answers a batch with a batch of ACKs', async () => {
    const ack = (await client.request(corpusMessage('batch/BATCH_1.hl7'))) as string;
    expect(ack.startsWith('BHS')).toBe(true);
    const msas = ack.split('\r').filter((l) => l.startsWith('MSA'));
    // ADT^A01 accepted; the RSP^K11 asked for no ACK (MSH-15/16 NE) and is refused silently.
    expect(msas[0]).toBe('MSA|AA|24553');
    expect(ack.split('\r').at(-1)).toBe(`BTS|${msas.length}`);
  });

  it('answers every fuzz input with AR/CE and keeps serving', async () => {
    for (const name of corpusNames('malformed-fuzz')) {
      const ack = await client.request(corpusMessage(name));
      expect(ack, name).toBeDefined();
      expect(['AR', 'AE', 'CR', 'CE']).toContain(parseAck(ack as string).code);
    }
    const ok = await client.request(corpusMessage('ADT_A28_2.hl7'));
    expect(['AA', 'CA']).toContain(parseAck(ok as string).code);
  });

  it('refused messages leave no resources behind', async () => {
    const before = await env.db.query<{ n: string }>('SELECT count(*)::text AS n FROM resource_history');
    const c = await MllpClient.connect(env.hl7.port);
    const bad = corpusMessage('ORU_R01_6.hl7'); // maps Patient fine until PID-3 fails
    const ack = await c.request(Buffer.from(bad.toString('utf8').replace('|220220550|', '|NEWID-1|')));
    expect(parseAck(ack as string).code).toBe('AE');
    c.close();
    const after = await env.db.query<{ n: string }>('SELECT count(*)::text AS n FROM resource_history');
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });
});
