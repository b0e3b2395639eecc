// Repository.writeBatch: several resources of several types, new and updated, in one statement
// (one write per type and kind, one history, outbox and index insert each). Each must come out
// as its own create or update would leave it: versions, history with its method, outbox
// actions, index rows (the updated one's old rows gone). Runs on the embedded database as well.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import type { Encounter, Patient } from '@medplum/fhirtypes';
import { migrate } from '../../server/db/migrate.ts';
import { createDb, type Db } from '../../server/db/pool.ts';
import { loadDefinitions } from '../../server/fhir/definitions.ts';
import { FhirError } from '../../server/fhir/outcome.ts';
import { Repository } from '../../server/fhir/repository.ts';
import { findMatches } from '../../server/fhir/search/search.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';

let database: TestDatabase;
let db: Db;
let repo: Repository;

beforeAll(async () => {
  loadDefinitions();
  database = await createTestDatabase();
  await migrate(database.connectionString);
  db = createDb(database.connectionString, 2);
  repo = new Repository(db, { baseUrl: 'http://test/fhir' }, db);
});
afterAll(async () => {
  await db?.close();
  await database?.drop();
});

const patient = (mrn: string, family: string): Patient => ({
  resourceType: 'Patient',
  id: randomUUID(),
  identifier: [{ system: 'urn:batch', value: mrn }],
  name: [{ family }],
});
const ids = async (type: string, params: [string, string][]) => (await findMatches(db, type, params, 10)).map((m) => m.id);

describe('Repository.writeBatch', () => {
  it('writes new and updated resources of several types as their own creates and updates would', async () => {
    const stored = await repo.create(patient('B-1', 'Before'));
    const renamed = { ...patient('B-1', 'After'), id: stored.id };
    const [a, b] = [patient('B-2', 'Alpha'), patient('B-3', 'Beta')];
    const encounter: Encounter = { resourceType: 'Encounter', id: randomUUID(), status: 'finished', class: { code: 'IMP' }, subject: { reference: `Patient/${a.id}` } };
    const results = await repo.writeBatch([
      { resource: a, kind: 'insert' },
      { resource: encounter, kind: 'insert' },
      { resource: renamed, kind: 'upsert' },
      { resource: b, kind: 'insert' },
    ]);
    expect(results.map((r) => [r.resource.id, r.resource.meta?.versionId, r.created])).toEqual([
      [a.id, '1', true],
      [encounter.id, '1', true],
      [renamed.id, '2', false],
      [b.id, '1', true],
    ]);
    // Index rows: each new one is found, the updated one by its new name only.
    expect(await ids('Patient', [['identifier', 'urn:batch|B-2']])).toEqual([a.id]);
    expect(await ids('Patient', [['name', 'Beta']])).toEqual([b.id]);
    expect(await ids('Patient', [['name', 'After']])).toEqual([renamed.id]);
    expect(await ids('Patient', [['name', 'Before']])).toEqual([]);
    expect(await ids('Encounter', [['subject', `Patient/${a.id}`]])).toEqual([encounter.id]);
    // History with the method of each, and the stored content stamped with its version.
    const history = await db.query<{ id: string; version: number; method: string; v: string }>(
      `SELECT id, version, method, content->'meta'->>'versionId' AS v FROM resource_history WHERE id = ANY($1::text[]) ORDER BY id, version`,
      [[a.id, renamed.id, encounter.id]],
    );
    const methods = Object.fromEntries(history.rows.map((r) => [`${r.id}/${r.version}`, [r.method, r.v]]));
    expect(methods).toEqual({
      [`${a.id}/1`]: ['POST', '1'],
      [`${encounter.id}/1`]: ['POST', '1'],
      [`${renamed.id}/1`]: ['POST', '1'],
      [`${renamed.id}/2`]: ['PUT', '2'],
    });
    const read = await repo.readResource<Patient>('Patient', renamed.id as string);
    expect(read).toMatchObject({ name: [{ family: 'After' }], meta: { versionId: '2' } });
    // One outbox event each, create or update.
    const outbox = await db.query<{ resource_id: string; action: string }>(
      `SELECT resource_id, action FROM outbox WHERE resource_id = ANY($1::text[]) AND version = (SELECT max(version) FROM outbox o WHERE o.resource_id = outbox.resource_id)`,
      [[a.id, b.id, renamed.id, encounter.id]],
    );
    expect(Object.fromEntries(outbox.rows.map((r) => [r.resource_id, r.action]))).toEqual({
      [a.id as string]: 'create',
      [b.id as string]: 'create',
      [renamed.id as string]: 'update',
      [encounter.id as string]: 'create',
    });
  });

  it('refuses a batch that names one resource twice, before anything is written', async () => {
    const p = patient('B-4', 'Twice');
    const error = await repo.writeBatch([
      { resource: p, kind: 'insert' },
      { resource: { ...p, name: [{ family: 'Again' }] }, kind: 'upsert' },
    ]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FhirError);
    expect((error as FhirError).status).toBe(400);
    expect(await ids('Patient', [['identifier', 'urn:batch|B-4']])).toEqual([]);
  });

  it('indexes values with quotes, backslashes, commas, braces and the word NULL exactly as given', async () => {
    // The index columns go to PostgreSQL as array literals built by arrayLiteral (db/pool.ts).
    const awkward = ['O"Brien\\Jr', 'Smith, {jr}', 'NULL'];
    const p: Patient = { ...patient('B-5', awkward[0]), name: [{ family: awkward[0], given: awkward.slice(1) }], identifier: [{ system: 'urn:batch', value: 'a"b\\c,{d}' }] };
    await repo.writeBatch([{ resource: p, kind: 'insert' }]);
    // In search values a backslash, ',', '$' and '|' are escaped with a backslash (FHIR search's rule).
    const escaped = (v: string) => v.replace(/[\\,$|]/g, '\\$&');
    expect(await ids('Patient', [['family:exact', escaped(awkward[0])]])).toEqual([p.id]);
    expect(await ids('Patient', [['given:exact', escaped(awkward[1])]])).toEqual([p.id]);
    expect(await ids('Patient', [['given:exact', 'NULL']])).toEqual([p.id]);
    expect(await ids('Patient', [['identifier', `urn:batch|${escaped('a"b\\c,{d}')}`]])).toEqual([p.id]);
    const given = await db.query<{ exact: string | null }>(
      "SELECT exact FROM idx_string WHERE resource_id = $1 AND param = 'given' ORDER BY exact",
      [p.id],
    );
    expect(given.rows.map((r) => r.exact)).not.toContain(null);
  });
});
