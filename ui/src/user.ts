// The signed-in person as the app needs them: name, role (from the token), and for staff the
// departments they belong to, modelled as PractitionerRole (code "head", "doctor", "nurse")
// with the department Organization (server/workflow/seed.ts). One search loads it all.
import { session, type Identity, type Role } from './auth/session.ts';
import { fhir, matches, nameOf, search, type Reference, type Resource } from './api/fhir.ts';

export interface Department {
  ref: string;
  name: string;
  /** This user's membership: head, doctor, nurse (PractitionerRole.code text / coding). */
  membership: string;
}

export interface Profile extends Identity {
  name: string;
  departments: Department[];
}

const DEPT_TYPE = 'http://terminology.hl7.org/CodeSystem/organization-type|dept';

export function membershipOf(role: Resource): string {
  const code = (role.code as { text?: string; coding?: { code?: string }[] }[] | undefined)?.[0];
  return (code?.text ?? code?.coding?.[0]?.code ?? 'member').toLowerCase();
}

export async function loadProfile(): Promise<Profile> {
  const id = session.identity as Identity;
  const [type, rid] = id.fhirUser.split('/');
  const [person, roles] = await Promise.all([
    fhir<Resource>(`${type}/${rid}`).catch(() => undefined),
    type === 'Practitioner'
      ? search('PractitionerRole', [['practitioner', id.fhirUser], ['active', 'true'], ['_include', 'PractitionerRole:organization'], ['_count', '50']])
      : Promise.resolve(undefined),
  ]);
  const departments: Department[] = [];
  if (roles) {
    const orgs = new Map(matchesAll(roles, 'Organization').map((o) => [`Organization/${o.id}`, o]));
    for (const r of matches(roles, 'PractitionerRole')) {
      const ref = (r.organization as Reference | undefined)?.reference;
      if (!ref || departments.some((d) => d.ref === ref)) continue;
      departments.push({ ref, name: String(orgs.get(ref)?.name ?? (r.organization as Reference).display ?? ref), membership: membershipOf(r) });
    }
  }
  return { ...id, name: nameOf(person) || id.fhirUser, departments };
}

function matchesAll(bundle: { entry?: { resource?: Resource }[] }, type: string): Resource[] {
  return (bundle.entry ?? []).map((e) => e.resource).filter((r): r is Resource => r?.resourceType === type);
}

/** Every department of the hospital (for administrators, nurses without a role, the consult form). */
/** The hospital's departments, or those whose name contains `q` (a FHIR name:contains search). */
export async function allDepartments(q = ''): Promise<Department[]> {
  const b = await search('Organization', [['type', DEPT_TYPE], ['active', 'true'], ['_count', '200'], ['_sort', 'name'], ...byName(q)]);
  return matches(b, 'Organization').map((o) => ({ ref: `Organization/${o.id}`, name: String(o.name ?? o.id), membership: '' }));
}

function byName(q: string): [string, string][] {
  return q.trim() ? [['name:contains', q.trim()]] : [];
}

export function canRequest(role: Role | undefined): boolean {
  return role === 'clinician' || role === 'department-head' || role === 'admin';
}

export function isHeadOf(profile: Profile, dept: string): boolean {
  return profile.role === 'admin' || profile.departments.some((d) => d.ref === dept && d.membership === 'head') || (profile.role === 'department-head' && profile.departments.some((d) => d.ref === dept));
}

export function isMemberOf(profile: Profile, dept: string): boolean {
  return profile.departments.some((d) => d.ref === dept);
}

/** Organisations a patient can be referred to: every active one but the hospital's own departments and the user's organisation. */
export async function providers(profile: Profile, q = ''): Promise<Department[]> {
  const b = await search('Organization', [['active', 'true'], ['_count', '200'], ['_sort', 'name'], ...byName(q)]);
  const isDept = (o: Resource) => ((o.type as { coding?: { code?: string }[] }[] | undefined) ?? []).some((t) => t.coding?.some((c) => c.code === 'dept'));
  return matches(b, 'Organization')
    .filter((o) => !isDept(o) && `Organization/${o.id}` !== profile.organization)
    .map((o) => ({ ref: `Organization/${o.id}`, name: String(o.name ?? o.id), membership: '' }));
}
