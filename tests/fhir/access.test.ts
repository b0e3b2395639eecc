// Access rules on FHIR interactions (server/auth/access.ts via server/fhir/authorize.ts):
// scopes, patient compartments, v2 scope restrictions, roles and organisations, for reads,
// searches (and their includes), writes and transaction entries. The requests go through the
// same router the REST layer uses, on a real database, with the AuthContext a verified token
// would give.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AccessPolicy } from '../../server/auth/access.ts';
import type { AuthContext } from '../../server/auth/context.ts';
import { migrate } from '../../server/db/migrate.ts';
import { createDb, type Db } from '../../server/db/pool.ts';
import { loadDefinitions } from '../../server/fhir/definitions.ts';
import { Repository } from '../../server/fhir/repository.ts';
import type { FhirContext } from '../../server/fhir/request.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { call } from '../support/route.ts';

const BASE = 'http://test.local/fhir';
const CAT = 'http://wardlink.org/fhir/CodeSystem/request-category';
let database: TestDatabase;
let db: Db;
let admin: FhirContext;
const ids: Record<string, string> = {};

function ctxFor(auth: Partial<AuthContext> & { scopes: string[] }): FhirContext {
  const full: AuthContext = { subject: 'u1', clientId: 'c1', jti: 'j1', ...auth };
  return { ...admin, access: new AccessPolicy(full) };
}

const idsIn = (bundle: any, type?: string) =>
  (bundle.entry ?? []).filter((e: any) => !type || e.resource.resourceType === type).map((e: any) => e.resource.id).sort();

beforeAll(async () => {
  loadDefinitions();
  database = await createTestDatabase();
  await migrate(database.connectionString);
  db = createDb(database.connectionString, database.embedded ? 1 : 4, { namedStatements: !database.embedded });
  admin = { repo: new Repository(db, { baseUrl: BASE }, db), fhirBase: BASE, defaultCount: 50, maxCount: 500, maxBinaryBytes: 1024 };
  const make = async (key: string, resource: any) => {
    const r = await call(admin, 'POST', resource.resourceType, resource);
    ids[key] = r.body.id;
  };
  await make('org1', { resourceType: 'Organization', name: 'North' });
  await make('org2', { resourceType: 'Organization', name: 'South' });
  await make('doc', { resourceType: 'Practitioner', name: [{ family: 'Doc' }] });
  await make('alice', { resourceType: 'Patient', name: [{ family: 'Alice' }], managingOrganization: { reference: `Organization/${ids.org1}` } });
  await make('bob', { resourceType: 'Patient', name: [{ family: 'Bob' }], managingOrganization: { reference: `Organization/${ids.org2}` } });
  await make('carol', { resourceType: 'Patient', name: [{ family: 'Carol' }], managingOrganization: { reference: `Organization/${ids.org2}` } });
  const obs = (subject: string, category: string) => ({
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: category }] }],
    code: { text: category },
    subject: { reference: `Patient/${subject}` },
    performer: [{ reference: `Practitioner/${ids.doc}` }],
  });
  await make('aliceVitals', obs(ids.alice, 'vital-signs'));
  await make('aliceLab', obs(ids.alice, 'laboratory'));
  await make('bobVitals', obs(ids.bob, 'vital-signs'));
  const request = (category: string, subject: string, performer?: string) => ({
    resourceType: 'ServiceRequest',
    status: 'active',
    intent: 'order',
    category: [{ coding: [{ system: CAT, code: category }] }],
    subject: { reference: `Patient/${subject}` },
    ...(performer ? { performer: [{ reference: `Organization/${performer}` }] } : {}),
  });
  await make('consult', request('consult', ids.bob));
  await make('transport', request('transport', ids.bob));
  // Carol (South) is referred to North: North's staff may see her.
  await make('referral', request('referral', ids.carol, ids.org1));
});

afterAll(async () => {
  await db.close();
  await database.drop();
});

