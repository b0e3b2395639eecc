// PV1 (+ PV2) -> Encounter, upserted by the visit number PV1-19 (or, without one, by patient +
// admit time PV1-44). Participants and locations are logical references (identifier + display).
import type { Encounter, EncounterParticipant, Identifier } from '@medplum/fhirtypes';
import type { Field, Segment } from '../message.ts';
import { periodOf } from './dates.ts';
import { clean, codeableConcept, cxIdentifier, each, tableConcept, xcnReference } from './datatypes.ts';
import { derivedKey, keyText, type MapContext } from './context.ts';
import { withIdentifier } from './plan.ts';

const CLASS: Record<string, { code: string; display: string }> = {
  E: { code: 'EMER', display: 'emergency' },
  I: { code: 'IMP', display: 'inpatient encounter' },
  O: { code: 'AMB', display: 'ambulatory' },
  P: { code: 'PRENC', display: 'pre-admission' },
  R: { code: 'AMB', display: 'ambulatory' },
  B: { code: 'AMB', display: 'ambulatory' },
};

const PARTICIPANTS: [number, string, string][] = [
  [7, 'ATND', 'attender'],
  [8, 'REF', 'referrer'],
  [9, 'CON', 'consultant'],
  [17, 'ADM', 'admitter'],
];

export function hasVisit(pv1: Segment | undefined): pv1 is Segment {
  if (!pv1) return false;
  return [2, 3, 19, 44, 45, 7].some((n) => pv1.get(n) !== '');
}

export function locationDisplay(pl: Field): string | undefined {
  const parts = [pl.get(1), pl.get(2) && `room ${pl.get(2)}`, pl.get(3) && `bed ${pl.get(3)}`, pl.get(4, 1), pl.get(7), pl.get(8) && `floor ${pl.get(8)}`, pl.get(9)].filter(Boolean);
  return parts.length ? parts.join(', ') : undefined;
}

export function encounterKey(ctx: MapContext, pv1: Segment): Identifier | undefined {
  const vn = pv1.field(19);
  const id = vn.empty ? undefined : cxIdentifier(vn, ctx.scope);
  if (id) return { system: id.system, value: id.value };
  const admit = pv1.get(44);
  if (admit && ctx.patientKey) return derivedKey('visit', keyText(ctx.patientKey), admit);
  return undefined;
}

/** Maps PV1 to an Encounter with the given status; returns its fullUrl or undefined when skipped. */
export function mapEncounter(ctx: MapContext, pv1: Segment, status: Encounter['status'], createWithoutKey: boolean): string | undefined {
  const pv2 = ctx.message.segment('PV2');
  const key = encounterKey(ctx, pv1);
  if (!key && !createWithoutKey) {
    ctx.plan.notes.push('PV1 has no visit number (PV1-19) or admit time (PV1-44): the Encounter was not updated');
    return undefined;
  }
  const classCode = pv1.get(2).toUpperCase();
  const cls = CLASS[classCode];
  const participant: EncounterParticipant[] = [];
  for (const [n, code, display] of PARTICIPANTS) {
    for (const f of pv1.repetitions(n)) {
      const individual = xcnReference(f, ctx.scope);
      if (individual) {
        participant.push({ type: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code, display }] }], individual });
      }
    }
  }
  const loc = locationDisplay(pv1.field(3));
  const visitPeriod = periodOf(pv1, 44, 45);
  let finalStatus = status;
  if (status === 'in-progress' && pv1.get(45) && ctx.message.triggerEvent === 'A08') finalStatus = 'finished';
  if (status === 'in-progress' && visitPeriod?.end && ctx.message.triggerEvent !== 'A13') finalStatus = 'finished';
  if (ctx.message.triggerEvent === 'A13' && visitPeriod) delete visitPeriod.end;
  const visitId = pv1.field(19).empty ? undefined : cxIdentifier(pv1.field(19), ctx.scope);
  const encounter: Encounter = clean({
    resourceType: 'Encounter',
    identifier: visitId ? [{ ...visitId, type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'VN' }] } }] : undefined,
    status: finalStatus,
    class: cls
      ? { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: cls.code, display: cls.display }
      : classCode
        ? { system: 'http://terminology.hl7.org/CodeSystem/v2-0004', code: classCode }
        : { system: 'http://terminology.hl7.org/CodeSystem/v3-NullFlavor', code: 'UNK', display: 'unknown' },
    type: [tableConcept(pv1.get(4), '0007')].filter((c) => c !== undefined),
    serviceType: tableConcept(pv1.get(10), '0069'),
    subject: ctx.patientRef ? { reference: ctx.patientRef } : undefined,
    participant,
    period: visitPeriod,
    reasonCode: [pv2 ? codeableConcept(pv2.field(3)) : undefined].filter((c) => c !== undefined),
    hospitalization: clean({
      preAdmissionIdentifier: pv1.field(5).empty ? undefined : cxIdentifier(pv1.field(5), ctx.scope),
      admitSource: tableConcept(pv1.get(14), '0023'),
      reAdmission: tableConcept(pv1.get(13), '0092'),
      dischargeDisposition: tableConcept(pv1.get(36), '0112'),
    }),
    location: loc
      ? [{ location: { display: loc }, status: finalStatus === 'finished' || finalStatus === 'cancelled' ? ('completed' as const) : ('active' as const) }]
      : undefined,
  } as Encounter);
  if (each(pv1.repetitions(19), (f) => f).length === 0 && key) withIdentifier(encounter, key);
  ctx.encounterRef = key ? ctx.plan.upsert(encounter, key) : ctx.plan.create(encounter);
  return ctx.encounterRef;
}
