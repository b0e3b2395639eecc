// ORM^O01 / OMG^O19 (ORC + OBR) -> ServiceRequest, and ORU^R01 (OBR + OBX) -> DiagnosticReport +
// Observation, after the v2-to-FHIR ORC/OBR/OBX segment maps. Orders are upserted by placer
// order number (else filler); results by filler order number + OBX-3 + OBX-4 sub-id, so a
// corrected result (OBX-11 C) replaces the preliminary one.
import type { Annotation, DiagnosticReport, Identifier, Observation, Quantity, Reference, ServiceRequest, Specimen, Task } from '@medplum/fhirtypes';
import { dateOf, invalidDate, warn } from './dates.ts';
import { STATUS_RECIPIENT_TAG } from '../outbound/reply.ts';
import { toFhirDateTime } from '../datetime.ts';
import { ErrorCode, V2Error, type Field, type Segment } from '../message.ts';
import { derivedKey, keyText, missingField, required, type MapContext } from './context.ts';
import { authoritySystem, clean, codeableConcept, codeSystemUri, eiIdentifier, tableConcept, v2Table, xcnReference } from './datatypes.ts';
import { mapPatient } from './patient.ts';
import { hasVisit, mapEncounter } from './encounter.ts';
import { withIdentifier } from './plan.ts';

const ORDER_CONTROL: Record<string, ServiceRequest['status']> = {
  NW: 'active',
  OK: 'active',
  SN: 'active',
  XO: 'active',
  XX: 'active',
  SC: 'active',
  RP: 'active',
  CA: 'revoked',
  OC: 'revoked',
  DC: 'revoked',
  CR: 'revoked',
  OD: 'revoked',
  HD: 'on-hold',
  OH: 'on-hold',
  RL: 'active',
  OR: 'active',
};
const ORDER_STATUS: Record<string, ServiceRequest['status']> = { A: 'active', IP: 'active', SC: 'active', CM: 'completed', CA: 'revoked', DC: 'revoked', HD: 'on-hold', ER: 'entered-in-error' };
const PRIORITY: Record<string, ServiceRequest['priority']> = { S: 'stat', A: 'asap', R: 'routine', P: 'routine', T: 'urgent', C: 'urgent' };

function notesAfter(ctx: MapContext, seg: Segment): Annotation[] {
  const out: Annotation[] = [];
  for (const s of ctx.message.segments.slice(seg.sequence)) {
    if (s.name !== 'NTE') break;
    const text = s.repetitions(3).map((f) => f.text()).join('\n');
    if (text) out.push({ text });
  }
  return out;
}

function patientAndVisit(ctx: MapContext): void {
  const pid = required(ctx.message, 'PID', `${ctx.message.messageCode}^${ctx.message.triggerEvent} needs the patient (PID)`);
  mapPatient(ctx, pid);
  const pv1 = ctx.message.segment('PV1');
  if (hasVisit(pv1) && !pv1.field(19).empty) mapEncounter(ctx, pv1, 'in-progress', false);
}

