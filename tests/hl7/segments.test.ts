// Field-level tests of the IN1 (Coverage), GT1 (Account + RelatedPerson), ROL and SPM (Specimen)
// segment maps, through the real MLLP listener on a fresh database.
import type { Account, Coverage, DiagnosticReport, Encounter, Observation, Patient, Practitioner, RelatedPerson, Specimen } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MllpClient, findBy, mkMessage, parseAck, startHl7Env, type Hl7Env } from './support.ts';

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

let seq = 0;
const uid = (p: string) => `${p}${Date.now().toString(36)}${(seq++).toString(36)}`;
async function send(segments: string[]): Promise<string> {
  const ack = parseAck((await client.request(mkMessage(segments))) as string);
  expect(ack.err.map((e) => e.join('|'))).toEqual([]);
  return ack.code;
}

/** A segment from name and field values by position (1-based). */
function seg(name: string, fields: Record<number, string>): string {
  const max = Math.max(...Object.keys(fields).map(Number));
  const out = [name];
  for (let i = 1; i <= max; i++) out.push(fields[i] ?? '');
  return out.join('|');
}

function a01(mrn: string): string[] {
  return [
    `MSH|^~\\&|SEGAPP|SEGFAC|WARDLINK|HOSP|20240301120000||ADT^A01^ADT_A01|${uid('C')}|P|2.5.1`,
    'EVN|A01|20240301120000',
    `PID|1||${mrn}^^^&1.2.3.4&ISO^MR||Payer^Pat||19800215|F`,
    'ROL|1|AD|PP^Primary Care Provider^HL70443|GP77^Gray^Grace^^^Dr^^^&1.2.3.9&ISO',
    seg('PV1', { 1: '1', 2: 'I', 3: '4E^401^B', 19: `V${mrn}^^^&1.2.3.5&ISO^VN`, 44: '20240301110000' }),
    'ROL|2|AD|AT^Attending^HL70443|AT55^Adams^Ann^^^Dr^^^&1.2.3.9&ISO|20240301110000',
    'ROL|3|DE|CP^Consultant^HL70443|CP99^Gone^Gus',
    seg('GT1', { 1: '1', 2: 'G88^^^&1.2.3.6&ISO', 3: 'Payer^Paul', 5: '1 Main St^^Springfield^IL^62701', 8: '19781001', 9: 'M', 11: 'SPO^Spouse^HL70063' }),
    seg('IN1', {
      1: '1',
      2: 'GOLD^Gold plan',
      3: 'INS1^^^&1.2.3.8&ISO',
      4: 'Acme Insurance',
      8: 'GRP-7',
      9: 'Acme employees',
      12: '20240101',
      13: '20241231',
      15: 'HMO^Health maintenance organization',
      16: 'Payer^Pat',
      17: 'SEL',
      36: 'POL-123',
    }),
    seg('IN1', { 1: '2', 2: 'BASIC', 3: 'INS2^^^&1.2.3.8&ISO', 4: 'Second Mutual', 12: '20230101', 15: 'PPO', 16: 'Payer^Paul', 17: 'SPO' }),
  ];
}