describe('scopes', () => {
  it('refuses an interaction no scope grants, with 403', async () => {
    const ctx = ctxFor({ scopes: ['user/Patient.rs'] });
    expect((await call(ctx, 'GET', `Patient/${ids.alice}`)).status).toBe(200);
    const create = await call(ctx, 'POST', 'Patient', { resourceType: 'Patient' });
    expect(create.status).toBe(403);
    expect(create.body.issue[0].diagnostics).toContain('create on Patient');
    expect((await call(ctx, 'GET', `Observation/${ids.aliceVitals}`)).status).toBe(403);
  });

  it('maps v1 scopes: read = rs, write = cud', async () => {
    const ctx = ctxFor({ scopes: ['user/Observation.read', 'user/Patient.write'] });
    expect((await call(ctx, 'GET', 'Observation?status=final')).status).toBe(200);
    expect((await call(ctx, 'POST', 'Patient', { resourceType: 'Patient' })).status).toBe(201);
    expect((await call(ctx, 'GET', `Patient/${ids.alice}`)).status).toBe(403);
  });

  it('checks transaction entries one by one: one forbidden entry fails the whole transaction', async () => {
    const ctx = ctxFor({ scopes: ['user/Patient.cruds'] });
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: { resourceType: 'Patient', name: [{ family: 'TxOk' }] }, request: { method: 'POST', url: 'Patient' } },
        { resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' } }, request: { method: 'POST', url: 'Observation' } },
      ],
    };
    const res = await call(ctx, 'POST', '', bundle);
    expect(res.status).toBe(403);
    expect(res.body.issue[0].diagnostics).toMatch(/^Bundle\.entry\[1\]/);
    const found = await call(admin, 'GET', 'Patient?family=TxOk');
    expect(found.body.entry ?? []).toHaveLength(0);
  });
});

describe('patient context', () => {
  const patientCtx = () => ctxFor({ scopes: ['patient/*.rs', 'patient/Observation.c'], patient: ids.alice });

  it('reads only the patient in context and their compartment', async () => {
    const ctx = patientCtx();
    expect((await call(ctx, 'GET', `Patient/${ids.alice}`)).status).toBe(200);
    expect((await call(ctx, 'GET', `Patient/${ids.bob}`)).status).toBe(403);
    expect((await call(ctx, 'GET', `Observation/${ids.aliceLab}`)).status).toBe(200);
    expect((await call(ctx, 'GET', `Observation/${ids.bobVitals}`)).status).toBe(403);
    expect((await call(ctx, 'GET', `Observation/${ids.bobVitals}/_history`)).status).toBe(403);
    // Reference data stays readable.
    expect((await call(ctx, 'GET', `Practitioner/${ids.doc}`)).status).toBe(200);
  });

  it('searches only within the compartment, includes too', async () => {
    const ctx = patientCtx();
    const obs = await call(ctx, 'GET', 'Observation?_include=Observation:subject&_include=Observation:performer');
    expect(idsIn(obs.body, 'Observation')).toEqual([ids.aliceVitals, ids.aliceLab].sort());
    expect(idsIn(obs.body, 'Patient')).toEqual([ids.alice]);
    expect(idsIn(obs.body, 'Practitioner')).toEqual([ids.doc]);
    const patients = await call(ctx, 'GET', 'Patient');
    expect(idsIn(patients.body)).toEqual([ids.alice]);
    const rev = await call(ctx, 'GET', `Patient?_revinclude=Observation:subject`);
    expect(idsIn(rev.body, 'Observation')).toEqual([ids.aliceVitals, ids.aliceLab].sort());
    expect((await call(ctx, 'GET', '_history')).status).toBe(403);
  });

  it('writes only into the compartment', async () => {
    const ctx = patientCtx();
    const mine = await call(ctx, 'POST', 'Observation', { resourceType: 'Observation', status: 'preliminary', code: { text: 'mood' }, subject: { reference: `Patient/${ids.alice}` } });
    expect(mine.status).toBe(201);
    const theirs = await call(ctx, 'POST', 'Observation', { resourceType: 'Observation', status: 'preliminary', code: { text: 'mood' }, subject: { reference: `Patient/${ids.bob}` } });
    expect(theirs.status).toBe(403);
    expect((await call(ctx, 'POST', 'Patient', { resourceType: 'Patient' })).status).toBe(403);
  });

  it('applies a v2 search-parameter restriction to searches and reads', async () => {
    const ctx = ctxFor({ scopes: ['patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs'], patient: ids.alice });
    const res = await call(ctx, 'GET', 'Observation');
    expect(idsIn(res.body)).toEqual([ids.aliceVitals]);
    expect((await call(ctx, 'GET', `Observation/${ids.aliceVitals}`)).status).toBe(200);
    expect((await call(ctx, 'GET', `Observation/${ids.aliceLab}`)).status).toBe(403);
  });

  it('a patient user sees only their own compartment even with user/ scopes', async () => {
    const ctx = ctxFor({ scopes: ['user/*.rs'], role: 'patient', fhirUser: `Patient/${ids.bob}` });
    expect(idsIn((await call(ctx, 'GET', 'Observation')).body)).toEqual([ids.bobVitals]);
    expect((await call(ctx, 'GET', `Patient/${ids.alice}`)).status).toBe(403);
  });
});

