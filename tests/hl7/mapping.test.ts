// Field-level mapping, idempotency, ordering, merge, enhanced acknowledgement and reprocessing,
// all through the real MLLP listener on a fresh database.
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:http';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHl7Router } from '../../server/hl7/index.ts';
import { MllpClient, errorsOf, findBy, frameBoth, mkMessage, parseAck, startHl7Env, storedNotes, type Hl7Env } from './support.ts';

let env: Hl7Env;
let client: MllpClient;
let seq = 0;

beforeAll(async () => {
  env = await startHl7Env();
  client = await MllpClient.connect(env.hl7.port);
});
afterAll(async () => {
  client?.close();
  await env?.close();
});

const uid = (p: string) => `${p}${Date.now().toString(36)}${(seq++).toString(36)}`;

function msh(type: string, controlId: string, opts: { version?: string; time?: string; ack?: [string, string] } = {}): string {
  const [accept, app] = opts.ack ?? ['', ''];
  return `MSH|^~\\&|SENDAPP|SENDFAC|WARDLINK|HOSP|${opts.time ?? '20240301120000+0100'}||${type}|${controlId}|P|${opts.version ?? '2.5.1'}|||${accept}|${app}`;
}

async function send(segments: string[]): Promise<ReturnType<typeof parseAck> & { raw: string }> {
  const raw = (await client.request(mkMessage(segments))) as string;
  expect(raw, 'an ACK').toBeDefined();
  return { ...parseAck(raw), raw };
}

const patientBy = (mrn: string) => findBy(env, 'Patient', [['identifier', `urn:oid:1.2.3.4|${mrn}`]]);

/** A segment from name and field values by position (1-based). */
function seg(name: string, fields: Record<number, string>): string {
  const max = Math.max(...Object.keys(fields).map(Number));
  const out = [name];
  for (let i = 1; i <= max; i++) out.push(fields[i] ?? '');
  return out.join('|');
}

function adt(event: string, mrn: string, opts: { control?: string; evn?: string; name?: string; visit?: string; pv1Extra?: string; discharge?: string } = {}): string[] {
  const visit = opts.visit ?? `V${mrn}`;
  const pv1 = seg('PV1', {
    1: '1',
    2: 'I',
    3: '4E^401^B^HOSP^^^MAIN^4',
    4: 'E',
    7: '1234^Attend^Alice^^^Dr^^^&1.2.3.9&ISO',
    14: '7',
    19: `${visit}^^^&1.2.3.5&ISO^VN`,
    36: '01',
    44: '20240301110000+0100',
    45: opts.discharge ?? '',
  });
  return [
    msh(`ADT^${event}^ADT_A01`, opts.control ?? uid('C')),
    `EVN|${event}|${opts.evn ?? '20240301120000+0100'}`,
    `PID|1||${mrn}^^^&1.2.3.4&ISO^MR~999-${mrn}^^^SSA^SS||${opts.name ?? 'O\\T\\Brien^Mary^Ann^^Mrs'}||19800215|F|||1 Main St^Apt 2^Springfield^IL^62701^USA^H||^PRN^PH^^1^217^5551234~^NET^Internet^mary@example.org|^WPN^PH^^1^217^5559999||M`,
    'NK1|1|Brien^John|SPO^Spouse^HL70063||^PRN^PH^^1^217^5550000',
    pv1,
    'AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives~Rash|20100101',
    'DG1|1||I10.9^Hypertension^I10||20240301',
  ];
}