/** ORM^O01 / OMG^O19: one ServiceRequest per ORC (with its OBR). */
export function mapOrder(ctx: MapContext): void {
  patientAndVisit(ctx);
  const orcs = ctx.message.all('ORC');
  if (orcs.length === 0) throw new V2Error(ErrorCode.segmentSequence, 'Required segment ORC is missing: an order message carries ORC', { segment: 'ORC' });
  for (const orc of orcs) {
    const next = ctx.message.segments.slice(orc.sequence).find((s) => s.name === 'OBR' || s.name === 'ORC');
    const obr = next?.name === 'OBR' ? next : undefined;
    const placer = eiIdentifier(orc.field(2), ctx.scope, 'PLAC') ?? (obr ? eiIdentifier(obr.field(2), ctx.scope, 'PLAC') : undefined);
    const filler = eiIdentifier(orc.field(3), ctx.scope, 'FILL') ?? (obr ? eiIdentifier(obr.field(3), ctx.scope, 'FILL') : undefined);
    const keyId = placer ?? filler;
    if (!keyId) throw missingField(orc, 2, 'placer order number (or ORC-3 / OBR-2 / OBR-3)');
    const code = obr ? codeableConcept(obr.field(4)) : undefined;
    if (!code) throw obr ? missingField(obr, 4, 'universal service identifier') : new V2Error(ErrorCode.segmentSequence, 'ORC without OBR: the ordered service (OBR-4) is missing', { segment: 'OBR' });
    const control = orc.get(1).toUpperCase();
    const status = (control === 'SC' ? ORDER_STATUS[orc.get(5).toUpperCase()] : undefined) ?? ORDER_CONTROL[control];
    if (!status) {
      throw new V2Error(ErrorCode.tableValueNotFound, `ORC-1 order control "${orc.get(1)}" is not a known code (table 0119)`, { segment: 'ORC', sequence: orc.sequence, field: 1 });
    }
    const requester = xcnReference(orc.field(12), ctx.scope) ?? (obr ? xcnReference(obr.field(16), ctx.scope) : undefined);
    const tq1 = ctx.message.segment('TQ1');
    const priorityCode = (tq1?.get(9) || obr?.field(27).get(6) || orc.field(7).get(6) || '').toUpperCase();
    const reasons = ctx.message.all('DG1').map((d) => codeableConcept(d.field(3))).filter((c) => c !== undefined);
    const sr: ServiceRequest = clean({
      resourceType: 'ServiceRequest',
      identifier: [placer, filler].filter((i) => i !== undefined),
      status,
      intent: 'order',
      priority: PRIORITY[priorityCode],
      code,
      subject: { reference: ctx.patientRef as string },
      encounter: ctx.encounterRef ? { reference: ctx.encounterRef } : undefined,
      authoredOn: dateOf(orc, 9, 'dateTime'),
      requester,
      reasonCode: reasons,
      occurrenceDateTime: obr ? dateOf(obr, 7, 'dateTime') : undefined,
      note: [...notesAfter(ctx, orc), ...(obr ? notesAfter(ctx, obr) : [])],
    } as ServiceRequest);
    const key = { system: keyId.system, value: keyId.value };
    const srRef = ctx.plan.upsert(withIdentifier(sr, key), key);
    if (ctx.message.messageCode === 'OMG' && control === 'NW') referralTask(ctx, sr, srRef, key);
  }
}

/**
 * A new OMG^O19 order is a referral request from a closed-loop (360X-style) partner: it gets a
 * Task of the referral workflow, created once (a resent order does not reset a Task the
 * receiving side has since accepted or declined). The tag names who sent it: each change of
 * the Task's status goes back to that sender as OSU^O51 (outbound/queue.ts).
 */
function referralTask(ctx: MapContext, sr: ServiceRequest, srRef: string, key: Identifier): void {
  const task: Task = clean({
    resourceType: 'Task',
    meta: { tag: [{ system: STATUS_RECIPIENT_TAG, code: ctx.sender, display: 'HL7 v2 order status updates (OSU^O51) go to this sender' }] },
    identifier: sr.identifier,
    status: 'requested',
    intent: 'order',
    priority: sr.priority,
    code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill', display: 'Fulfill the focal request' }] },
    focus: { reference: srRef },
    for: { reference: ctx.patientRef as string },
    encounter: ctx.encounterRef ? { reference: ctx.encounterRef } : undefined,
    authoredOn: sr.authoredOn,
    requester: sr.requester,
    reasonCode: sr.reasonCode?.[0],
    note: sr.note,
  } as Task);
  ctx.plan.ensure(task, key);
}

const RESULT_STATUS: Record<string, Observation['status']> = {
  F: 'final',
  C: 'corrected',
  A: 'amended',
  P: 'preliminary',
  R: 'preliminary',
  S: 'preliminary',
  I: 'registered',
  X: 'cancelled',
  D: 'entered-in-error',
  W: 'entered-in-error',
  N: 'cancelled',
  U: 'final',
};
const REPORT_STATUS: Record<string, DiagnosticReport['status']> = {
  F: 'final',
  C: 'corrected',
  A: 'partial',
  P: 'preliminary',
  R: 'partial',
  S: 'partial',
  I: 'registered',
  O: 'registered',
  X: 'cancelled',
  Y: 'final',
  Z: 'final',
};

