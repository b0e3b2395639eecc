// AL1 -> AllergyIntolerance and DG1 -> Condition, upserted by a key derived from the patient and
// the code (these segments carry no identifier of their own), so repeated ADT snapshots update
// rather than duplicate them.
import type { AllergyIntolerance, Condition } from '@medplum/fhirtypes';
import { dateOf } from './dates.ts';
import { clean, codeableConcept } from './datatypes.ts';
import { derivedKey, keyText, type MapContext } from './context.ts';
import { withIdentifier } from './plan.ts';

const ALLERGY_CATEGORY: Record<string, AllergyIntolerance['category']> = {
  DA: ['medication'],
  MA: undefined,
  FA: ['food'],
  EA: ['environment'],
  AA: ['environment'],
  PA: ['environment'],
  LA: ['environment'],
  MC: ['medication'],
};
const CRITICALITY: Record<string, AllergyIntolerance['criticality']> = { SV: 'high', MO: 'low', MI: 'low', U: 'unable-to-assess' };

export function mapAllergies(ctx: MapContext): void {
  if (!ctx.patientRef) return;
  for (const al1 of ctx.message.all('AL1')) {
    const code = codeableConcept(al1.field(3));
    if (!code) continue;
    const key = derivedKey('allergy', keyText(ctx.patientKey), code.coding?.[0]?.code ?? code.text);
    const reactions = al1.repetitions(5).map((f) => f.text()).filter(Boolean);
    const allergy: AllergyIntolerance = clean({
      resourceType: 'AllergyIntolerance',
      clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] },
      category: ALLERGY_CATEGORY[al1.get(2).toUpperCase()],
      criticality: CRITICALITY[al1.get(4).toUpperCase()],
      code,
      patient: { reference: ctx.patientRef },
      onsetDateTime: dateOf(al1, 6, 'dateTime'),
      reaction: reactions.length ? [{ manifestation: reactions.map((text) => ({ text })) }] : undefined,
    } as AllergyIntolerance);
    ctx.plan.upsert(withIdentifier(allergy, key), key);
  }
}

export function mapDiagnoses(ctx: MapContext): void {
  if (!ctx.patientRef) return;
  for (const dg1 of ctx.message.all('DG1')) {
    const code = codeableConcept(dg1.field(3)) ?? (dg1.get(4) ? { text: dg1.get(4) } : undefined);
    if (!code) continue;
    const key = derivedKey('diagnosis', keyText(ctx.patientKey), code.coding?.[0]?.code ?? code.text);
    const condition: Condition = clean({
      resourceType: 'Condition',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-category', code: 'encounter-diagnosis' }] }],
      code,
      subject: { reference: ctx.patientRef },
      encounter: ctx.encounterRef ? { reference: ctx.encounterRef } : undefined,
      onsetDateTime: dateOf(dg1, 5, 'dateTime'),
      recordedDate: dateOf(dg1, 19, 'dateTime'),
    } as Condition);
    ctx.plan.upsert(withIdentifier(condition, key), key);
  }
}
