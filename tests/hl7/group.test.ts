// Group commit: original-mode messages that arrive together over several MLLP connections share
// one transaction (seen here as one xmin on their hl7_message rows), each still answered with its
// own ACK, stored with its own row and resources. A refused message or a resend in a burst does
// not cost the others anything (a group holding it rolls back and each is processed on its own;
// which messages share a group is timing, so these two check the answers, not the grouping). Two
// messages about one patient are never written in one group. PostgreSQL only: groups ride on the
// pipelined connections, which the embedded database does not have.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as store from '../../server/hl7/store.ts';
import { MllpClient, findBy, mkMessage, parseAck, startHl7Env, type Hl7Env } from './support.ts';

let env: Hl7Env;
let clients: MllpClient[] = [];
let seq = 0;
const uid = (p: string) => `${p}${Date.now().toString(36)}${(seq++).toString(36)}`;

beforeAll(async () => {
  if (!process.env.DATABASE_URL) return;
  env = await startHl7Env();
  clients = await Promise.all(Array.from({ length: 8 }, () => MllpClient.connect(env.hl7.port)));
});
afterAll(async () => {
  for (const c of clients) c.close();
  await env?.close();
});

function a0x(event: 'A01' | 'A08', mrn: string, control = uid('G'), evn = '20240301120000+0000', family = 'Group'): string {
  return mkMessage([
    `MSH|^~\\&|GROUPAPP|GROUPFAC|WARDLINK|HOSP|20240301120000+0000||ADT^${event}^ADT_A01|${control}|P|2.5.1`,
    `EVN|${event}|${evn}`,
    `PID|1||${mrn}^^^&1.2.3.4&ISO^MR||${family}^Pat||19800101|F`,
    `PV1|1|I|4E^401^B^HOSP|E|||||||||||||||V${mrn}^^^&1.2.3.5&ISO^VN`,
  ]);
}

/** Sends one message on each connection at the same moment; the answers in order. */
async function burst(messages: string[]): Promise<ReturnType<typeof parseAck>[]> {
  const answers = await Promise.all(messages.map((m, i) => clients[i].request(m, 20_000)));
  return answers.map((a) => parseAck(a as string));
}

type Row = { control_id: string; status: string; ack_code: string; resources: string[]; tx: string };

async function rows(controls: string[]): Promise<Row[]> {
  const res = await env.db.query<Row>(
    `SELECT control_id, status, ack_code, resources, xmin::text AS tx FROM hl7_message WHERE sender = 'GROUPAPP|GROUPFAC' AND control_id = ANY($1::text[])`,
    [controls],
  );
  return res.rows;
}

const patientBy = (mrn: string) => findBy(env, 'Patient', [['identifier', `urn:oid:1.2.3.4|${mrn}`]]);