describe('ADT mapping', () => {
  it('maps ADT^A01 PID, NK1, PV1, AL1 and DG1 field by field', async () => {
    const mrn = uid('M');
    const ack = await send(adt('A01', mrn));
    expect(ack.code).toBe('AA');
    const [patient] = await patientBy(mrn);
    expect(patient.identifier).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ system: 'urn:oid:1.2.3.4', value: mrn, type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] } }),
      ]),
    );
    // \T\ unescaped to the subcomponent separator
    expect(patient.name[0]).toMatchObject({ family: 'O&Brien', given: ['Mary', 'Ann'], prefix: ['Mrs'] });
    expect(patient.birthDate).toBe('1980-02-15');
    expect(patient.gender).toBe('female');
    expect(patient.address[0]).toMatchObject({ use: 'home', line: ['1 Main St', 'Apt 2'], city: 'Springfield', state: 'IL', postalCode: '62701', country: 'USA' });
    expect(patient.telecom).toEqual([
      { system: 'phone', value: '+1 217 5551234', use: 'home' },
      { system: 'email', value: 'mary@example.org' },
      { system: 'phone', value: '+1 217 5559999', use: 'work' },
    ]);
    expect(patient.contact[0].name.family).toBe('Brien');
    expect(patient.contact[0].relationship[0].coding[0]).toMatchObject({ system: 'http://terminology.hl7.org/CodeSystem/v2-0063', code: 'SPO' });

    const [enc] = await findBy(env, 'Encounter', [['identifier', `urn:oid:1.2.3.5|V${mrn}`]]);
    expect(enc.status).toBe('in-progress');
    expect(enc.class).toMatchObject({ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP' });
    expect(enc.subject.reference).toBe(`Patient/${patient.id}`);
    expect(enc.period.start).toBe('2024-03-01T11:00:00+01:00');
    expect(enc.participant[0]).toMatchObject({ individual: { identifier: { system: 'urn:oid:1.2.3.9', value: '1234' }, display: 'Dr Alice Attend' } });
    expect(enc.location[0].location.display).toContain('4E');
    expect(enc.hospitalization.admitSource.coding[0].code).toBe('7');

    const [allergy] = await findBy(env, 'AllergyIntolerance', [['patient', `Patient/${patient.id}`]]);
    expect(allergy).toMatchObject({ category: ['medication'], criticality: 'high', code: { coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: '70618' }] } });
    expect(allergy.reaction[0].manifestation.map((m: { text: string }) => m.text)).toEqual(['Hives', 'Rash']);
    const [condition] = await findBy(env, 'Condition', [['patient', `Patient/${patient.id}`]]);
    expect(condition.code.coding[0]).toMatchObject({ system: 'http://hl7.org/fhir/sid/icd-10', code: 'I10.9' });
    expect(condition.encounter.reference).toBe(`Encounter/${enc.id}`);
  });

  it('A08 updates the same Patient and A03 finishes the same Encounter', async () => {
    const mrn = uid('M');
    await send(adt('A01', mrn));
    const a08 = await send(adt('A08', mrn, { name: 'Smith^Mary', evn: '20240301130000+0100' }));
    expect(a08.code).toBe('AA');
    const patients = await patientBy(mrn);
    expect(patients).toHaveLength(1);
    expect(patients[0].name[0].family).toBe('Smith');
    // The stored message lists what it wrote at the versions it wrote.
    const stored = await env.db.query<{ resources: string[] }>('SELECT resources FROM hl7_message WHERE control_id = $1', [a08.controlId]);
    expect(stored.rows[0].resources).toContain(`Patient/${patients[0].id}/_history/2`);
    expect((await send(adt('A03', mrn, { evn: '20240302090000+0100', discharge: '20240302083000+0100' }))).code).toBe('AA');
    const encounters = await findBy(env, 'Encounter', [['patient', `Patient/${patients[0].id}`]]);
    expect(encounters).toHaveLength(1);
    expect(encounters[0].status).toBe('finished');
    expect(encounters[0].period.end).toBe('2024-03-02T08:30:00+01:00');
    // Repeated snapshots do not duplicate allergies.
    expect(await findBy(env, 'AllergyIntolerance', [['patient', `Patient/${patients[0].id}`]])).toHaveLength(1);
  });

  it('A11 cancels the admission', async () => {
    const mrn = uid('M');
    await send(adt('A01', mrn));
    await send(adt('A11', mrn, { evn: '20240301140000+0100' }));
    const [enc] = await findBy(env, 'Encounter', [['identifier', `urn:oid:1.2.3.5|V${mrn}`]]);
    expect(enc.status).toBe('cancelled');
  });

  it('A28 with a \\F\\ escape and an explicit null adds a person only', async () => {
    const mrn = uid('M');
    const ack = await send([msh('ADT^A28^ADT_A05', uid('C')), 'EVN|A28|20240301120000', `PID|1||${mrn}^^^&1.2.3.4&ISO^MR||A\\F\\B^Jo||""|U`]);
    expect(ack.code).toBe('AA');
    const [p] = await patientBy(mrn);
    expect(p.name[0].family).toBe('A|B');
    expect(p.birthDate).toBeUndefined();
    expect(p.gender).toBe('unknown');
  });

  it('stores a message whose date fields are not dates, answering AA with a warning ERR per field', async () => {
    const mrn = uid('M');
    const control = uid('C');
    const segments = adt('A01', mrn, { control });
    segments[2] = segments[2].replace('||19800215|', '||DOB|');
    segments[4] = segments[4].replace('20240301110000+0100', '20241301110000+0100'); // PV1-44, month 13
    const ack = await send(segments);
    expect(ack.code).toBe('AA');
    // ERR-2 location (segment^sequence^field), ERR-3 102 data type error, ERR-4 severity W.
    expect(errorsOf(ack)).toEqual([
      { location: 'PID^3^7^1', code: '102', severity: 'W', text: 'PID-7 "DOB" is not a valid HL7 date/time: left out' },
      { location: 'PV1^5^44^1', code: '102', severity: 'W', text: 'PV1-44 "20241301110000+0100" is not a valid HL7 date/time: left out' },
    ]);
    const [p] = await patientBy(mrn);
    expect(p.birthDate).toBeUndefined();
    expect(p.name[0].given).toEqual(['Mary', 'Ann']);
    const [enc] = await findBy(env, 'Encounter', [['identifier', `urn:oid:1.2.3.5|V${mrn}`]]);
    expect(enc.period?.start).toBeUndefined();
    expect(await storedNotes(env, control)).toEqual(expect.arrayContaining([expect.stringContaining('PID-7 "DOB"'), expect.stringContaining('PV1-44')]));
  });

  it('warns of validity dates inside a name or an address that are not dates, keeping the rest of them', async () => {
    const mrn = uid('M');
    const control = uid('C');
    const segments = adt('A01', mrn, { control });
    // PID-5: a second name (type M, maiden) whose XPN-12 effective date has month 13; PID-11: the
    // address's XAD-13 effective date is fine, its XAD-14 expiration date is "NEVER".
    segments[2] = segments[2]
      .replace('O\\T\\Brien^Mary^Ann^^Mrs', 'O\\T\\Brien^Mary^Ann^^Mrs~Smith^Mary^^^^^M^^^^^20241301')
      .replace('1 Main St^Apt 2^Springfield^IL^62701^USA^H', '1 Main St^Apt 2^Springfield^IL^62701^USA^H^^^^^^20200101^NEVER');
    const ack = await send(segments);
    expect(ack.code).toBe('AA');
    // ERR-2: segment^sequence^field^repetition^component.
    expect(errorsOf(ack)).toEqual([
      { location: 'PID^3^5^2^12', code: '102', severity: 'W', text: 'PID-5(2).12 "20241301" is not a valid HL7 date/time: left out' },
      { location: 'PID^3^11^1^14', code: '102', severity: 'W', text: 'PID-11.14 "NEVER" is not a valid HL7 date/time: left out' },
    ]);
    const [p] = await patientBy(mrn);
    expect(p.name[1]).toEqual({ use: 'maiden', family: 'Smith', given: ['Mary'] });
    expect(p.address[0].period).toEqual({ start: '2020-01-01' });
    expect(await storedNotes(env, control)).toEqual(
      expect.arrayContaining([expect.stringContaining('PID-5(2).12 "20241301"'), expect.stringContaining('PID-11.14 "NEVER"')]),
    );
  });
});

