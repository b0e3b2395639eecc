// SIU (chapter 10) S12-S15, S17, S26 -> Appointment (+ Patient), after the v2-to-FHIR SIU_S12 map:
// SCH -> Appointment, AIS/AIG/AIL/AIP -> participants, SCH-25 (table 0278) -> status.
import type { Appointment, AppointmentParticipant } from '@medplum/fhirtypes';
import type { AckError } from '../ack.ts';
import { toEpochMs } from '../datetime.ts';
import { ErrorCode, V2Error, type Segment } from '../message.ts';
import { required, type MapContext } from './context.ts';
import { clean, codeableConcept, eiIdentifier, xcnReference } from './datatypes.ts';
import { dateOf, invalidDate, locationOf } from './dates.ts';
import { locationDisplay } from './encounter.ts';
import { mapPatient } from './patient.ts';
import { withIdentifier } from './plan.ts';

const FILLER_STATUS: Record<string, Appointment['status']> = {
  PENDING: 'pending',
  WAITLIST: 'waitlist',
  BOOKED: 'booked',
  STARTED: 'checked-in',
  ARRIVED: 'arrived',
  COMPLETE: 'fulfilled',
  COMPLETED: 'fulfilled',
  CANCELLED: 'cancelled',
  CANCELED: 'cancelled',
  DC: 'cancelled',
  DELETED: 'entered-in-error',
  NOSHOW: 'noshow',
  OVERBOOK: 'booked',
  BLOCKED: 'booked',
};

const EVENT_STATUS: Record<string, Appointment['status'] | undefined> = {
  S12: 'booked',
  S13: 'booked',
  S14: undefined,
  S15: 'cancelled',
  S17: 'entered-in-error',
  S26: 'noshow',
};
export const SIU_EVENTS = Object.keys(EVENT_STATUS);

const UNIT_MS: Record<string, number> = { S: 1000, SEC: 1000, M: 60_000, MIN: 60_000, MINUTES: 60_000, H: 3_600_000, HR: 3_600_000, HOUR: 3_600_000, HOURS: 3_600_000, D: 86_400_000 };

export function mapSiu(ctx: MapContext): void {
  const event = ctx.message.triggerEvent;
  const sch = required(ctx.message, 'SCH', `SIU^${event} describes the appointment in SCH`);
  const pid = ctx.message.segment('PID');
  if (pid) mapPatient(ctx, pid);

  const filler = eiIdentifier(sch.field(2), ctx.scope, 'FILL');
  const placer = eiIdentifier(sch.field(1), ctx.scope, 'PLAC');
  const keyId = filler ?? placer;
  if (!keyId) {
    throw new V2Error(ErrorCode.requiredFieldMissing, 'SCH-1 or SCH-2 (placer / filler appointment id) is required', { segment: 'SCH', sequence: sch.sequence, field: 2 });
  }
  const key = { system: keyId.system, value: keyId.value };

  const fillerStatus = (sch.get(25, 1) || sch.get(25, 2)).toUpperCase().replace(/[\s-]/g, '');
  const status = EVENT_STATUS[event] ?? FILLER_STATUS[fillerStatus] ?? 'booked';

  const { start, end, minutes, invalid } = appointmentTimes(ctx, sch);
  if ((!start || !end) && !['proposed', 'cancelled', 'waitlist', 'entered-in-error'].includes(status)) {
    if (invalid) throw new V2Error(invalid.code, invalid.text, invalid.location);
    throw new V2Error(
      ErrorCode.requiredFieldMissing,
      'A booked appointment needs its start and end (TQ1-7/TQ1-8, SCH-11.4/SCH-11.5, or AIS-4 with a duration)',
      { segment: 'SCH', sequence: sch.sequence, field: 11 },
    );
  }

  const participant: AppointmentParticipant[] = [];
  if (ctx.patientRef) participant.push({ actor: { reference: ctx.patientRef }, status: 'accepted' });
  for (const aip of ctx.message.all('AIP')) {
    const actor = xcnReference(aip.field(3), ctx.scope);
    if (actor) participant.push(clean({ actor, type: roleType(aip), status: 'accepted' as const }));
  }
  for (const ail of ctx.message.all('AIL')) {
    const display = locationDisplay(ail.field(3));
    if (display) participant.push({ actor: { type: 'Location', display }, status: 'accepted' });
  }
  for (const aig of ctx.message.all('AIG')) {
    const display = aig.field(3).get(2) || aig.field(3).get(1);
    if (display) participant.push({ actor: { display }, status: 'accepted' });
  }
  if (participant.length === 0) {
    throw new V2Error(ErrorCode.segmentSequence, 'The appointment has no participant: send PID, AIP, AIL or AIG', { segment: 'SCH', sequence: sch.sequence });
  }
  const ais = ctx.message.segment('AIS');
  const notes = ctx.message.all('NTE').map((n) => n.repetitions(3).map((f) => f.text()).join('\n')).filter(Boolean);
  const appointment: Appointment = clean({
    resourceType: 'Appointment',
    identifier: [placer, filler].filter((i) => i !== undefined),
    status,
    cancelationReason: status === 'cancelled' ? codeableConcept(sch.field(6)) : undefined,
    serviceType: [ais ? codeableConcept(ais.field(3)) : undefined].filter((c) => c !== undefined),
    appointmentType: codeableConcept(sch.field(8)),
    reasonCode: [codeableConcept(sch.field(7))].filter((c) => c !== undefined),
    start,
    end,
    minutesDuration: minutes,
    comment: notes.length ? notes.join('\n') : undefined,
    participant,
  } as Appointment);
  ctx.plan.upsert(withIdentifier(appointment, key), key);
}

