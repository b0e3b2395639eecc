// PID (+ PD1, NK1) -> Patient, upserted by its preferred PID-3 identifier (type MR first).
import type { Identifier, Patient, PatientContact } from '@medplum/fhirtypes';
import { dateOf } from './dates.ts';
import type { Segment } from '../message.ts';
import { clean, codeableConcept, cxIdentifier, each, tableConcept, v2Table, xadAddress, xcnReference, xpnName, xtnContact } from './datatypes.ts';
import { missingField, type MapContext } from './context.ts';
import { withIdentifier } from './plan.ts';

const GENDER: Record<string, Patient['gender']> = { M: 'male', F: 'female', O: 'other', A: 'other', U: 'unknown', N: 'unknown', X: 'other' };

export function patientIdentifiers(ctx: MapContext, pid: Segment): Identifier[] {
  const ids = each(pid.repetitions(3), (f) => cxIdentifier(f, ctx.scope));
  // v2.3-era senders put ids in PID-2 (external) and PID-4 (alternate) too.
  for (const n of [2, 4]) ids.push(...each(pid.repetitions(n), (f) => cxIdentifier(f, ctx.scope)));
  const ssn = pid.get(19);
  if (ssn) ids.push({ system: 'http://hl7.org/fhir/sid/us-ssn', value: ssn, type: { coding: [{ system: v2Table('0203'), code: 'SS' }] } });
  const seen = new Set<string>();
  return ids.filter((i) => {
    const k = `${i.system}|${i.value}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** The identifier a Patient is matched on: the first MR in PID-3, else the first PID-3, PID-2, PID-4. */
export function patientKey(ctx: MapContext, pid: Segment): Identifier {
  const pid3 = each(pid.repetitions(3), (f) => cxIdentifier(f, ctx.scope));
  const mr = pid3.find((i) => i.type?.coding?.[0]?.code === 'MR');
  const key = mr ?? pid3[0] ?? patientIdentifiers(ctx, pid).find((i) => i.system !== 'http://hl7.org/fhir/sid/us-ssn');
  if (!key) throw missingField(pid, 3, 'patient identifier list');
  return { system: key.system, value: key.value };
}

export function mapPatient(ctx: MapContext, pid: Segment): string {
  const key = patientKey(ctx, pid);
  const patient: Patient = clean({
    resourceType: 'Patient',
    active: true,
    identifier: patientIdentifiers(ctx, pid),
    name: each(pid.repetitions(5), xpnName),
    birthDate: dateOf(pid, 7, 'date'),
    gender: GENDER[pid.get(8).toUpperCase()],
    address: each(pid.repetitions(11), xadAddress),
    telecom: [...each(pid.repetitions(13), (f) => xtnContact(f, 'home')), ...each(pid.repetitions(14), (f) => xtnContact(f, 'work'))],
    maritalStatus: pid.get(16) ? tableConcept(pid.get(16), '0002', pid.get(16, 2) || undefined) : undefined,
    communication: pid.get(15) ? [{ language: codeableConcept(pid.field(15)) as NonNullable<ReturnType<typeof codeableConcept>> }] : undefined,
  } as Patient);
  const deathTime = dateOf(pid, 29, 'dateTime');
  if (deathTime) patient.deceasedDateTime = deathTime;
  else if (pid.get(30).toUpperCase() === 'Y') patient.deceasedBoolean = true;
  else if (pid.get(30).toUpperCase() === 'N') patient.deceasedBoolean = false;
  if (pid.get(24).toUpperCase() === 'Y' && /^\d+$/.test(pid.get(25))) patient.multipleBirthInteger = Number(pid.get(25));
  const contacts = ctx.message.all('NK1').map((nk1) => mapContact(nk1)).filter((c): c is PatientContact => c !== undefined);
  if (contacts.length) patient.contact = contacts;
  const pd1 = ctx.message.segment('PD1');
  if (pd1) {
    const gps = each(pd1.repetitions(4), (f) => xcnReference(f, ctx.scope));
    if (gps.length) patient.generalPractitioner = gps;
  }
  withIdentifier(patient, { ...key, ...patient.identifier?.find((i) => i.system === key.system && i.value === key.value) });
  ctx.patientKey = key;
  ctx.patientRef = ctx.plan.upsert(patient, key);
  return ctx.patientRef;
}

function mapContact(nk1: Segment): PatientContact | undefined {
  const name = each(nk1.repetitions(2), xpnName)[0];
  const telecom = [...each(nk1.repetitions(5), (f) => xtnContact(f, 'home')), ...each(nk1.repetitions(6), (f) => xtnContact(f, 'work'))];
  const address = each(nk1.repetitions(4), xadAddress)[0];
  if (!name && telecom.length === 0 && !address) return undefined;
  const relationship = [codeableConcept(nk1.field(3)), nk1.get(7) ? tableConcept(nk1.get(7), '0131', nk1.get(7, 2) || undefined) : undefined].filter(
    (c) => c !== undefined,
  );
  return clean({ name, telecom, address, relationship, period: undefined } as PatientContact);
}
