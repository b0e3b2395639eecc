// ADT (chapter 3) -> Patient (+ Encounter, AllergyIntolerance, Condition); A40 merges.
import type { Encounter, Identifier } from '@medplum/fhirtypes';
import { ErrorCode, V2Error } from '../message.ts';
import { mapAllergies, mapDiagnoses } from './clinical.ts';
import { required, type MapContext } from './context.ts';
import { cxIdentifier, each } from './datatypes.ts';
import { hasVisit, mapEncounter } from './encounter.ts';
import { mapCoverages, mapGuarantors } from './financial.ts';
import { mapPatient } from './patient.ts';
import { mapRoles } from './roles.ts';

/** Event -> Encounter.status (undefined: the event is about the person only). */
const ENCOUNTER_STATUS: Record<string, Encounter['status'] | undefined> = {
  A01: 'in-progress',
  A02: 'in-progress',
  A03: 'finished',
  A04: 'arrived',
  A05: 'planned',
  A06: 'in-progress',
  A07: 'in-progress',
  A08: 'in-progress',
  A11: 'cancelled',
  A13: 'in-progress',
  A28: undefined,
  A31: undefined,
  A40: undefined,
};

export const ADT_EVENTS = Object.keys(ENCOUNTER_STATUS);

export function mapAdt(ctx: MapContext): void {
  const event = ctx.message.triggerEvent;
  const pid = required(ctx.message, 'PID', `ADT^${event} carries the patient in PID`);
  if (event === 'A40') return mapMerge(ctx);
  mapPatient(ctx, pid);
  const status = ENCOUNTER_STATUS[event];
  const pv1 = ctx.message.segment('PV1');
  if (status && hasVisit(pv1)) {
    // Admissions and registrations create an encounter even without a visit number; updates,
    // discharges and cancels only touch one they can find.
    mapEncounter(ctx, pv1, status, ['A01', 'A04', 'A05'].includes(event));
  }
  mapRoles(ctx);
  if (event !== 'A11') {
    mapAllergies(ctx);
    mapDiagnoses(ctx);
    mapCoverages(ctx);
    mapGuarantors(ctx);
  }
}

/** A40: PID is the surviving patient, MRG-1 the identifiers of the record merged into it. */
function mapMerge(ctx: MapContext): void {
  const pid = required(ctx.message, 'PID', 'ADT^A40 names the surviving patient in PID');
  const mrg = required(ctx.message, 'MRG', 'ADT^A40 names the merged patient in MRG');
  const prior: Identifier[] = each(mrg.repetitions(1), (f) => cxIdentifier(f, ctx.scope));
  if (prior.length === 0) {
    throw new V2Error(ErrorCode.requiredFieldMissing, 'MRG-1 (prior patient identifier list) is required', { segment: 'MRG', sequence: mrg.sequence, field: 1 });
  }
  const survivor = mapPatient(ctx, pid);
  ctx.plan.merge = { survivor, prior };
}
