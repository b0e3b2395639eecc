// FHIR -> v2 for outbound messages: REF^I12 and RRI^I12 (ServiceRequest + Task), OSU^O51
// (Task), SIU^S12 (Appointment) and ADT^A01 (Encounter), each with the patient's PID. The inverse
// of the inbound maps, kept to the fields receivers rely on.
import { randomUUID } from 'node:crypto';
import type { Appointment, Encounter, HumanName, Identifier, Patient, Practitioner, ServiceRequest, Task } from '@medplum/fhirtypes';
import { fromFhirDateTime, nowDtm } from '../datetime.ts';
import { escape } from '../message.ts';
import { AUTHORITY_SYSTEM } from '../inbound/datatypes.ts';

export interface Party {
  application: string;
  facility: string;
}

const e = (s: string | undefined): string => escape(s ?? '');

export function header(type: string, sender: Party, receiver: Party, controlId = newControlId(), version = '2.5.1'): string {
  return ['MSH', '^~\\&', e(sender.application), e(sender.facility), e(receiver.application), e(receiver.facility), nowDtm(), '', type, controlId, 'P', version].join('|');
}

export function newControlId(): string {
  return randomUUID().replace(/-/g, '').slice(0, 20);
}

function cx(id: Identifier | undefined, type = 'MR'): string {
  if (!id?.value) return '';
  const oid = id.system?.startsWith('urn:oid:') ? id.system.slice(8) : undefined;
  const authority = oid ? `&${oid}&ISO` : e(id.system ?? '');
  return `${e(id.value)}^^^${authority}^${type}`;
}

function xpn(name: HumanName | undefined): string {
  if (!name) return '';
  return [e(name.family), e(name.given?.[0]), e(name.given?.[1]), e(name.suffix?.[0]), e(name.prefix?.[0])].join('^').replace(/\^+$/, '');
}

const SEX: Record<string, string> = { male: 'M', female: 'F', other: 'O', unknown: 'U' };

export function pid(patient: Patient): string {
  const ids = (patient.identifier ?? []).filter((i) => i.value).map((i) => cx(i, i.type?.coding?.[0]?.code ?? 'MR'));
  const a = patient.address?.[0];
  const address = a ? [e(a.line?.[0]), e(a.line?.[1]), e(a.city), e(a.state), e(a.postalCode), e(a.country)].join('^').replace(/\^+$/, '') : '';
  const phone = patient.telecom?.find((t) => t.system === 'phone')?.value;
  return ['PID', '1', '', ids.join('~'), '', (patient.name ?? []).map(xpn).join('~'), '', fromFhirDateTime(patient.birthDate), SEX[patient.gender ?? ''] ?? '', '', '', address, '', phone ? `${e(phone)}^PRN^PH` : '']
    .join('|')
    .replace(/\|+$/, '');
}

const PRIORITY: Record<string, string> = { stat: 'S', asap: 'A', urgent: 'A', routine: 'R' };
const REFERRAL_STATUS: Record<string, string> = { requested: 'P', received: 'P', draft: 'P', ready: 'P', accepted: 'A', 'in-progress': 'A', completed: 'A', rejected: 'R', cancelled: 'E', failed: 'E' };

export interface ReferralParts {
  serviceRequest: ServiceRequest;
  task?: Task;
  patient: Patient;
  requester?: Practitioner;
  performer?: Practitioner;
}

/** REF^I12 from a referral (ServiceRequest + Task). */
export function refI12(parts: ReferralParts, sender: Party, receiver: Party, event = 'I12'): { text: string; controlId: string } {
  const { serviceRequest: sr, task } = parts;
  const controlId = newControlId();
  const placer = sr.identifier?.[0]?.value ?? sr.id ?? '';
  const rf1 = [
    'RF1',
    `${REFERRAL_STATUS[task?.status ?? 'requested'] ?? 'P'}^^HL70283`,
    `${PRIORITY[sr.priority ?? 'routine'] ?? 'R'}^^HL70280`,
    '',
    '',
    '',
    `${e(placer)}^${e(sender.application)}`,
    fromFhirDateTime(sr.authoredOn),
    fromFhirDateTime(task?.restriction?.period?.end),
    '',
    sr.reasonCode?.[0]?.coding?.[0]?.code ? `${e(sr.reasonCode[0].coding[0].code)}^${e(sr.reasonCode[0].coding[0].display)}` : '',
  ].join('|');
  const segments = [header(`REF^${event}^REF_I12`, sender, receiver, controlId), rf1, ...providers(parts), pid(parts.patient)];
  const code = sr.code?.coding?.[0];
  if (code?.code) segments.push(`PR1|1||${e(code.code)}^${e(code.display)}^${codingSystemName(code.system)}`);
  for (const note of sr.note ?? []) segments.push(`NTE|${segments.length}||${e(note.text)}`);
  return { text: segments.join('\r'), controlId };
}