describe('ADT: IN1, GT1 and ROL', () => {
  it('maps IN1 to Coverage field by field, once per policy across resends', async () => {
    const mrn = uid('M');
    expect(await send(a01(mrn))).toBe('AA');
    expect(await send(a01(mrn))).toBe('AA'); // a resend (new MSH-10) updates, never duplicates
    const [patient] = (await findBy(env, 'Patient', [['identifier', `urn:oid:1.2.3.4|${mrn}`]])) as Patient[];
    const coverages = (await findBy(env, 'Coverage', [['beneficiary', `Patient/${patient.id}`]])) as Coverage[];
    expect(coverages).toHaveLength(2);
    const gold = coverages.find((c) => c.order === 1) as Coverage;
    expect(gold).toMatchObject({
      status: 'active',
      subscriberId: 'POL-123',
      beneficiary: { reference: `Patient/${patient.id}` },
      subscriber: { reference: `Patient/${patient.id}` },
      relationship: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/subscriber-relationship', code: 'self' }] },
      period: { start: '2024-01-01', end: '2024-12-31' },
      payor: [{ type: 'Organization', identifier: { system: 'urn:oid:1.2.3.8', value: 'INS1' }, display: 'Acme Insurance' }],
      type: { coding: [expect.objectContaining({ system: 'http://terminology.hl7.org/CodeSystem/v2-0086', code: 'HMO' })] },
    });
    expect(gold.identifier?.[0]).toMatchObject({ value: 'POL-123', type: { coding: [{ code: 'MB' }] } });
    expect(gold.class).toEqual([
      { type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/coverage-class', code: 'plan' }] }, value: 'GOLD', name: 'Gold plan' },
      { type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/coverage-class', code: 'group' }] }, value: 'GRP-7', name: 'Acme employees' },
    ]);
    const basic = coverages.find((c) => c.order === 2) as Coverage;
    expect(basic.relationship?.coding?.[0].code).toBe('spouse');
    expect(basic.subscriber).toEqual({ display: 'Paul Payer' });
    expect(basic.period).toEqual({ start: '2023-01-01' });
  });

  it('maps GT1 to an Account whose guarantor is a RelatedPerson', async () => {
    const mrn = uid('M');
    expect(await send(a01(mrn))).toBe('AA');
    const [patient] = (await findBy(env, 'Patient', [['identifier', `urn:oid:1.2.3.4|${mrn}`]])) as Patient[];
    const [account] = (await findBy(env, 'Account', [['subject', `Patient/${patient.id}`]])) as Account[];
    expect(account).toMatchObject({ status: 'active', type: { coding: [{ code: 'PBILLACCT' }] } });
    const party = account.guarantor?.[0].party.reference as string;
    expect(party).toMatch(/^RelatedPerson\//);
    const person = await env.repo.readResource<RelatedPerson>('RelatedPerson', party.split('/')[1]);
    expect(person).toMatchObject({
      patient: { reference: `Patient/${patient.id}` },
      name: [{ family: 'Payer', given: ['Paul'] }],
      birthDate: '1978-10-01',
      address: [expect.objectContaining({ line: ['1 Main St'], city: 'Springfield', postalCode: '62701' })],
    });
    expect(person.identifier).toEqual(expect.arrayContaining([expect.objectContaining({ system: 'urn:oid:1.2.3.6', value: 'G88' })]));
    expect(person.relationship?.[0].coding?.[0]).toMatchObject({ system: 'http://terminology.hl7.org/CodeSystem/v2-0063', code: 'SPO' });
  });

  it('maps ROL: primary care to generalPractitioner, the rest to Encounter participants, DE left out', async () => {
    const mrn = uid('M');
    expect(await send(a01(mrn))).toBe('AA');
    const [patient] = (await findBy(env, 'Patient', [['identifier', `urn:oid:1.2.3.4|${mrn}`]])) as Patient[];
    expect(patient.generalPractitioner).toEqual([{ type: 'Practitioner', identifier: { system: 'urn:oid:1.2.3.9', value: 'GP77' }, display: 'Dr Grace Gray' }]);
    const [encounter] = (await findBy(env, 'Encounter', [['identifier', `urn:oid:1.2.3.5|V${mrn}`]])) as Encounter[];
    const attending = encounter.participant?.filter((p) => p.individual?.identifier?.value === 'AT55') ?? [];
    expect(attending).toHaveLength(1);
    expect(attending[0].type?.[0].coding?.[0]).toMatchObject({ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'ATND' });
    expect(attending[0].period?.start).toMatch(/^2024-03-01T11:00:00/);
    expect(JSON.stringify(encounter)).not.toContain('CP99');
  });
});

describe('ORU: SPM', () => {
  it('maps SPM to a Specimen that the report and its observations point to', async () => {
    const mrn = uid('M');
    const filler = uid('F');
    expect(
      await send([
        `MSH|^~\\&|LAB|LABFAC|WARDLINK|HOSP|20240301120000||ORU^R01^ORU_R01|${uid('C')}|P|2.5.1`,
        `PID|1||${mrn}^^^&1.2.3.4&ISO^MR||Spec^Sam||19900101|M`,
        `OBR|1||${filler}^LAB^1.2.3.10^ISO|2345-7^Glucose^LN|||20240301080000|||||||||||||||20240301100000|||F`,
        'OBX|1|NM|2345-7^Glucose^LN||5.4|mmol/L^^UCUM|3.9-5.6|N|||F',
        seg('SPM', {
          1: '1',
          2: `S${filler}&LAB&1.2.3.11&ISO^F${filler}`,
          4: '119297000^Blood specimen^SCT',
          7: 'VENIP^Venipuncture^HL70488',
          8: '368208006^Left upper arm^SCT',
          14: 'Lipemic',
          17: '20240301073000^20240301074500',
          18: '20240301081500',
          20: 'Y',
        }),
      ]),
    ).toBe('AA');
    const [specimen] = (await findBy(env, 'Specimen', [['identifier', `urn:oid:1.2.3.11|S${filler}`]])) as Specimen[];
    expect(specimen).toMatchObject({
      status: 'available',
      type: { coding: [{ system: 'http://snomed.info/sct', code: '119297000', display: 'Blood specimen' }] },
      collection: {
        method: { coding: [expect.objectContaining({ code: 'VENIP' })] },
        bodySite: { coding: [{ system: 'http://snomed.info/sct', code: '368208006', display: 'Left upper arm' }] },
        collectedPeriod: { start: expect.stringMatching(/^2024-03-01T07:30:00/), end: expect.stringMatching(/^2024-03-01T07:45:00/) },
      },
      note: [{ text: 'Lipemic' }],
    });
    expect(specimen.receivedTime).toMatch(/^2024-03-01T08:15:00/);
    expect(specimen.subject?.reference).toMatch(/^Patient\//);
    const [report] = (await findBy(env, 'DiagnosticReport', [['identifier', `urn:oid:1.2.3.10|${filler}`]])) as DiagnosticReport[];
    expect(report.specimen).toEqual([{ reference: `Specimen/${specimen.id}` }]);
    const obs = await env.repo.readResource<Observation>('Observation', (report.result?.[0].reference as string).split('/')[1]);
    expect(obs.specimen).toEqual({ reference: `Specimen/${specimen.id}` });
  });
});

describe('two entries resolving to one stored record', () => {
  it('runs entry by entry through the engine when two PRD identifiers belong to one Practitioner', async () => {
    const a = uid('PA');
    const b = uid('PB');
    const existing = await env.repo.create<Practitioner>({
      resourceType: 'Practitioner',
      identifier: [
        { system: 'urn:wardlink:hl7v2:provider-id:SL', value: a },
        { system: 'urn:wardlink:hl7v2:provider-id:SL', value: b },
      ],
      name: [{ family: 'Twin' }],
    });
    const ref = uid('R');
    expect(
      await send([
        `MSH|^~\\&|REFAPP|REFFAC|WARDLINK|HOSP|20240301120000||REF^I12^REF_I12|${uid('C')}|P|2.5.1`,
        `RF1|P^Pending^HL70283|R^Routine^HL70280|||O^Outpatient^HL70284|${ref}^EPIC|20240301`,
        `PRD|RP^Referring Provider^HL70286|Twin^Tom^^^Dr|||||${a}^SL`,
        `PRD|RT^Referred to Provider^HL70286|Twin^Tess^^^Dr|||||${b}^SL`,
        `PID|1||${uid('M')}^^^&1.2.3.4&ISO^MR||Doe^Two||19600101|M`,
      ]),
    ).toBe('AA');
    // As PUT Practitioner?identifier=a then PUT Practitioner?identifier=b one after the other:
    // the first rewrites the record (to identifier a only), so the second matches nothing and
    // creates Tess. One statement could not have written the record twice.
    const [first] = (await findBy(env, 'Practitioner', [['identifier', `urn:wardlink:hl7v2:provider-id:SL|${a}`]])) as Practitioner[];
    expect(first.id).toBe(existing.id);
    expect(first.meta?.versionId).toBe('2');
    expect(first.name?.[0].given).toEqual(['Tom']);
    const [second] = (await findBy(env, 'Practitioner', [['identifier', `urn:wardlink:hl7v2:provider-id:SL|${b}`]])) as Practitioner[];
    expect(second.id).not.toBe(existing.id);
    expect(second.name?.[0].given).toEqual(['Tess']);
  });
});

describe('assigning authorities', () => {
  it('gives every identifier kind (CX, XCN, EI) the same system for the same authority: OID, URI, UUID or namespace', async () => {
    const mrn = uid('M');
    const visit = uid('V');
    const placer = uid('P');
    expect(
      await send([
        `MSH|^~\\&|AUTHAPP|AUTHFAC|WARDLINK|HOSP|20240301120000||ADT^A01^ADT_A01|${uid('C')}|P|2.5.1`,
        'EVN|A01|20240301120000',
        `PID|1||${mrn}^^^&https://hospital.example/mrn&URI^MR||Auth^Ann||19700101|F`,
        seg('PV1', { 1: '1', 2: 'I', 7: `77^Attend^Al^^^^^^&https://staff.example/npi&URI`, 19: `${visit}^^^&6f1c2b1e-0d7e-4c55-9d43-5f0c8e0a1b2c&UUID^VN`, 44: '20240301110000' }),
      ]),
    ).toBe('AA');
    const [patient] = (await findBy(env, 'Patient', [['identifier', `https://hospital.example/mrn|${mrn}`]])) as Patient[];
    expect(patient, 'CX with a URI authority').toBeDefined();
    const [encounter] = (await findBy(env, 'Encounter', [['identifier', `urn:uuid:6f1c2b1e-0d7e-4c55-9d43-5f0c8e0a1b2c|${visit}`]])) as Encounter[];
    expect(encounter, 'CX with a UUID authority').toBeDefined();
    expect(encounter.participant?.[0].individual?.identifier).toEqual({ system: 'https://staff.example/npi', value: '77' });

    expect(
      await send([
        `MSH|^~\\&|AUTHAPP|AUTHFAC|WARDLINK|HOSP|20240301120000||ORM^O01^ORM_O01|${uid('C')}|P|2.5.1`,
        `PID|1||${mrn}^^^&https://hospital.example/mrn&URI^MR||Auth^Ann||19700101|F`,
        `ORC|NW|${placer}^^https://orders.example/placer^URI`,
        `OBR|1|${placer}^^https://orders.example/placer^URI||CXR^Chest X-ray^L`,
      ]),
    ).toBe('AA');
    const [order] = await findBy(env, 'ServiceRequest', [['identifier', `https://orders.example/placer|${placer}`]]);
    expect(order, 'EI with a URI universal id').toBeDefined();
  });
});