describe('idempotency and ordering', () => {
  it('processes a replayed MSH-10 once and answers with the original ACK', async () => {
    const mrn = uid('M');
    const message = adt('A01', mrn, { control: uid('REPLAY') });
    const first = await send(message);
    const second = await send(message);
    expect(second.raw).toBe(first.raw);
    const [p] = await patientBy(mrn);
    expect(p.meta.versionId).toBe('1');
  });

  it('never lets an older event overwrite newer data', async () => {
    const mrn = uid('M');
    await send(adt('A08', mrn, { name: 'Newer^Name', evn: '20240305100000+0000' }));
    const late = await send(adt('A08', mrn, { name: 'Older^Name', evn: '20240301100000+0000' }));
    expect(late.code).toBe('AA');
    const [p] = await patientBy(mrn);
    expect(p.name[0].family).toBe('Newer');
    expect(p.meta.versionId).toBe('1');
    const row = await env.db.query<{ notes: string[]; resources: string[] }>('SELECT notes, resources FROM hl7_message WHERE control_id = $1', [late.controlId]);
    expect(row.rows[0].notes.join(' ')).toMatch(/Newer data already applied/);
    // The Patient it left as it was is listed at the stored version.
    expect(row.rows[0].resources).toContain(`Patient/${p.id}/_history/1`);
  });
});

