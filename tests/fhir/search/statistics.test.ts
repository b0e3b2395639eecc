// The planner's row estimates for index-table lookups, which decide its join strategies (a 10x
// underestimate of a common code picks nested loops over tens of thousands of rows). Per-column
// statistics multiply the selectivities of resource_type, param, code and system as if they
// were independent; the multi-column dependency statistics (migration 009) tell it that a code
// implies its param and type. Real data shape: one common code among rare ones, mixed with the
// token rows of other params and types.
import type { Observation, Patient, Resource } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDb, type TestDb } from './helpers.ts';

const LOINC = 'http://loinc.org';
const OBSERVATIONS = 3000;
const COMMON = '8867-4'; // heart rate: 80% of them
let t: TestDb;

beforeAll(async () => {
  t = await freshDb();
  const resources: Resource[] = [];
  for (let i = 0; i < 500; i++) {
    resources.push(t.repo.prepareCreate<Patient>({ resourceType: 'Patient', gender: i % 2 ? 'female' : 'male', active: true, name: [{ family: `F${i}` }] }));
  }
  for (let i = 0; i < OBSERVATIONS; i++) {
    const code = i % 5 === 0 ? `rare-${i % 97}` : COMMON;
    resources.push(
      t.repo.prepareCreate<Observation>({
        resourceType: 'Observation',
        status: i % 3 ? 'final' : 'amended',
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
        code: { coding: [{ system: LOINC, code }] },
        subject: { reference: `Patient/${resources[i % 500].id}` },
        effectiveDateTime: new Date(Date.UTC(2024, 0, 1) + i * 3600_000).toISOString(),
      }),
    );
  }
  await t.repo.insertPrepared(resources);
  await t.db.query('ANALYZE idx_token');
  await t.db.query('ANALYZE idx_composite');
}, 120_000);
afterAll(async () => {
  await t?.drop();
});

/** The planner's row estimate and the true count of a WHERE over one table. */
async function estimateAndCount(table: string, where: string): Promise<{ estimate: number; actual: number }> {
  const plan = await t.db.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) SELECT 1 FROM ${table} WHERE ${where}`);
  const json = plan.rows[0]['QUERY PLAN'];
  const root = (typeof json === 'string' ? JSON.parse(json) : json) as { Plan: { 'Plan Rows': number } }[];
  const count = await t.db.query<{ n: string }>(`SELECT count(*) AS n FROM ${table} WHERE ${where}`);
  return { estimate: root[0].Plan['Plan Rows'], actual: Number(count.rows[0].n) };
}

describe('row estimates of index-table lookups', () => {
  it('a common code with its system: within 2x of the true count (token rows)', async () => {
    const r = await estimateAndCount('idx_token', `resource_type = 'Observation' AND param = 'code' AND code = '${COMMON}' AND system = '${LOINC}'`);
    expect(r.actual).toBe(OBSERVATIONS * 0.8);
    expect(r.estimate).toBeGreaterThan(r.actual / 2);
    expect(r.estimate).toBeLessThan(r.actual * 2);
  });

  it('a common code of the code+date pair rows: within 2x', async () => {
    const r = await estimateAndCount('idx_composite', `resource_type = 'Observation' AND param = 'code+date' AND code1 = '${COMMON}' AND system1 = '${LOINC}'`);
    expect(r.actual).toBe(OBSERVATIONS * 0.8);
    expect(r.estimate).toBeGreaterThan(r.actual / 2);
    expect(r.estimate).toBeLessThan(r.actual * 2);
  });

  it('a code shared by no other param (gender): within 2x', async () => {
    const r = await estimateAndCount('idx_token', `resource_type = 'Patient' AND param = 'gender' AND code = 'female'`);
    expect(r.actual).toBe(250);
    expect(r.estimate).toBeGreaterThan(r.actual / 2);
    expect(r.estimate).toBeLessThan(r.actual * 2);
  });
});