/** ORU^R01: per OBR a DiagnosticReport whose results are the OBX that follow it. */
export function mapResults(ctx: MapContext): void {
  patientAndVisit(ctx);
  const obrs = ctx.message.all('OBR');
  if (obrs.length === 0) throw new V2Error(ErrorCode.segmentSequence, 'Required segment OBR is missing: ORU^R01 reports results under an OBR', { segment: 'OBR' });
  for (const obr of obrs) {
    const code = codeableConcept(obr.field(4));
    if (!code) throw missingField(obr, 4, 'universal service identifier');
    const filler = eiIdentifier(obr.field(3), ctx.scope, 'FILL');
    const placer = eiIdentifier(obr.field(2), ctx.scope, 'PLAC');
    const orderKey: Identifier = filler ?? placer ?? derivedKey('report', keyText(ctx.patientKey), obr.get(4), obr.get(7), obr.get(1));
    const reportKey = { system: orderKey.system, value: orderKey.value };
    const results: Reference[] = [];
    const group = [];
    const specimens: Segment[] = [];
    for (const s of ctx.message.segments.slice(obr.sequence)) {
      if (s.name === 'OBR' || s.name === 'ORC') break;
      if (s.name === 'OBX') group.push(s);
      if (s.name === 'SPM') specimens.push(s);
    }
    const specimenRefs = specimens.map((spm) => ({ reference: mapSpecimen(ctx, spm, keyText(reportKey)) }));
    for (const obx of group) {
      const obs = mapObservation(ctx, obx, obr, keyText(reportKey));
      if (obs) results.push({ reference: obs });
    }
    // OBX under an SPM describe that specimen; all results of the order come from its specimens.
    if (specimenRefs.length) {
      for (const r of results) {
        const entry = ctx.plan.entries.find((e) => e.entry.fullUrl === r.reference);
        if (entry?.entry.resource) (entry.entry.resource as Observation).specimen = specimenRefs[0];
      }
    }
    const effective = dateOf(obr, 7, 'dateTime');
    const report: DiagnosticReport = clean({
      resourceType: 'DiagnosticReport',
      identifier: [filler, placer].filter((i) => i !== undefined),
      status: REPORT_STATUS[obr.get(25).toUpperCase()] ?? 'unknown',
      category: obr.get(24) ? [tableConcept(obr.get(24), '0074')] : undefined,
      code,
      subject: { reference: ctx.patientRef as string },
      encounter: ctx.encounterRef ? { reference: ctx.encounterRef } : undefined,
      effectiveDateTime: effective,
      issued: dateOf(obr, 22, 'instant'),
      resultsInterpreter: [xcnReference(obr.field(32), ctx.scope)].filter((r) => r !== undefined),
      result: results,
      specimen: specimenRefs,
      conclusion: notesAfter(ctx, obr).map((n) => n.text).join('\n') || undefined,
    } as DiagnosticReport);
    ctx.plan.upsert(withIdentifier(report, reportKey), reportKey);
  }
}

/**
 * SPM -> Specimen (v2-to-FHIR SPM[Specimen]), keyed by SPM-2 (specimen id: placer, else filler
 * assigned), else derived from the order and the set id.
 */
function mapSpecimen(ctx: MapContext, spm: Segment, reportKey: string): string {
  const id = eipPart(ctx, spm.field(2), 1, 'PLAC') ?? eipPart(ctx, spm.field(2), 2, 'FILL');
  const key = id ? { system: id.system, value: id.value } : derivedKey('specimen', reportKey, spm.get(1), spm.get(4));
  const collected = spm.field(17);
  const specimen: Specimen = clean({
    resourceType: 'Specimen',
    identifier: id ? [id] : undefined,
    status: spm.get(20).toUpperCase() === 'N' ? 'unavailable' : 'available',
    type: codeableConcept(spm.field(4)),
    subject: { reference: ctx.patientRef as string },
    receivedTime: dateOf(spm, 18, 'dateTime'),
    collection: clean({
      method: codeableConcept(spm.field(7)),
      bodySite: codeableConcept(spm.field(8)),
      collectedDateTime: collected.get(2) ? undefined : dateOf(spm, 17, 'dateTime', 1),
      collectedPeriod: collected.get(2) ? clean({ start: dateOf(spm, 17, 'dateTime', 1), end: dateOf(spm, 17, 'dateTime', 2) }) : undefined,
    }),
    condition: spm.repetitions(24).map((f) => codeableConcept(f)).filter((c) => c !== undefined),
    note: spm.get(14) ? [{ text: spm.field(14).text() }] : undefined,
  } as Specimen);
  return ctx.plan.upsert(withIdentifier(specimen, key), key);
}

/** One EI of an EIP (placer ^ filler, each EI in sub-components), as an Identifier. */
function eipPart(ctx: MapContext, f: Field, component: 1 | 2, typeCode: string): Identifier | undefined {
  const value = f.get(component, 1);
  if (!value) return undefined;
  const system = authoritySystem(f.get(component, 2), f.get(component, 3), f.get(component, 4)) ?? ctx.scope.fallbackSystem;
  return { system, value, type: { coding: [{ system: v2Table('0203'), code: typeCode }] } };
}