describe('A40 merge', () => {
  it('marks the prior patient replaced, moves its identifiers and repoints its references', async () => {
    const keep = uid('K');
    const gone = uid('G');
    await send(adt('A01', keep));
    await send(adt('A01', gone));
    const [survivorBefore] = await patientBy(keep);
    const [source] = await patientBy(gone);
    const ack = await send([
      msh('ADT^A40^ADT_A39', uid('C')),
      'EVN|A40|20240310120000',
      `PID|1||${keep}^^^&1.2.3.4&ISO^MR||Keep^Me`,
      `MRG|${gone}^^^&1.2.3.4&ISO^MR`,
    ]);
    expect(ack.code).toBe('AA');
    const merged = await env.repo.readResource<any>('Patient', source.id);
    expect(merged.active).toBe(false);
    expect(merged.link).toEqual([{ other: { reference: `Patient/${survivorBefore.id}` }, type: 'replaced-by' }]);
    expect(merged.identifier.some((i: { value: string }) => i.value === gone)).toBe(false);
    const survivor = await env.repo.readResource<any>('Patient', survivorBefore.id);
    expect(survivor.identifier).toEqual(expect.arrayContaining([expect.objectContaining({ value: gone, use: 'old' })]));
    expect(survivor.link).toEqual([{ other: { reference: `Patient/${source.id}` }, type: 'replaces' }]);
    // The prior identifier now finds the survivor only.
    const found = await patientBy(gone);
    expect(found.map((p) => p.id)).toEqual([survivorBefore.id]);
    const encounters = await findBy(env, 'Encounter', [['patient', `Patient/${survivorBefore.id}`]]);
    expect(encounters).toHaveLength(2);
    expect(await findBy(env, 'Encounter', [['patient', `Patient/${source.id}`]])).toHaveLength(0);
  });
});