/** PRD of the referring (RP) and referred-to (RT) providers. */
function providers(parts: ReferralParts): string[] {
  const { serviceRequest: sr } = parts;
  const out: string[] = [];
  if (parts.requester || sr.requester?.display) out.push(['PRD', 'RP^Referring Provider^HL70286', xpnOf(parts.requester, sr.requester?.display), '', '', '', '', idOf(parts.requester)].join('|').replace(/\|+$/, ''));
  if (parts.performer) out.push(['PRD', 'RT^Referred to Provider^HL70286', xpnOf(parts.performer), '', '', '', '', idOf(parts.performer)].join('|').replace(/\|+$/, ''));
  return out;
}

/**
 * RRI^I12 (return referral information): the referred-to side's answer to a referral, sent as
 * its Task's status changes. RF1-1 is the status (table 0283: A accepted, R rejected, E expired);
 * RF1-6 the referrer's own referral identifier (the ServiceRequest's placer identifier), RF1-11
 * ours (the Task id); the exact FHIR Task status and its reason go in NTE, since 0283 cannot
 * tell accepted from completed.
 */
export function rriI12(parts: ReferralParts & { task: Task }, sender: Party, receiver: Party): { text: string; controlId: string } {
  const { serviceRequest: sr, task } = parts;
  const controlId = newControlId();
  const placer = sr.identifier?.find((i) => i.type?.coding?.[0]?.code === 'PLAC') ?? sr.identifier?.[0];
  const rf1 = [
    'RF1',
    `${REFERRAL_STATUS[task.status] ?? 'P'}^^HL70283`,
    `${PRIORITY[sr.priority ?? 'routine'] ?? 'R'}^^HL70280`,
    '',
    '',
    '',
    ei(placer),
    fromFhirDateTime(task.lastModified) || nowDtm(),
    fromFhirDateTime(task.restriction?.period?.end),
    '',
    '',
    `${e(task.id)}^${e(sender.application)}`,
  ].join('|');
  const segments = [header('RRI^I12^RRI_I12', sender, receiver, controlId), rf1, ...providers(parts), pid(parts.patient)];
  const reason = task.statusReason?.text ?? task.statusReason?.coding?.[0]?.display;
  // businessStatus.text only: its coding may be the referrer's own RF1-1, mapped in.
  const business = task.businessStatus?.text;
  const notes = [`Referral ${task.status}${reason ? `: ${reason}` : ''}`, ...(business ? [business] : [])];
  notes.forEach((text, i) => segments.push(`NTE|${i + 1}||${e(text)}`));
  return { text: segments.join('\r'), controlId };
}

function xpnOf(p: Practitioner | undefined, display?: string): string {
  return p?.name?.[0] ? xpn(p.name[0]) : e(display);
}
function idOf(p: Practitioner | undefined): string {
  return p?.identifier?.[0]?.value ? `${e(p.identifier[0].value)}` : '';
}

function codingSystemName(system: string | undefined): string {
  if (system === 'http://snomed.info/sct') return 'SCT';
  if (system === 'http://loinc.org') return 'LN';
  const v2 = /v2-(\d{4})$/.exec(system ?? '');
  return v2 ? `HL7${v2[1]}` : '';
}

/**
 * Task.status -> ORC-5 order status (table 0038) of an OSU^O51. The exact Task status also goes
 * in ORC-16 (order control code reason) as a FHIR task-status code, since 0038 cannot tell
 * accepted from in-progress, or rejected from cancelled.
 */
const ORDER_STATUS_0038: Record<string, string> = {
  draft: 'SC',
  requested: 'SC',
  received: 'SC',
  accepted: 'IP',
  ready: 'IP',
  'in-progress': 'IP',
  'on-hold': 'HD',
  completed: 'CM',
  cancelled: 'CA',
  rejected: 'CA',
  failed: 'ER',
  'entered-in-error': 'ER',
};