describe('roles and organisations', () => {
  it('ambulance crews see transport requests and dispatch data only', async () => {
    const ctx = ctxFor({ scopes: ['user/*.cruds'], role: 'ambulance-crew' });
    expect((await call(ctx, 'GET', `ServiceRequest/${ids.transport}`)).status).toBe(200);
    expect((await call(ctx, 'GET', `ServiceRequest/${ids.consult}`)).status).toBe(403);
    expect(idsIn((await call(ctx, 'GET', 'ServiceRequest')).body)).toEqual([ids.transport]);
    const condition = await call(ctx, 'GET', 'Condition');
    expect(condition.status).toBe(403);
    expect(condition.body.issue[0].diagnostics).toContain('dispatch data only');
  });

  it("staff see their organisation's patients and those shared with it by a referral", async () => {
    const ctx = ctxFor({ scopes: ['user/*.rs'], role: 'clinician', organization: `Organization/${ids.org1}` });
    expect((await call(ctx, 'GET', `Patient/${ids.alice}`)).status).toBe(200);
    expect((await call(ctx, 'GET', `Patient/${ids.carol}`)).status).toBe(200);
    expect((await call(ctx, 'GET', `Patient/${ids.bob}`)).status).toBe(403);
    expect((await call(ctx, 'GET', `Observation/${ids.bobVitals}`)).status).toBe(403);
    const visible = (await call(ctx, 'GET', 'Patient')).body;
    expect(visible.entry.map((e: any) => e.resource.name?.[0]?.family).sort()).toEqual(['Alice', 'Carol']);
    const obs = (await call(ctx, 'GET', 'Observation')).body;
    expect(idsIn(obs)).toEqual(expect.arrayContaining([ids.aliceVitals, ids.aliceLab]));
    expect(obs.entry.every((e: any) => e.resource.subject.reference === `Patient/${ids.alice}`)).toBe(true);
  });

  it('the organisation rule treats a record that names no patient the same in reads and searches', async () => {
    const taskProvenance = await call(admin, 'POST', 'Provenance', {
      resourceType: 'Provenance',
      target: [{ reference: `ServiceRequest/${ids.consult}` }],
      recorded: '2026-01-01T00:00:00Z',
      agent: [{ who: { reference: `Practitioner/${ids.doc}` } }],
    });
    const bobProvenance = await call(admin, 'POST', 'Provenance', {
      resourceType: 'Provenance',
      target: [{ reference: `Patient/${ids.bob}` }],
      recorded: '2026-01-01T00:00:00Z',
      agent: [{ who: { reference: `Practitioner/${ids.doc}` } }],
    });
    const ctx = ctxFor({ scopes: ['user/*.rs'], role: 'clinician', organization: `Organization/${ids.org1}` });
    expect((await call(ctx, 'GET', `Provenance/${taskProvenance.body.id}`)).status).toBe(200);
    expect((await call(ctx, 'GET', `Provenance/${bobProvenance.body.id}`)).status).toBe(403);
    const found = idsIn((await call(ctx, 'GET', `Provenance?_id=${taskProvenance.body.id},${bobProvenance.body.id}`)).body);
    expect(found).toEqual([taskProvenance.body.id]);
  });

  it('only administrators read the audit trail', async () => {
    const clinician = ctxFor({ scopes: ['user/*.rs'], role: 'clinician' });
    expect((await call(clinician, 'GET', 'AuditEvent')).status).toBe(403);
    const adminUser = ctxFor({ scopes: ['user/*.rs'], role: 'admin' });
    expect((await call(adminUser, 'GET', 'AuditEvent')).status).toBe(200);
  });
});