describe('SIU, ORU, ORM and REF mapping', () => {
  it('books, then cancels, one Appointment (S12 then S15)', async () => {
    const mrn = uid('M');
    const appt = uid('A');
    const sch = (status: string) =>
      seg('SCH', { 1: `P${appt}^PLACER`, 2: `${appt}^FILLER`, 7: 'ROUTINE^Routine visit^HL70276', 8: 'FU^Follow-up^HL70277', 9: '30', 10: 'MIN', 11: '^^^20240401090000+0000', 25: status });
    const pid = `PID|1||${mrn}^^^&1.2.3.4&ISO^MR||Doe^Jane||19700101|F`;
    expect((await send([msh('SIU^S12^SIU_S12', uid('C')), sch('Booked'), pid, 'RGS|1', 'AIP|1||77^Who^Doc|D^Doctor'])).code).toBe('AA');
    const [a] = await findBy(env, 'Appointment', [['identifier', `urn:wardlink:hl7v2:authority:FILLER|${appt}`]]);
    expect(a).toMatchObject({ status: 'booked', start: '2024-04-01T09:00:00+00:00', end: '2024-04-01T09:30:00Z', minutesDuration: 30 });
    expect(a.participant).toHaveLength(2);
    expect(a.participant[1].actor.display).toBe('Doc Who');
    expect((await send([msh('SIU^S15^SIU_S15', uid('C'), { time: '20240302120000+0100' }), sch('Cancelled'), pid])).code).toBe('AA');
    const list = await findBy(env, 'Appointment', [['identifier', `urn:wardlink:hl7v2:authority:FILLER|${appt}`]]);
    expect(list).toHaveLength(1);
    expect(list[0].status).toBe('cancelled');
  });

  it('maps ORU^R01 to a DiagnosticReport with Observations (NM, SN, ST with \\.br\\)', async () => {
    const mrn = uid('M');
    const order = uid('F');
    const ack = await send([
      msh('ORU^R01^ORU_R01', uid('C')),
      `PID|1||${mrn}^^^&1.2.3.4&ISO^MR||Doe^Jim||19700101|M`,
      seg('OBR', { 1: '1', 2: 'P1^EHR', 3: `${order}^LAB`, 4: '24323-8^Comprehensive metabolic panel^LN', 7: '20240301080000+0000', 22: '20240301100000+0000', 25: 'F' }),
      'OBX|1|NM|2345-7^Glucose^LN||182|mg/dL^mg/dL^UCUM|70-105|H|||F',
      'OBX|2|SN|2160-0^Creatinine^LN||<^1.2|mg/dL^^UCUM||||F',
      'OBX|3|ST|8251-1^Comment^LN||line one\\.br\\line two||||||F',
    ]);
    expect(ack.code).toBe('AA');
    const [report] = await findBy(env, 'DiagnosticReport', [['identifier', `urn:wardlink:hl7v2:authority:LAB|${order}`]]);
    expect(report.status).toBe('final');
    expect(report.result).toHaveLength(3);
    const obs = await Promise.all(report.result.map((r: { reference: string }) => env.repo.readResource<any>('Observation', r.reference.split('/')[1])));
    expect(obs[0]).toMatchObject({ status: 'final', valueQuantity: { value: 182, unit: 'mg/dL', system: 'http://unitsofmeasure.org', code: 'mg/dL' } });
    expect(obs[0].interpretation[0].coding[0].code).toBe('H');
    expect(obs[1].valueQuantity).toMatchObject({ comparator: '<', value: 1.2 });
    expect(obs[2].valueString).toBe('line one\nline two');
  });

  it('keeps an OBX date value that is not a date as text, with a warning; refuses a booked appointment whose start is not a date, naming the field', async () => {
    const mrn = uid('M');
    const order = uid('F');
    const oru = await send([
      msh('ORU^R01^ORU_R01', uid('C')),
      `PID|1||${mrn}^^^&1.2.3.4&ISO^MR||Doe^Jim||19700101|M`,
      seg('OBR', { 1: '1', 3: `${order}^LAB`, 4: '24323-8^Comprehensive metabolic panel^LN', 7: '20240301080000+0000', 25: 'F' }),
      'OBX|1|DT|11778-8^Delivery date Estimated^LN||2024-13-01||||||F',
    ]);
    expect(oru.code).toBe('AA');
    expect(errorsOf(oru)).toEqual([
      { location: 'OBX^4^5^1', code: '102', severity: 'W', text: 'OBX-5 "2024-13-01" is not a valid HL7 date/time: kept as text (valueString)' },
    ]);
    const [report] = await findBy(env, 'DiagnosticReport', [['identifier', `urn:wardlink:hl7v2:authority:LAB|${order}`]]);
    const obs = await env.repo.readResource<any>('Observation', report.result[0].reference.split('/')[1]);
    expect(obs.valueString).toBe('2024-13-01');

    const appt = uid('A');
    const siu = await send([
      msh('SIU^S12^SIU_S12', uid('C')),
      seg('SCH', { 2: `${appt}^FILLER`, 9: '30', 10: 'MIN', 11: '^^^20240401097000', 25: 'Booked' }), // SCH-11.4: minute 70
      `PID|1||${mrn}^^^&1.2.3.4&ISO^MR||Doe^Jim||19700101|M`,
    ]);
    expect(siu.code).toBe('AE');
    expect(errorsOf(siu)).toEqual([
      { location: 'SCH^2^11^1^4', code: '102', severity: 'E', text: 'SCH-11.4 "20240401097000" is not a valid HL7 date/time: a booked appointment needs its start and end' },
    ]);
    expect(await findBy(env, 'Appointment', [['identifier', `urn:wardlink:hl7v2:authority:FILLER|${appt}`]])).toEqual([]);
  });

  it('maps ORM^O01 to a ServiceRequest and ORC-1 CA revokes it', async () => {
    const mrn = uid('M');
    const placer = uid('P');
    const seg = (control: string) => [
      msh('ORM^O01^ORM_O01', uid('C')),
      `PID|1||${mrn}^^^&1.2.3.4&ISO^MR||Doe^Jim||19700101|M`,
      `ORC|${control}|${placer}^EHR|||||^^^^^S||20240301090000|||55^Order^Olga`,
      `OBR|1|${placer}^EHR||24317-0^Hemogram^LN`,
    ];
    expect((await send(seg('NW'))).code).toBe('AA');
    let [sr] = await findBy(env, 'ServiceRequest', [['identifier', `urn:wardlink:hl7v2:authority:EHR|${placer}`]]);
    expect(sr).toMatchObject({ status: 'active', intent: 'order', priority: 'stat', code: { coding: [{ system: 'http://loinc.org', code: '24317-0' }] } });
    expect(sr.requester.display).toBe('Olga Order');
    await send(seg('CA'));
    [sr] = await findBy(env, 'ServiceRequest', [['identifier', `urn:wardlink:hl7v2:authority:EHR|${placer}`]]);
    expect(sr.status).toBe('revoked');
  });

  it('maps REF^I12 to ServiceRequest + Task with PRD practitioners; I14 cancels', async () => {
    const mrn = uid('M');
    const ref = uid('R');
    const rf1 = `RF1|P^Pending^HL70283|S^STAT^HL70280|Med^Medical^HL70281||O^Outpatient^HL70284|${ref}^EPIC|20240301|20240315|20240301|O^Provider Ordered^HL70336`;
    const body = (event: string) => [
      msh(`REF^${event}^REF_I12`, uid('C'), { version: '2.8' }),
      rf1,
      'PRD|RP^Referring Provider^HL70286|Powell^Robert^^^Dr|1 Way^^Ann Arbor^MI^48103||^WPN^PH^^1^734^5551234||PLN1001^SL',
      'PRD|RT^Referred to Provider^HL70286|Cardio^Carla^^^Dr|||||PLN2002^SL',
      `PID|1||${mrn}^^^&1.2.3.4&ISO^MR||Doe^Ref||19600101|M`,
      'DG1|1||I20.9^Angina^I10',
      'PR1|1||183519002^Referral to cardiology service^SCT',
    ];
    expect((await send(body('I12'))).code).toBe('AA');
    const [sr] = await findBy(env, 'ServiceRequest', [['identifier', `urn:wardlink:hl7v2:authority:EPIC|${ref}`]]);
    expect(sr).toMatchObject({ status: 'active', intent: 'order', priority: 'stat', authoredOn: '2024-03-01' });
    expect(sr.category[0].coding[0].code).toBe('3457005');
    expect(sr.code.coding[0].code).toBe('183519002');
    expect(sr.reasonCode[1].coding[0].code).toBe('I20.9');
    const [task] = await findBy(env, 'Task', [['focus', `ServiceRequest/${sr.id}`]]);
    expect(task).toMatchObject({ status: 'requested', intent: 'order', priority: 'stat', restriction: { period: { end: '2024-03-15' } } });
    expect(task.businessStatus.coding[0]).toMatchObject({ system: 'http://terminology.hl7.org/CodeSystem/v2-0283', code: 'P' });
    const owner = await env.repo.readResource<any>('Practitioner', task.owner.reference.split('/')[1]);
    expect(owner.name[0].family).toBe('Cardio');
    const requester = await env.repo.readResource<any>('Practitioner', task.requester.reference.split('/')[1]);
    expect(requester.name[0].family).toBe('Powell');
    expect((await send(body('I14'))).code).toBe('AA');
    const [cancelled] = await findBy(env, 'Task', [['focus', `ServiceRequest/${sr.id}`]]);
    expect(cancelled.status).toBe('cancelled');
    expect((await env.repo.readResource<any>('ServiceRequest', sr.id)).status).toBe('revoked');
  });
});

