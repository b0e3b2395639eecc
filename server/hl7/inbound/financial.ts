// IN1 -> Coverage and GT1 -> Account (+ RelatedPerson as guarantor), after the v2-to-FHIR IG's
// IN1[Coverage] and GT1[Account] / GT1[RelatedPerson] segment maps, for the ADT events that
// carry them. Keys: IN1-36 policy number when sent, else one derived from the patient, the
// insurance company and the plan; GT1-2 guarantor number, else the patient and the
// guarantor's name. So repeated ADT snapshots update rather than duplicate them.
import type { Account, Coverage, Identifier, Reference, RelatedPerson } from '@medplum/fhirtypes';
import { dateOf, periodOf } from './dates.ts';
import { derivedKey, keyText, type MapContext } from './context.ts';
import { clean, codeableConcept, cxIdentifier, each, tableConcept, xadAddress, xpnName, xtnContact } from './datatypes.ts';
import { withIdentifier } from './plan.ts';

/** Table 0063 (relationship) -> the subscriber-relationship codes Coverage.relationship uses. */
const SUBSCRIBER_RELATIONSHIP: Record<string, string> = {
  SEL: 'self',
  SPO: 'spouse',
  DOM: 'common',
  CHD: 'child',
  EMC: 'child',
  FCH: 'child',
  SCH: 'child',
  PAR: 'parent',
  MTH: 'parent',
  FTH: 'parent',
  EME: 'injured',
  OTH: 'other',
};

export function mapCoverages(ctx: MapContext): void {
  if (!ctx.patientRef) return;
  for (const in1 of ctx.message.all('IN1')) {
    const payorId = in1.field(3).empty ? undefined : cxIdentifier(in1.field(3), ctx.scope);
    const payorName = in1.field(4).text() || undefined;
    const policy = in1.get(36);
    const key: Identifier = policy
      ? { system: `${ctx.scope.fallbackSystem}:policy:${encodeURIComponent(payorId?.value ?? payorName ?? '')}`, value: policy }
      : derivedKey('coverage', keyText(ctx.patientKey), payorId?.value ?? payorName, in1.get(2), in1.get(8));
    const payor: Reference = clean({ type: 'Organization', identifier: payorId, display: payorName ?? payorId?.value ?? 'unknown payor' } as Reference);
    const relationship = in1.get(17).toUpperCase();
    const plan = in1.get(2);
    const group = in1.get(8);
    const insured = each(in1.repetitions(16), xpnName)[0];
    const coverage: Coverage = clean({
      resourceType: 'Coverage',
      identifier: policy ? [{ ...key, type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MB' }] } }] : undefined,
      status: 'active',
      type: in1.get(15) ? tableConcept(in1.get(15), '0086', in1.get(15, 2) || undefined) : undefined,
      subscriberId: in1.get(49) || policy || undefined,
      beneficiary: { reference: ctx.patientRef },
      relationship: SUBSCRIBER_RELATIONSHIP[relationship]
        ? { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/subscriber-relationship', code: SUBSCRIBER_RELATIONSHIP[relationship] }] }
        : undefined,
      subscriber: relationship === 'SEL' ? { reference: ctx.patientRef } : insured ? { display: [insured.given?.join(' '), insured.family].filter(Boolean).join(' ') } : undefined,
      period: clean({ start: dateOf(in1, 12, 'date'), end: dateOf(in1, 13, 'date') }),
      payor: [payor],
      class: [
        plan ? { type: classType('plan'), value: plan, name: in1.field(2).get(2) || undefined } : undefined,
        group ? { type: classType('group'), value: group, name: in1.get(9) || undefined } : undefined,
      ].filter((c) => c !== undefined),
      order: /^\d+$/.test(in1.get(1)) ? Number(in1.get(1)) : undefined,
    } as Coverage);
    ctx.plan.upsert(withIdentifier(coverage, key), key);
  }
}

function classType(code: 'plan' | 'group') {
  return { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/coverage-class', code }] };
}

/** GT1: the guarantor of the patient's account; a guarantor other than the patient is a RelatedPerson. */
export function mapGuarantors(ctx: MapContext): void {
  if (!ctx.patientRef) return;
  for (const gt1 of ctx.message.all('GT1')) {
    const name = each(gt1.repetitions(3), xpnName)[0];
    const number = gt1.field(2).empty ? undefined : cxIdentifier(gt1.field(2), ctx.scope);
    const relationship = gt1.get(11).toUpperCase();
    let party: Reference;
    if (relationship === 'SEL') {
      party = { reference: ctx.patientRef };
    } else {
      const personKey = number ? { system: number.system, value: number.value } : derivedKey('guarantor', keyText(ctx.patientKey), gt1.field(3).text());
      const person: RelatedPerson = clean({
        resourceType: 'RelatedPerson',
        active: true,
        patient: { reference: ctx.patientRef },
        relationship: [relationship ? tableConcept(relationship, '0063', gt1.get(11, 2) || undefined) : undefined, codeableConcept(gt1.field(10))].filter((c) => c !== undefined),
        name: name ? [name] : undefined,
        address: each(gt1.repetitions(5), xadAddress),
        telecom: [...each(gt1.repetitions(6), (f) => xtnContact(f, 'home')), ...each(gt1.repetitions(7), (f) => xtnContact(f, 'work'))],
        birthDate: dateOf(gt1, 8, 'date'),
      } as RelatedPerson);
      party = { reference: ctx.plan.upsert(withIdentifier(person, personKey), personKey) };
    }
    const accountKey = derivedKey('account', keyText(ctx.patientKey), number?.value ?? gt1.field(3).text());
    const account: Account = clean({
      resourceType: 'Account',
      status: 'active',
      type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PBILLACCT', display: 'patient billing account' }] },
      subject: [{ reference: ctx.patientRef }],
      guarantor: [{ party, onHold: false, period: periodOf(gt1, 13, 14) }],
    } as Account);
    ctx.plan.upsert(withIdentifier(account, accountKey), accountKey);
  }
}
