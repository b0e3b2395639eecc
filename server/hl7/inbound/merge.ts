// ADT^A40 merge, applied in the message's transaction after the survivor is upserted: the
// record named by MRG-1 is marked replaced (active=false, link replaced-by) and gives up those
// identifiers, the survivor keeps its own and gains the prior ones (use=old) plus a link
// replaces, and every resource that referenced the merged record is repointed to the survivor.
import type { Identifier, Patient, Resource } from '@medplum/fhirtypes';
import type { Repository } from '../../fhir/repository.ts';
import { findMatches } from '../../fhir/search/search.ts';
import { tokenParam } from './datatypes.ts';

/** Types whose `patient` search parameter finds what points at a Patient. */
const REFERRING_TYPES = [
  'Encounter',
  'Appointment',
  'AllergyIntolerance',
  'Condition',
  'Observation',
  'DiagnosticReport',
  'ServiceRequest',
  'Task',
  'Procedure',
  'Coverage',
  'MedicationRequest',
  'Immunization',
  'DocumentReference',
  'CarePlan',
  'CareTeam',
  'Communication',
  'Flag',
  'RelatedPerson',
];

export interface MergeResult {
  merged: string[];
  repointed: string[];
}

export async function applyMerge(repo: Repository, survivorId: string, prior: Identifier[]): Promise<MergeResult> {
  const sourceIds = new Set<string>();
  for (const id of prior) {
    const matches = await findMatches(repo.db, 'Patient', [['identifier', tokenParam(id.system, id.value as string)]], 10);
    for (const m of matches) if (m.id !== survivorId) sourceIds.add(m.id);
  }
  const survivor = await repo.readResource<Patient>('Patient', survivorId);
  const same = (a: Identifier, b: Identifier) => a.system === b.system && a.value === b.value;
  const identifiers = [...(survivor.identifier ?? [])];
  for (const id of prior) if (!identifiers.some((i) => same(i, id))) identifiers.push({ ...id, use: 'old' });
  const links = [...(survivor.link ?? [])];
  const repointed: string[] = [];
  for (const sourceId of sourceIds) {
    const source = await repo.readResource<Patient>('Patient', sourceId);
    const moved = (source.identifier ?? []).filter((i) => prior.some((p) => same(i, p)));
    for (const id of source.identifier ?? []) {
      if (!identifiers.some((i) => same(i, id))) identifiers.push({ ...id, use: 'old' });
    }
    await repo.update<Patient>({
      ...source,
      active: false,
      identifier: (source.identifier ?? []).filter((i) => !moved.includes(i)),
      link: [...(source.link ?? []).filter((l) => l.other.reference !== `Patient/${survivorId}`), { other: { reference: `Patient/${survivorId}` }, type: 'replaced-by' }],
    });
    if (!links.some((l) => l.other.reference === `Patient/${sourceId}`)) links.push({ other: { reference: `Patient/${sourceId}` }, type: 'replaces' });
    for (const type of REFERRING_TYPES) {
      const matches = await findMatches(repo.db, type, [['patient', `Patient/${sourceId}`]], 10_000).catch(() => []);
      for (const m of matches) {
        const resource = await repo.readResource<Resource>(type, m.id);
        const from = `Patient/${sourceId}`;
        const to = `Patient/${survivorId}`;
        const rewritten = JSON.parse(JSON.stringify(resource), (k, v) => (k === 'reference' && v === from ? to : v)) as Resource;
        await repo.update(rewritten);
        repointed.push(`${type}/${m.id}`);
      }
    }
  }
  await repo.update<Patient>({ ...survivor, identifier: identifiers, link: links.length ? links : undefined });
  return { merged: [...sourceIds].map((id) => `Patient/${id}`), repointed };
}