describe('MLLP and acknowledgement modes', () => {
  it('handles two frames in one TCP chunk and several connections at once', async () => {
    const a = uid('M');
    const b = uid('M');
    const m1 = mkMessage(adt('A04', a));
    const m2 = mkMessage(adt('A04', b));
    client.sendRaw(frameBoth(m1, m2));
    const acks = [await client.next(), await client.next()].map((x) => parseAck(x as string));
    expect(acks.map((x) => x.code)).toEqual(['AA', 'AA']);
    const others = await Promise.all([1, 2, 3].map(() => MllpClient.connect(env.hl7.port)));
    const results = await Promise.all(others.map((c) => c.request(mkMessage(adt('A01', uid('M'))))));
    expect(results.map((r) => parseAck(r as string).code)).toEqual(['AA', 'AA', 'AA']);
    for (const c of others) c.close();
  });

  it('enhanced mode: CA after storage, the application ACK kept in the store', async () => {
    const mrn = uid('M');
    const segs = adt('A01', mrn);
    segs[0] = msh('ADT^A01^ADT_A01', uid('ENH'), { ack: ['AL', 'AL'] });
    const ack = await send(segs);
    expect(ack.code).toBe('CA');
    let row;
    for (let i = 0; i < 50; i++) {
      row = (await env.db.query<{ status: string; app_ack: string }>('SELECT status, app_ack FROM hl7_message WHERE control_id = $1', [ack.controlId])).rows[0];
      if (row.status !== 'received') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(row?.status).toBe('processed');
    expect(parseAck(row?.app_ack as string).code).toBe('AA');
  });

  it('enhanced mode ER: nothing on success, CR on a reject', async () => {
    const ok = adt('A01', uid('M'));
    ok[0] = msh('ADT^A01^ADT_A01', uid('ER'), { ack: ['ER', 'NE'] });
    expect(await client.request(mkMessage(ok), 700)).toBeUndefined();
    const bad = [msh('ADT^A99^ADT_A01', uid('ER'), { ack: ['ER', 'NE'] }), 'PID|1||1'];
    expect(parseAck((await client.request(mkMessage(bad))) as string).code).toBe('CR');
  });
});

describe('POST /hl7/v2 and reprocessing', () => {
  let base: string;
  let close: () => Promise<void>;
  beforeAll(async () => {
    const app = new Koa();
    app.use(createHl7Router(env.deps).routes());
    const server = createServer(app.callback());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hl7/v2`;
    close = () => new Promise((r) => server.close(() => r()));
  });
  afterAll(async () => close?.());

  it('returns the FHIR transaction Bundle for a dry run and stores nothing', async () => {
    const mrn = uid('M');
    const res = await fetch(base, { method: 'POST', headers: { 'content-type': 'x-application/hl7-v2+er7' }, body: mkMessage(adt('A01', mrn)).replace(/\r/g, '\n') });
    expect(res.status).toBe(200);
    const bundle = await res.json();
    expect(bundle).toMatchObject({ resourceType: 'Bundle', type: 'transaction' });
    expect(bundle.entry[0].request.url).toBe(`Patient?identifier=${encodeURIComponent(`urn:oid:1.2.3.4|${mrn}`)}`);
    expect(await patientBy(mrn)).toHaveLength(0);
  });

  it('stores with commit=true; a fixed failed message can be reprocessed', async () => {
    const mrn = uid('M');
    const broken = adt('A01', mrn);
    broken[2] = 'PID|1||^^^&1.2.3.4&ISO^MR||Doe^Broken';
    const res = await fetch(`${base}?commit=true`, { method: 'POST', body: mkMessage(broken) });
    expect(res.status).toBe(422);
    const failed = await res.json();
    expect(failed).toMatchObject({ status: 'error', ackCode: 'AE' });
    expect(failed.errors[0]).toMatchObject({ code: '101', location: { segment: 'PID', field: 3 } });
    const list = await (await fetch(`${base}/messages?status=error`)).json();
    expect(list.messages.some((m: { id: string }) => m.id === failed.messageId)).toBe(true);
    const fixed = mkMessage(adt('A01', mrn, { control: broken[0].split('|')[9] }));
    expect((await fetch(`${base}/messages/${failed.messageId}`, { method: 'PUT', body: fixed })).status).toBe(200);
    const again = await (await fetch(`${base}/messages/${failed.messageId}/$reprocess`, { method: 'POST' })).json();
    expect(again).toMatchObject({ status: 'processed', ackCode: 'AA' });
    expect(await patientBy(mrn)).toHaveLength(1);
    const stored = await (await fetch(`${base}/messages/${failed.messageId}`)).json();
    expect(stored).toMatchObject({ status: 'processed', edited: true });
  });
});
