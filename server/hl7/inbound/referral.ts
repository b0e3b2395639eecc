// REF^I12-I15 (chapter 11, patient referral) -> ServiceRequest + Task (+ Practitioner per PRD, +
// Patient). No published v2-to-FHIR map exists for REF_I12; this one is ours and is documented
// field by field in ig/hl7v2/REF_I12-mapping.md (keep the two in step).
import type { CodeableConcept, Identifier, Practitioner, Reference, ServiceRequest, Task } from '@medplum/fhirtypes';
import { dateOf } from './dates.ts';
import type { Segment } from '../message.ts';
import { derivedKey, missingField, required, type MapContext } from './context.ts';
import { LOCAL_SYSTEM, clean, codeableConcept, each, eiIdentifier, v2Table, xadAddress, xpnName, xtnContact } from './datatypes.ts';
import { hasVisit, mapEncounter } from './encounter.ts';
import { mapPatient } from './patient.ts';
import { withIdentifier } from './plan.ts';
import { REFERRAL_RESPONSE_TAG } from '../outbound/reply.ts';

export const REF_EVENTS = ['I12', 'I13', 'I14', 'I15'];

/** RF1-1 referral status (table 0283) -> Task.status. */
const TASK_STATUS: Record<string, Task['status']> = { P: 'requested', A: 'accepted', R: 'rejected', E: 'cancelled' };
/** RF1-2 referral priority (table 0280) -> priority. */
const PRIORITY: Record<string, ServiceRequest['priority']> = { S: 'stat', A: 'asap', R: 'routine' };

const REFERRAL_CATEGORY: CodeableConcept = { coding: [{ system: 'http://snomed.info/sct', code: '3457005', display: 'Patient referral' }] };

