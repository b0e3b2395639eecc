// Token :in / :not-in (value sets expanded from the bundled definitions) and :above / :below
// (concept hierarchies of bundled code systems). Expected id sets worked out by hand from the
// R4 CodeSystems: condition-clinical has active > {recurrence, relapse} and inactive >
// {remission, resolved}; condition-ver-status has unconfirmed > {provisional, differential}.
import type { Resource } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { FhirError } from '../../../server/fhir/outcome.ts';
import { loadedDb, ids, run } from './helpers.ts';

const CLINICAL = 'http://terminology.hl7.org/CodeSystem/condition-clinical';
const VERIFICATION = 'http://terminology.hl7.org/CodeSystem/condition-ver-status';
const GENDER_VS = 'http://hl7.org/fhir/ValueSet/administrative-gender';
const CLINICAL_VS = 'http://hl7.org/fhir/ValueSet/condition-clinical';
const VERIFICATION_VS = 'http://hl7.org/fhir/ValueSet/condition-ver-status';
/** LOINC is not bundled: this value set cannot be expanded here. */
const LOINC_VS = 'http://hl7.org/fhir/ValueSet/observation-codes';

const cc = (system: string, code: string) => ({ coding: [{ system, code }] });
const condition = (id: string, clinical?: string, verification?: string): Resource =>
  ({
    resourceType: 'Condition',
    id,
    subject: { reference: 'Patient/pm' },
    ...(clinical ? { clinicalStatus: cc(clinical.includes('|') ? clinical.split('|')[0] : CLINICAL, clinical.split('|').pop() as string) } : {}),
    ...(verification ? { verificationStatus: cc(VERIFICATION, verification) } : {}),
  }) as Resource;

const fixtures: Resource[] = [
  { resourceType: 'Patient', id: 'pm', gender: 'male' },
  { resourceType: 'Patient', id: 'pf', gender: 'female' },
  { resourceType: 'Patient', id: 'po', gender: 'other' },
  { resourceType: 'Patient', id: 'pn' },
  condition('c1', 'active', 'unconfirmed'),
  condition('c2', 'recurrence', 'provisional'),
  condition('c3', 'relapse', 'differential'),
  condition('c4', 'inactive', 'confirmed'),
  condition('c5', 'resolved', 'refuted'),
  condition('c6', 'remission'),
  // same code, another system: never in the value set, never below/above
  condition('c7', 'http://example.org/other|active'),
];

const t = loadedDb(fixtures);

const sorted = (a: string[]) => [...a].sort();

const cases: [string, string[]][] = [
  // :in / :not-in
  [`Patient?gender:in=${GENDER_VS}`, ['pm', 'pf', 'po']],
  [`Patient?gender:not-in=${GENDER_VS}`, ['pn']],
  [`Condition?clinical-status:in=${CLINICAL_VS}`, ['c1', 'c2', 'c3', 'c4', 'c5', 'c6']],
  [`Condition?clinical-status:not-in=${CLINICAL_VS}`, ['c7']],
  [`Condition?verification-status:in=${VERIFICATION_VS}`, ['c1', 'c2', 'c3', 'c4', 'c5']],
  [`Condition?verification-status:not-in=${VERIFICATION_VS}`, ['c6', 'c7']],
  // comma = OR of value sets; a version suffix is ignored
  [`Condition?clinical-status:in=${VERIFICATION_VS},${CLINICAL_VS}|4.0.1`, ['c1', 'c2', 'c3', 'c4', 'c5', 'c6']],
  // AND with another parameter
  [`Condition?clinical-status:in=${CLINICAL_VS}&verification-status=confirmed`, ['c4']],
  // :below = the code and its descendants
  [`Condition?clinical-status:below=${CLINICAL}|active`, ['c1', 'c2', 'c3']],
  [`Condition?clinical-status:below=${CLINICAL}|inactive`, ['c4', 'c5', 'c6']],
  [`Condition?clinical-status:below=${CLINICAL}|resolved`, ['c5']],
  [`Condition?verification-status:below=${VERIFICATION}|unconfirmed`, ['c1', 'c2', 'c3']],
  // :above = the code and its ancestors
  [`Condition?clinical-status:above=${CLINICAL}|recurrence`, ['c1', 'c2']],
  [`Condition?clinical-status:above=${CLINICAL}|active`, ['c1']],
  [`Condition?verification-status:above=${VERIFICATION}|differential`, ['c1', 'c3']],
  [`Condition?clinical-status:below=${CLINICAL}|remission,${CLINICAL}|relapse`, ['c3', 'c6']],
];

describe('token :in, :not-in, :above, :below', () => {
  it.each(cases)('%s', async (q, expected) => {
    const b = await run(t.db, q);
    expect(sorted(ids(b))).toEqual(sorted(expected));
    expect(b.entry?.some((e) => e.search.mode === 'outcome') ?? false).toBe(false);
  });

  const unusable: [string, RegExp][] = [
    [`Observation?code:in=${LOINC_VS}`, /cannot be expanded/],
    ['Patient?gender:in=http://example.org/ValueSet/unknown', /cannot be expanded/],
    [`Observation?code:not-in=${LOINC_VS}`, /cannot be expanded/],
    ['Observation?code:below=http://loinc.org|8867-4', /not among the code systems/],
    ['Condition?clinical-status:above=active', /system\|code/],
  ];

  it.each(unusable)('strict: %s is a 400 naming the parameter', async (q, message) => {
    const err = await run(t.db, q, { strict: true }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FhirError);
    const fe = err as FhirError;
    expect(fe.status).toBe(400);
    expect(JSON.stringify(fe.outcome)).toMatch(message);
    expect(JSON.stringify(fe.outcome)).toContain(q.split('?')[1].split('=')[0]);
  });

  it('lenient: a parameter that fails half-way (second value) is dropped whole', async () => {
    const b = await run(t.db, `Patient?gender:in=${GENDER_VS},http://example.org/ValueSet/unknown&_id=pm,pn`);
    expect(sorted(ids(b))).toEqual(['pm', 'pn']);
    expect(JSON.stringify(b.entry?.find((e) => e.search.mode === 'outcome')?.resource)).toMatch(/cannot be expanded/);
    const c = await run(t.db, `Condition?clinical-status:below=${CLINICAL}|active,http://loinc.org|x&verification-status=confirmed`);
    expect(ids(c)).toEqual(['c4']);
  });

  it.each(unusable)('lenient: %s is ignored with a warning', async (q, message) => {
    const b = await run(t.db, q);
    const outcome = b.entry?.find((e) => e.search.mode === 'outcome');
    expect(outcome).toBeDefined();
    expect(JSON.stringify(outcome?.resource)).toMatch(message);
  });
});