/** OSU^O51 (order status update) for a referral Task created by an OMG^O19 order. */
export function osuO51(task: Task, sr: ServiceRequest | undefined, patient: Patient | undefined, sender: Party, receiver: Party): { text: string; controlId: string } {
  const controlId = newControlId();
  const placer = sr?.identifier?.find((i) => i.type?.coding?.[0]?.code === 'PLAC') ?? sr?.identifier?.[0] ?? task.identifier?.[0];
  const filler = task.id ?? '';
  const orc = ['ORC', 'SC', ei(placer), `${e(filler)}^${e(sender.application)}`, '', ORDER_STATUS_0038[task.status] ?? 'IP', '', '', '', fromFhirDateTime(task.lastModified) || nowDtm()];
  while (orc.length < 17) orc.push('');
  orc[16] = `${e(task.status)}^${e(task.status)}^HL7FHIRTASKSTATUS`;
  const segments = [header('OSU^O51^OSU_O51', sender, receiver, controlId)];
  if (patient) segments.push(pid(patient));
  segments.push(orc.join('|'));
  const reason = task.statusReason?.text ?? task.statusReason?.coding?.[0]?.display;
  const business = task.businessStatus?.text ?? task.businessStatus?.coding?.[0]?.display;
  if (reason) segments.push(`NTE|1||${e(reason)}`);
  if (business) segments.push(`NTE|${reason ? 2 : 1}||${e(business)}`);
  return { text: segments.join('\r'), controlId };
}

/** EI (entity identifier): value^namespace^universal id^type, from an Identifier. */
function ei(id: Identifier | undefined): string {
  if (!id?.value) return '';
  const oid = id.system?.startsWith('urn:oid:') ? id.system.slice(8) : undefined;
  if (oid) return `${e(id.value)}^^${oid}^ISO`;
  // A namespace a v2 message gave (inbound datatypes.ts made the system of it) goes back as it came.
  const namespace = id.system?.startsWith(AUTHORITY_SYSTEM) ? decodeURIComponent(id.system.slice(AUTHORITY_SYSTEM.length)) : id.system;
  return `${e(id.value)}^${e(namespace)}`;
}

const APPOINTMENT_STATUS: Record<string, string> = { booked: 'Booked', pending: 'Pending', waitlist: 'Waitlist', 'checked-in': 'Started', arrived: 'Arrived', fulfilled: 'Complete', cancelled: 'Cancelled', noshow: 'Noshow' };

/** SIU^S12 from a booked Appointment. */
export function siuS12(appt: Appointment, patient: Patient | undefined, sender: Party, receiver: Party): { text: string; controlId: string } {
  const controlId = newControlId();
  const placer = appt.identifier?.find((i) => i.type?.coding?.[0]?.code === 'PLAC')?.value ?? appt.id ?? '';
  const filler = appt.identifier?.find((i) => i.type?.coding?.[0]?.code === 'FILL')?.value ?? appt.id ?? '';
  const sch = ['SCH', `${e(placer)}^${e(sender.application)}`, `${e(filler)}^${e(sender.application)}`, '', '', '', '', '', '', String(appt.minutesDuration ?? ''), appt.minutesDuration ? 'MIN' : '', `^^^${fromFhirDateTime(appt.start)}^${fromFhirDateTime(appt.end)}`];
  while (sch.length < 26) sch.push('');
  sch[25] = APPOINTMENT_STATUS[appt.status] ?? '';
  const segments = [header('SIU^S12^SIU_S12', sender, receiver, controlId), sch.join('|'), `TQ1|1||||||${fromFhirDateTime(appt.start)}|${fromFhirDateTime(appt.end)}`];
  if (patient) segments.push(pid(patient));
  segments.push('RGS|1');
  return { text: segments.join('\r'), controlId };
}

const CLASS_V2: Record<string, string> = { EMER: 'E', IMP: 'I', AMB: 'O', PRENC: 'P' };

/** ADT^A01 from an Encounter. */
export function adtA01(enc: Encounter, patient: Patient, sender: Party, receiver: Party): { text: string; controlId: string } {
  const controlId = newControlId();
  const pv1 = ['PV1', '1', CLASS_V2[enc.class?.code ?? ''] ?? 'U', e(enc.location?.[0]?.location?.display)];
  while (pv1.length < 46) pv1.push('');
  pv1[19] = cx(enc.identifier?.[0], 'VN');
  pv1[44] = fromFhirDateTime(enc.period?.start);
  pv1[45] = fromFhirDateTime(enc.period?.end);
  const segments = [header('ADT^A01^ADT_A01', sender, receiver, controlId), `EVN|A01|${nowDtm()}`, pid(patient), pv1.join('|').replace(/\|+$/, '')];
  return { text: segments.join('\r'), controlId };
}