export function mapReferral(ctx: MapContext): void {
  const event = ctx.message.triggerEvent;
  const rf1 = required(ctx.message, 'RF1', `REF^${event} describes the referral in RF1`);
  const pid = required(ctx.message, 'PID', `REF^${event} names the patient in PID`);
  mapPatient(ctx, pid);
  const pv1 = ctx.message.segment('PV1');
  if (hasVisit(pv1) && !pv1.field(19).empty) mapEncounter(ctx, pv1, 'in-progress', false);

  const placer = eiIdentifier(rf1.field(6), ctx.scope, 'PLAC');
  const external = each(rf1.repetitions(11), (f) => eiIdentifier(f, ctx.scope));
  const keyId = placer ?? external[0];
  if (!keyId) throw missingField(rf1, 6, 'originating referral identifier');
  const key = { system: keyId.system, value: keyId.value };

  // PRD: one Practitioner per provider; RP/PP = who refers, RT/CP = who is referred to.
  let requester: Reference | undefined;
  const performers: Reference[] = [];
  for (const prd of ctx.message.all('PRD')) {
    const ref = mapProvider(ctx, prd);
    if (!ref) continue;
    const role = prd.get(1).toUpperCase();
    if ((role === 'RP' || role === 'PP') && !requester) requester = ref;
    else if (role === 'RT' || role === 'CP' || role === 'RT') performers.push(ref);
  }

  const rf1Status = rf1.get(1).toUpperCase();
  let taskStatus: Task['status'] = TASK_STATUS[rf1Status] ?? 'requested';
  if (event === 'I14') taskStatus = 'cancelled';
  const srStatus: ServiceRequest['status'] = taskStatus === 'cancelled' || taskStatus === 'rejected' ? 'revoked' : 'active';
  const priority = PRIORITY[rf1.get(2).toUpperCase()];
  const pr1 = ctx.message.segment('PR1');
  const reasons = [codeableConcept(rf1.field(10)), ...ctx.message.all('DG1').map((d) => codeableConcept(d.field(3)))].filter((c) => c !== undefined);
  const notes = [rf1.field(24).text(), rf1.field(14).text(), ...ctx.message.all('NTE').map((n) => n.repetitions(3).map((f) => f.text()).join('\n'))]
    .filter(Boolean)
    .map((text) => ({ text }));
  const authoredOn = dateOf(rf1, 7, 'dateTime');

  const serviceRequest: ServiceRequest = clean({
    resourceType: 'ServiceRequest',
    identifier: [placer, ...external].filter((i) => i !== undefined),
    status: srStatus,
    intent: 'order',
    category: [REFERRAL_CATEGORY, coded(rf1, 3, '0281'), coded(rf1, 5, '0284')].filter((c) => c !== undefined),
    priority,
    code: pr1 ? codeableConcept(pr1.field(3)) : undefined,
    subject: { reference: ctx.patientRef as string },
    encounter: ctx.encounterRef ? { reference: ctx.encounterRef } : undefined,
    authoredOn,
    requester,
    performer: performers,
    reasonCode: reasons,
    note: notes,
  } as ServiceRequest);
  const srRef = ctx.plan.upsert(withIdentifier(serviceRequest, key), key);

  const expires = dateOf(rf1, 8, 'date');
  const task: Task = clean({
    resourceType: 'Task',
    meta: { tag: [{ system: REFERRAL_RESPONSE_TAG, code: ctx.sender, display: 'HL7 v2 referral answers (RRI^I12) go to this sender' }] },
    identifier: [placer, ...external].filter((i) => i !== undefined),
    status: taskStatus,
    businessStatus: coded(rf1, 1, '0283'),
    intent: 'order',
    priority,
    code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill', display: 'Fulfill the focal request' }] },
    focus: { reference: srRef },
    for: { reference: ctx.patientRef as string },
    encounter: ctx.encounterRef ? { reference: ctx.encounterRef } : undefined,
    authoredOn,
    lastModified: dateOf(rf1, 9, 'dateTime'),
    requester,
    owner: performers[0],
    reasonCode: reasons[0],
    restriction: expires ? { period: { end: expires } } : undefined,
    note: notes,
  } as Task);
  // A pending referral (RF1-1 P, new or modified) does not reset what the referred-to side has
  // decided since (accepted, ...): its Task is created once. The referrer's cancel (I14) and
  // other statuses it sets (R, E) do apply.
  if (taskStatus === 'requested') ctx.plan.ensure(withIdentifier(task, key), key);
  else ctx.plan.upsert(withIdentifier(task, key), key);
}

function coded(seg: Segment, field: number, table: string): CodeableConcept | undefined {
  const f = seg.field(field);
  if (f.empty) return undefined;
  const cc = codeableConcept(f);
  if (cc?.coding?.[0] && !f.get(3)) cc.coding[0].system = v2Table(table);
  return cc;
}

/** PRD -> Practitioner upserted by PRD-7 (provider identifier), else by name + address. */
function mapProvider(ctx: MapContext, prd: Segment): Reference | undefined {
  const name = each(prd.repetitions(2), xpnName);
  const ids: Identifier[] = each(prd.repetitions(7), (f) => {
    const value = f.get(1);
    if (!value) return undefined;
    const type = f.get(2);
    return clean({ system: `${LOCAL_SYSTEM}:provider-id:${encodeURIComponent(type || 'unknown')}`, value });
  });
  if (name.length === 0 && ids.length === 0) return undefined;
  const key = ids[0] ?? derivedKey('provider', ctx.scope.fallbackSystem, prd.raw(2), prd.raw(3));
  const practitioner: Practitioner = clean({
    resourceType: 'Practitioner',
    identifier: ids,
    active: true,
    name,
    address: each(prd.repetitions(3), xadAddress),
    telecom: each(prd.repetitions(5), (f) => xtnContact(f, 'work')),
  } as Practitioner);
  const display = [...(name[0]?.prefix ?? []), ...(name[0]?.given ?? []), name[0]?.family].filter(Boolean).join(' ');
  const ref = ctx.plan.upsert(withIdentifier(practitioner, { system: key.system, value: key.value }), { system: key.system, value: key.value });
  return clean({ reference: ref, display: display || undefined });
}
