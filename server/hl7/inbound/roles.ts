// ROL (role, chapter 15) in ADT messages, after the v2-to-FHIR IG's ROL maps: a primary care
// role (ROL-3 PP / FHCP, table 0443) adds the person to Patient.generalPractitioner; the other
// roles become Encounter.participant entries typed from 0443. ROL-2 action code DE (delete)
// leaves the role out. The people stay logical references (identifier + display), as in PV1.
import type { Encounter, Patient } from '@medplum/fhirtypes';
import type { MapContext } from './context.ts';
import { periodOf } from './dates.ts';
import { xcnReference } from './datatypes.ts';

const PRIMARY_CARE = new Set(['PP', 'FHCP']);
const PARTICIPATION: Record<string, { code: string; display: string }> = {
  AT: { code: 'ATND', display: 'attender' },
  AD: { code: 'ADM', display: 'admitter' },
  RP: { code: 'REF', display: 'referrer' },
  CP: { code: 'CON', display: 'consultant' },
};

export function mapRoles(ctx: MapContext): void {
  const patient = planned<Patient>(ctx, ctx.patientRef);
  const encounter = planned<Encounter>(ctx, ctx.encounterRef);
  for (const rol of ctx.message.all('ROL')) {
    if (rol.get(2).toUpperCase() === 'DE') continue;
    const person = xcnReference(rol.field(4), ctx.scope);
    if (!person) continue;
    const role = rol.get(3).toUpperCase();
    if (PRIMARY_CARE.has(role) && patient) {
      const gps = patient.generalPractitioner ?? [];
      const same = (r: { identifier?: { system?: string; value?: string } }) => r.identifier?.value !== undefined && r.identifier.value === person.identifier?.value && r.identifier.system === person.identifier?.system;
      if (!gps.some(same)) gps.push(person);
      patient.generalPractitioner = gps;
    } else if (encounter) {
      const known = PARTICIPATION[role];
      const type = known
        ? { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: known.code, display: known.display }] }
        : { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0443', code: role, display: rol.get(3, 2) || undefined }] };
      const when = periodOf(rol, 5, 6);
      encounter.participant = [...(encounter.participant ?? []), { type: [type], individual: person, ...(when ? { period: when } : {}) }];
    }
  }
}

/** The resource a planned entry (by fullUrl) will write, to add to it before the bundle is built. */
function planned<T>(ctx: MapContext, fullUrl: string | undefined): T | undefined {
  if (!fullUrl) return undefined;
  return ctx.plan.entries.find((e) => e.entry.fullUrl === fullUrl)?.entry.resource as T | undefined;
}
