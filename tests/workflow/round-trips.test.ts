// SQL round trips per workflow write (STANDARDS: one round trip where one will do). Each change is
// one transaction: BEGIN, the reads it needs, one statement per resource written, COMMIT. The
// counts are pinned so that a change adding a query per transition shows up here, not in the
// benchmark (tests/bench/workflow.ts: escalation lateness and transition throughput).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db, Queryable } from '../../server/db/pool.ts';
import { Repository } from '../../server/fhir/repository.ts';
import type { FhirContext } from '../../server/fhir/request.ts';
import { applyAction, createRequest, escalateIfOverdue, setWorkflowRuntime } from '../../server/workflow/engine.ts';
import { BASE, clock, setupWorld, type World } from './support.ts';

let w: World;
const statements: string[] = [];

/** The world's database with every statement sent recorded (BEGIN and COMMIT included). */
function counting(db: Db): Db {
  const wrap = (q: Queryable): Queryable => ({
    query: (sql, params) => {
      statements.push(typeof sql === 'string' ? sql : sql.text);
      return q.query(sql as string, params);
    },
  });
  return {
    pool: db.pool,
    query: wrap(db).query,
    queryFixedPlan: wrap({ query: db.queryFixedPlan }).query,
    transaction: (fn) => {
      statements.push('BEGIN');
      return db.transaction((client) => fn(wrap(client))).finally(() => statements.push('COMMIT/ROLLBACK'));
    },
    close: () => db.close(),
  };
}

function ctxOf(base: FhirContext, db: Db): FhirContext {
  return { ...base, repo: new Repository(db, { baseUrl: BASE }, db) };
}

async function measure<T>(fn: () => Promise<T>): Promise<{ result: T; n: number; list: string[] }> {
  statements.length = 0;
  const result = await fn();
  const list = [...statements];
  return { result, n: list.length, list: list.map((s) => s.replace(/\s+/g, ' ').slice(0, 90)) };
}

beforeAll(async () => {
  w = await setupWorld();
  setWorkflowRuntime({ now: clock.now });
});
afterAll(async () => {
  await w?.close();
});

describe('SQL round trips per workflow change', () => {
  it('stays at one statement per read step and per resource written', async () => {
    const db = counting(w.db);
    const admin = ctxOf(w.admin, db);
    const requester = ctxOf(w.as('requester'), db);
    const head = ctxOf(w.as('cardHead'), db);
    const doc = ctxOf(w.as('cardDoc'), db);
    // BEGIN, Patient, its visibility, department, then ServiceRequest + Task + Provenance +
    // notification in one batched statement, COMMIT (was 9: one statement per resource).
    const create = await measure(() =>
      createRequest(requester, { workflow: 'consult', patient: `Patient/${w.ids.patient}`, performer: `Organization/${w.ids.cardiology}`, priority: 'stat' }),
    );
    expect(create.n, create.list.join('\n')).toBeLessThanOrEqual(6);
    const taskId = create.result.task.id as string;
    // BEGIN, Task + department + ServiceRequest (one statement, rows locked), visibility,
    // membership of the head's department, the new owner exists, Task + Provenance +
    // notification (one statement), COMMIT (was 11).
    const assign = await measure(() => applyAction(head, taskId, 'assign', { owner: `Practitioner/${w.ids.cardDoc}` }));
    expect(assign.n, assign.list.join('\n')).toBeLessThanOrEqual(7);
    // The owner needs no membership lookup (was 10).
    const start = await measure(() => applyAction(doc, taskId, 'start'));
    expect(start.n, start.list.join('\n')).toBeLessThanOrEqual(5);
    // The timer: BEGIN, Task + department + ServiceRequest, the writes, COMMIT (was 8).
    clock.advance(31 * 60_000);
    const esc = await measure(() => escalateIfOverdue(admin, taskId));
    expect(esc.result).toBe('escalated-1');
    expect(esc.n, esc.list.join('\n')).toBeLessThanOrEqual(4);
    const complete = await measure(() => applyAction(doc, taskId, 'complete'));
    expect(complete.n, complete.list.join('\n')).toBeLessThanOrEqual(5);
    // The reads that were folded into one statement still found what they follow: the department's
    // head was told of the escalation, and the ServiceRequest (focus) was completed.
    const notes = await w.admin.repo.db.query<{ json: string }>(`SELECT content::text AS json FROM "Communication" WHERE content->'about'->0->>'reference' = $1`, [`Task/${taskId}`]);
    const escalation = notes.rows.map((r) => JSON.parse(r.json)).find((c) => c.category?.some((cc: any) => cc.coding?.[0]?.code === 'escalated'));
    expect(escalation.recipient.map((r: any) => r.reference)).toContain(`Practitioner/${w.ids.cardHead}`);
    const sr = await w.admin.repo.readResource('ServiceRequest', create.result.serviceRequest.id as string);
    expect((sr as any).status).toBe('completed');
  });
});