describe.skipIf(!process.env.DATABASE_URL)('HL7 v2 group commit', () => {
  it('commits messages that arrive together in one transaction, each with its own ACK, row and resources', async () => {
    const mrns = clients.map(() => uid('M'));
    const controls = mrns.map(() => uid('C'));
    const acks = await burst(mrns.map((m, i) => a0x('A01', m, controls[i])));
    acks.forEach((a, i) => expect(a).toMatchObject({ code: 'AA', controlId: controls[i] }));
    const stored = await rows(controls);
    expect(stored).toHaveLength(8);
    // Fewer transactions than messages: some were committed together.
    expect(new Set(stored.map((r) => r.tx)).size).toBeLessThan(8);
    for (const [i, mrn] of mrns.entries()) {
      const [patient] = await patientBy(mrn);
      expect(patient.name[0].family).toBe('Group');
      const row = stored.find((r) => r.control_id === controls[i])!;
      expect(row).toMatchObject({ status: 'processed', ack_code: 'AA' });
      expect(row.resources).toContain(`Patient/${patient.id}/_history/1`);
      expect(row.resources.some((r) => r.startsWith('Encounter/'))).toBe(true);
    }
  });

  it('a refused message in a burst gets its AE and leaves nothing; the others are stored', async () => {
    // Two stored Patients share an MRN: a message about it cannot say which to update.
    const twin = uid('T');
    for (let i = 0; i < 2; i++) {
      await env.repo.create({ resourceType: 'Patient', identifier: [{ system: 'urn:oid:1.2.3.4', value: twin }] });
    }
    const mrns = clients.map((_, i) => (i === 3 ? twin : uid('M')));
    const controls = mrns.map(() => uid('C'));
    const acks = await burst(mrns.map((m, i) => a0x('A01', m, controls[i])));
    acks.forEach((a, i) => expect(a.code).toBe(i === 3 ? 'AE' : 'AA'));
    const stored = await rows(controls);
    expect(stored.find((r) => r.control_id === controls[3])).toMatchObject({ status: 'error', ack_code: 'AE' });
    expect(await findBy(env, 'Encounter', [['identifier', `urn:oid:1.2.3.5|V${twin}`]])).toHaveLength(0);
    for (const [i, mrn] of mrns.entries()) if (i !== 3) expect(await patientBy(mrn)).toHaveLength(1);
  });

  it('a resend in a burst gets the ACK it got the first time and is stored once', async () => {
    const first = uid('C');
    const firstMrn = uid('M');
    const original = (await clients[0].request(a0x('A01', firstMrn, first))) as string;
    expect(parseAck(original).code).toBe('AA');
    const controls = clients.map((_, i) => (i === 5 ? first : uid('C')));
    const acks = await burst(controls.map((c, i) => a0x('A01', i === 5 ? firstMrn : uid('M'), c)));
    expect(acks.map((a) => a.code)).toEqual(Array(8).fill('AA'));
    expect(acks[5].controlId).toBe(first);
    expect(await rows([first])).toHaveLength(1);
    expect(await patientBy(firstMrn)).toHaveLength(1);
  });

  it('two messages about one patient are written one after the other, never together', async () => {
    const mrn = uid('M');
    await clients[0].request(a0x('A01', mrn));
    const controls = clients.map(() => uid('C'));
    // The same patient on connections 2 and 6, newer event last; the others are strangers.
    const messages = controls.map((c, i) =>
      i === 2 ? a0x('A08', mrn, c, '20240302120000+0000', 'Second') : i === 6 ? a0x('A08', mrn, c, '20240303120000+0000', 'Third') : a0x('A01', uid('M'), c),
    );
    const acks = await burst(messages);
    expect(acks.map((a) => a.code)).toEqual(Array(8).fill('AA'));
    const stored = await rows([controls[2], controls[6]]);
    expect(stored).toHaveLength(2);
    expect(stored[0].tx).not.toBe(stored[1].tx);
    // Whichever was written second, the newer event's name stands (an older one arriving
    // second is kept out by the clock, not written over).
    const [patient] = await patientBy(mrn);
    expect(patient.name[0].family).toBe('Third');
  });
  it('claims a group in one statement: an id each, every lock, and stale only the key a newer event holds', async () => {
    const [older, newer, plain] = [uid('K'), uid('K'), uid('K')];
    const t = (iso: string) => Date.parse(iso);
    await env.db.query(`INSERT INTO hl7_clock (key, event_time, message_id) VALUES ($1, $2, NULL), ($3, $2, NULL)`, [older, '2024-03-05T00:00:00Z', newer]);
    const claimed = await env.db.transaction(async (client) => {
      const result = await store.reserveAndClaimAll(client, [
        { lockKeys: [`lock-${older}`], clockKeys: [older], eventMs: t('2024-03-01T00:00:00Z') },
        { lockKeys: [`lock-${newer}`], clockKeys: [newer], eventMs: t('2024-03-09T00:00:00Z') },
        { lockKeys: [], clockKeys: [plain], eventMs: undefined },
      ]);
      // Both advisory locks are held by this transaction.
      const locks = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()`);
      expect(locks.rows[0].n).toBe(2);
      return result;
    });
    expect(claimed.map((c) => [...c.stale])).toEqual([[older], [], []]);
    expect(new Set(claimed.map((c) => c.id)).size).toBe(3);
    const clock = await env.db.query<{ key: string; ms: number; message_id: string | null }>(
      `SELECT key, (extract(epoch FROM event_time) * 1000)::float8 AS ms, message_id::text AS message_id FROM hl7_clock WHERE key = ANY($1::text[]) ORDER BY key`,
      [[older, newer, plain]],
    );
    const byKey = new Map(clock.rows.map((r) => [r.key, r]));
    // The older event left the stored time and owner; the newer one took its key; no event time, no clock row.
    expect(byKey.get(older)).toMatchObject({ ms: t('2024-03-05T00:00:00Z'), message_id: null });
    expect(byKey.get(newer)).toMatchObject({ ms: t('2024-03-09T00:00:00Z'), message_id: claimed[1].id });
    expect(byKey.has(plain)).toBe(false);
  });

  it('an older event in a burst is not written over the newer data; the others are stored', async () => {
    const mrn = uid('M');
    await clients[0].request(a0x('A01', mrn, uid('C'), '20240305120000+0000', 'Newer'));
    const controls = clients.map(() => uid('C'));
    const acks = await burst(controls.map((c, i) => (i === 4 ? a0x('A08', mrn, c, '20240301120000+0000', 'Older') : a0x('A01', uid('M'), c))));
    expect(acks.map((a) => a.code)).toEqual(Array(8).fill('AA'));
    const [patient] = await patientBy(mrn);
    expect(patient.name[0].family).toBe('Newer');
    const notes = await env.db.query<{ notes: string[] }>(`SELECT notes FROM hl7_message WHERE sender = 'GROUPAPP|GROUPFAC' AND control_id = $1`, [controls[4]]);
    expect(notes.rows[0].notes.join(' ')).toMatch(/Newer data already applied for (.*, )?Patient\b/);
    // Its resources list names the Patient it left as it was, at its stored version.
    const [row] = await rows([controls[4]]);
    expect(row.resources).toContain(`Patient/${patient.id}/_history/${patient.meta.versionId}`);
  });
});