function mapObservation(ctx: MapContext, obx: Segment, obr: Segment, reportKey: string): string | undefined {
  const code = codeableConcept(obx.field(3));
  if (!code) throw missingField(obx, 3, 'observation identifier');
  const status = RESULT_STATUS[obx.get(11).toUpperCase()] ?? 'unknown';
  const key = derivedKey('observation', reportKey, obx.get(3), obx.get(4), obx.get(3) ? '' : obx.get(1));
  const obs: Observation = clean({
    resourceType: 'Observation',
    status,
    code,
    subject: { reference: ctx.patientRef as string },
    encounter: ctx.encounterRef ? { reference: ctx.encounterRef } : undefined,
    effectiveDateTime: dateOf(obx, 14, 'dateTime') ?? dateOf(obr, 7, 'dateTime'),
    interpretation: obx.repetitions(8).map((f) => tableConcept(f.get(1), '0078', f.get(2) || undefined)).filter((c) => c !== undefined),
    referenceRange: obx.get(7) ? [{ text: obx.field(7).text() }] : undefined,
    performer: [xcnReference(obx.field(16), ctx.scope)].filter((r) => r !== undefined),
    note: notesAfter(ctx, obx),
  } as Observation);
  setValue(obs, obx);
  ctx.plan.upsert(withIdentifier(obs, key), key);
  return ctx.plan.entries.find((e) => e.clockKey === `Observation|${key.system}|${key.value}`)?.entry.fullUrl;
}

/** OBX-5 by OBX-2 value type. */
function setValue(obs: Observation, obx: Segment): void {
  const type = obx.get(2).toUpperCase();
  const reps = obx.repetitions(5).filter((f) => !f.empty);
  if (reps.length === 0) {
    if (obs.status === 'final' || obs.status === 'corrected' || obs.status === 'amended') {
      obs.dataAbsentReason = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/data-absent-reason', code: 'unknown' }] };
    }
    return;
  }
  const first = reps[0];
  const unit = obx.field(6);
  const quantity = (value: number): Quantity =>
    clean({
      value,
      unit: unit.get(2) || unit.get(1) || undefined,
      system: unit.get(1) ? (codeSystemUri(unit.get(3)) ?? 'http://unitsofmeasure.org') : undefined,
      code: unit.get(1) || undefined,
    });
  if (type === 'NM' && reps.length === 1 && /^[+-]?(\d+\.?\d*|\.\d+)$/.test(first.text())) {
    obs.valueQuantity = quantity(Number(first.text()));
    return;
  }
  if (type === 'SN') {
    const comparator = first.get(1);
    const n1 = first.get(2);
    const sep = first.get(3);
    const n2 = first.get(4);
    if (/^[+-]?\d+(\.\d+)?$/.test(n1) && !sep) {
      const q = quantity(Number(n1));
      if (['<', '<=', '>=', '>'].includes(comparator)) q.comparator = comparator as Quantity['comparator'];
      obs.valueQuantity = q;
      return;
    }
    if (/^[+-]?\d+(\.\d+)?$/.test(n1) && sep === '-' && /^[+-]?\d+(\.\d+)?$/.test(n2)) {
      obs.valueRange = { low: quantity(Number(n1)), high: quantity(Number(n2)) };
      return;
    }
    if (/^[+-]?\d+(\.\d+)?$/.test(n1) && (sep === ':' || sep === '/') && /^[+-]?\d+(\.\d+)?$/.test(n2)) {
      obs.valueRatio = { numerator: { value: Number(n1) }, denominator: { value: Number(n2) } };
      return;
    }
    obs.valueString = [comparator, n1, sep, n2].join('');
    return;
  }
  if (type === 'CE' || type === 'CWE' || type === 'CNE' || type === 'CF') {
    const cc = codeableConcept(first);
    if (cc) obs.valueCodeableConcept = cc;
    return;
  }
  if (type === 'DT' || type === 'DTM' || type === 'TS') {
    const dt = toFhirDateTime(first.get(1));
    if (dt) {
      obs.valueDateTime = dt;
      return;
    }
    // Not a date after all: the result is kept as text (below), and the sender told.
    if (first.get(1)) warn(invalidDate(first.get(1), first.at ?? { segment: 'OBX', field: 5 }, 'kept as text (valueString)'));
  }
  if (type === 'ED' || type === 'RP') {
    obs.valueString = `${type === 'ED' ? 'Encapsulated data' : 'Reference pointer'} (kept in the HL7 v2 message store)`;
    return;
  }
  obs.valueString = reps.map((f) => f.text()).join('\n');
}