function roleType(aip: Segment) {
  const role = codeableConcept(aip.field(4));
  return role ? [role] : undefined;
}

/** The first of these (segment, field, component) places that holds a value. */
function firstGiven(...places: [Segment | undefined, number, number][]): [Segment, number, number] | undefined {
  return places.find(([seg, n, c]) => seg?.get(n, c)) as [Segment, number, number] | undefined;
}

function appointmentTimes(ctx: MapContext, sch: Segment): { start?: string; end?: string; minutes?: number; invalid?: AckError } {
  const tq1 = ctx.message.segment('TQ1');
  const ais = ctx.message.segment('AIS');
  const startAt = firstGiven([tq1, 7, 1], [sch, 11, 4], [ais, 4, 1]);
  const endAt = firstGiven([tq1, 8, 1], [sch, 11, 5]);
  const startRaw = startAt ? startAt[0].get(startAt[1], startAt[2]) : '';
  let endRaw = endAt ? endAt[0].get(endAt[1], endAt[2]) : '';
  // A start or end that is no HL7 date is left out (with a warning); a booked appointment
  // without it is then refused, naming that field (invalid).
  const start = startAt && dateOf(startAt[0], startAt[1], 'instant', startAt[2]);
  let end = endAt && dateOf(endAt[0], endAt[1], 'instant', endAt[2]);
  const bad = startRaw && !start ? startAt : endRaw && !end ? endAt : undefined;
  const invalid = bad && invalidDate(bad[0].get(bad[1], bad[2]), locationOf(...bad), 'a booked appointment needs its start and end', 'E');
  let minutes: number | undefined;
  const durationFrom = (amount: string, unit: string): number | undefined => {
    if (!/^\d+(\.\d+)?$/.test(amount)) return undefined;
    const ms = UNIT_MS[unit.toUpperCase()] ?? 60_000;
    return Number(amount) * ms;
  };
  const durationMs = durationFrom(sch.get(9), sch.get(10, 1)) ?? (ais ? durationFrom(ais.get(7), ais.get(8, 1)) : undefined);
  if (start && !end && durationMs !== undefined) {
    const startMs = toEpochMs(startRaw) as number;
    end = new Date(startMs + durationMs).toISOString().replace('.000Z', 'Z');
    endRaw = 'derived';
  }
  if (start && end) {
    const diff = Date.parse(end) - Date.parse(start);
    if (diff < 0) end = undefined;
    else minutes = Math.round(diff / 60_000) || undefined;
  }
  return { start, end, minutes, invalid };
}
