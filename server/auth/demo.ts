// Demo seed (embedded default): an organisation, one administrator (with TOTP, as admins must)
// and one user per role, each a FHIR Practitioner or Patient created through the repository,
// with random passwords printed once; and the public client of the bundled UI. Runs once: on
// later starts the users exist and only a reminder is printed.
import type { Organization, Patient, Practitioner } from '@medplum/fhirtypes';
import { Repository } from '../fhir/repository.ts';
import { ROLES, type Role } from './context.ts';
import { registerUiClient } from './ui-client.ts';
import { generatePassword } from './passwords.ts';
import type { AuthServices } from './service.ts';
import { generateTotpSecret, otpauthUri } from './totp.ts';
import { createUser } from './users.ts';

export interface DemoAccount {
  username: string;
  password: string;
  role: Role;
  fhirUser: string;
  totpSecret?: string;
}

const NAMES: Record<Role, [string, string]> = {
  admin: ['Ada', 'Admin'],
  clinician: ['Clara', 'Clinician'],
  nurse: ['Nia', 'Nurse'],
  'department-head': ['Dev', 'Head'],
  dispatcher: ['Dina', 'Dispatcher'],
  'ambulance-crew': ['Carl', 'Crew'],
  receptionist: ['Rita', 'Reception'],
  patient: ['Pat', 'Patient'],
};

export async function seedDemo(s: AuthServices, options: { print?: boolean } = {}): Promise<DemoAccount[]> {
  await registerUiClient(s, ['http://localhost:8080/app/callback', `${s.config.baseUrl}/app/callback`]);
  const existing = await s.db.query(`SELECT 1 FROM auth_user WHERE username = 'admin'`);
  if (existing.rowCount) {
    if (options.print) console.log('Demo users exist (admin, clinician, nurse, ...); reset a password with: npm run admin -- reset-password <username>');
    return [];
  }
  const repo = new Repository(s.db, { baseUrl: `${s.config.baseUrl}/fhir` }, s.db);
  const org = await repo.create<Organization>({
    resourceType: 'Organization',
    identifier: [{ system: 'urn:wardlink:demo', value: 'demo-hospital' }],
    active: true,
    name: 'Wardlink Demo Hospital',
  });
  const organization = `Organization/${org.id}`;
  const accounts: DemoAccount[] = [];
  for (const role of ROLES) {
    const [given, family] = NAMES[role];
    const person =
      role === 'patient'
        ? await repo.create<Patient>({ resourceType: 'Patient', active: true, name: [{ given: [given], family }], gender: 'unknown', birthDate: '1980-01-01', managingOrganization: { reference: organization } })
        : await repo.create<Practitioner>({ resourceType: 'Practitioner', active: true, name: [{ given: [given], family }] });
    const fhirUser = `${person.resourceType}/${person.id}`;
    const password = generatePassword();
    const totpSecret = role === 'admin' ? generateTotpSecret() : undefined;
    await createUser(s.db, { username: role, password, fhirUser, role, organization, totpSecret });
    accounts.push({ username: role, password, role, fhirUser, totpSecret });
  }
  if (options.print) {
    const lines = accounts.map((a) => `  ${a.username.padEnd(16)} ${a.password}   ${a.fhirUser}`);
    const admin = accounts.find((a) => a.totpSecret);
    console.log(
      `\nDemo users (shown once; sign in at ${s.config.baseUrl}/oauth2/account or through the app):\n${lines.join('\n')}\n` +
        (admin?.totpSecret ? `  admin's two-factor key: ${admin.totpSecret}\n  (authenticator apps: ${otpauthUri(admin.totpSecret, 'admin')})\n` : ''),
    );
  }
  return accounts;
}
