// Shared setup for the workflow tests: a migrated fresh database, a hospital with departments
// (SLA settings, heads, members as PractitionerRoles), people per role, AuthContexts to drive
// route() with, a controllable clock, and helpers to call operations.
import { AccessPolicy } from '../../server/auth/access.ts';
import type { AuthContext, Role } from '../../server/auth/context.ts';
import { migrate } from '../../server/db/migrate.ts';
import { createDb, type Db } from '../../server/db/pool.ts';
import { loadDefinitions } from '../../server/fhir/definitions.ts';
import { Repository } from '../../server/fhir/repository.ts';
import type { FhirContext } from '../../server/fhir/request.ts';
import { call } from '../support/route.ts';
import { EXT_DEPARTMENT_SLA } from '../../server/workflow/model.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';

export const BASE = 'http://test.local/fhir';

export interface World {
  db: Db;
  database: TestDatabase;
  admin: FhirContext;
  ids: Record<string, string>;
  as(who: string): FhirContext;
  close(): Promise<void>;
}

/** A clock tests move by hand: real time plus an offset. */
export const clock = {
  offset: 0,
  now: (): Date => new Date(Date.now() + clock.offset),
  advance(ms: number) {
    clock.offset += ms;
  },
};

export { call };

export function parameters(values: Record<string, unknown>): any {
  const parameter = Object.entries(values)
    .filter(([, v]) => v !== undefined)
    .map(([name, v]) => {
      if (typeof v === 'boolean') return { name, valueBoolean: v };
      if (typeof v === 'string' && /^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]+$/.test(v)) return { name, valueReference: { reference: v } };
      if (typeof v === 'string') return { name, valueString: v };
      return { name, resource: v };
    });
  return { resourceType: 'Parameters', parameter };
}

export async function op(ctx: FhirContext, path: string, values: Record<string, unknown> = {}) {
  return call(ctx, 'POST', path, parameters(values));
}

export async function setupWorld(): Promise<World> {
  loadDefinitions();
  const database = await createTestDatabase();
  await migrate(database.connectionString);
  const db = createDb(database.connectionString, database.embedded ? 1 : 6, { namedStatements: !database.embedded });
  const admin: FhirContext = { repo: new Repository(db, { baseUrl: BASE }, db), fhirBase: BASE, defaultCount: 50, maxCount: 500, maxBinaryBytes: 1 << 20 };
  const ids: Record<string, string> = {};
  const make = async (key: string, resource: any) => {
    const r = await call(admin, 'POST', resource.resourceType, resource);
    if (r.status !== 201) throw new Error(`seed ${key}: ${JSON.stringify(r.body)}`);
    ids[key] = r.body.id;
    return r.body;
  };
  await make('hospital', { resourceType: 'Organization', name: 'Test Hospital' });
  await make('otherHospital', { resourceType: 'Organization', name: 'Other Hospital' });
  for (const [key, family] of Object.entries({ requester: 'Requester', cardDoc: 'CardDoc', cardHead: 'CardHead', neuroDoc: 'NeuroDoc', nurse: 'Nurse', adminUser: 'Admin', refDoc: 'RefDoc' })) {
    await make(key, { resourceType: 'Practitioner', name: [{ family }] });
  }
  const sla = (minutes: Record<string, number>, head?: string, administrator?: string) => ({
    url: EXT_DEPARTMENT_SLA,
    extension: [
      ...Object.entries(minutes).map(([url, v]) => ({ url, valueDecimal: v })),
      ...(head ? [{ url: 'head', valueReference: { reference: `Practitioner/${head}` } }] : []),
      ...(administrator ? [{ url: 'administrator', valueReference: { reference: `Practitioner/${administrator}` } }] : []),
    ],
  });
  await make('cardiology', {
    resourceType: 'Organization',
    name: 'Cardiology',
    partOf: { reference: `Organization/${ids.hospital}` },
    extension: [sla({ stat: 30, urgent: 120, routine: 600, 'second-tier-delay': 15 }, ids.cardHead, ids.adminUser)],
  });
  await make('neurology', { resourceType: 'Organization', name: 'Neurology', partOf: { reference: `Organization/${ids.hospital}` } });
  const member = (who: string, org: string, code: string) =>
    make(`role-${who}`, { resourceType: 'PractitionerRole', active: true, practitioner: { reference: `Practitioner/${ids[who]}` }, organization: { reference: `Organization/${ids[org]}` }, code: [{ text: code }] });
  await member('cardDoc', 'cardiology', 'doctor');
  await member('cardHead', 'cardiology', 'head');
  await member('neuroDoc', 'neurology', 'doctor');
  await member('requester', 'neurology', 'doctor');
  await make('patient', { resourceType: 'Patient', name: [{ family: 'Patient' }], managingOrganization: { reference: `Organization/${ids.hospital}` } });

  const people: Record<string, { role: Role; org?: string }> = {
    requester: { role: 'clinician' },
    cardDoc: { role: 'clinician' },
    cardHead: { role: 'department-head' },
    neuroDoc: { role: 'clinician' },
    nurse: { role: 'nurse' },
    adminUser: { role: 'admin' },
    refDoc: { role: 'clinician', org: 'otherHospital' },
  };
  const as = (who: string): FhirContext => {
    const p = people[who];
    const auth: AuthContext = {
      subject: who,
      clientId: 'c1',
      jti: 'j1',
      scopes: ['user/*.cruds'],
      role: p.role,
      fhirUser: `Practitioner/${ids[who]}`,
      organization: `Organization/${ids[p.org ?? 'hospital']}`,
    };
    return { ...admin, access: new AccessPolicy(auth) };
  };
  return {
    db,
    database,
    admin,
    ids,
    as,
    async close() {
      await db.close();
      await database.drop();
    },
  };
}

export async function waitFor<T>(fn: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - start > timeoutMs) throw new Error('waitFor timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}
