// The outbox relay over a real database: resource writes through the repository reach the
// listeners in order, each once, and the rows are marked processed; failures are redelivered
// without breaking a resource's order; two relays share the outbox; old rows are pruned.
import type { Observation, Patient } from '@medplum/fhirtypes';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../server/fhir/definitions.ts';
import { Repository } from '../../server/fhir/repository.ts';
import { createOutboxRelay, type OutboxRelay, type OutboxRelayOptions, type ResourceEvent } from '../../server/jobs/outbox-relay.ts';
import { log, migratedDb, sleep, waitFor, type MigratedDb } from './support.ts';

let m: MigratedDb;
let repo: Repository;
const relays: OutboxRelay[] = [];

function newRelay(options: Partial<OutboxRelayOptions> = {}): OutboxRelay {
  const r = createOutboxRelay({ db: m.db, log, pollMs: 20, ...options });
  relays.push(r);
  return r;
}

async function pendingRows(): Promise<number> {
  const res = await m.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM outbox WHERE processed_at IS NULL`);
  return res.rows[0].n;
}

/** Marks everything processed so each test starts from a quiet outbox. */
async function settle(): Promise<void> {
  await m.db.query(`UPDATE outbox SET processed_at = clock_timestamp(), claimed_until = NULL WHERE processed_at IS NULL`);
}

const patient = (family: string): Patient => ({ resourceType: 'Patient', name: [{ family }] });

beforeAll(async () => {
  loadDefinitions();
  m = await migratedDb();
  repo = new Repository(m.db, { baseUrl: 'http://wardlink.test/fhir' }, m.db);
});
afterEach(async () => {
  await Promise.all(relays.splice(0).map((r) => r.stop()));
  await settle();
});
afterAll(() => m.close());

for (const exclusive of [false, true]) describe(exclusive ? 'outbox relay, exclusive (embedded database)' : 'outbox relay', () => {
  const relay = (options: Partial<OutboxRelayOptions> = {}) => newRelay({ exclusive, ...options });

  it('delivers each resource change to the listeners once, in order, and marks the rows processed', async () => {
    const r = relay();
    const events: ResourceEvent[] = [];
    const second: string[] = [];
    r.onResourceEvent((e) => {
      events.push(e);
    });
    const off = r.onResourceEvent(async (e) => {
      second.push(e.eventId);
    });
    r.start();

    const p = await repo.create(patient('Outbox'));
    await repo.update({ ...p, active: true });
    await repo.update({ ...p, active: false });
    const obs = await repo.create<Observation>({ resourceType: 'Observation', status: 'final', code: { text: 'pulse' } });
    await repo.delete('Patient', p.id as string);

    await waitFor(() => events.length === 5, 5000, 'five events');
    await sleep(100);
    expect(events).toHaveLength(5);
    expect(new Set(events.map((e) => e.eventId)).size).toBe(5);
    const ids = events.map((e) => BigInt(e.eventId));
    expect([...ids].sort((a, b) => (a < b ? -1 : 1))).toEqual(ids);
    expect(events.filter((e) => e.resourceType === 'Patient').map((e) => [e.action, e.version])).toEqual([
      ['create', 1],
      ['update', 2],
      ['update', 3],
      ['delete', 4],
    ]);
    expect(events.find((e) => e.resourceType === 'Observation')).toMatchObject({ resourceId: obs.id, action: 'create', version: 1, attempt: 1 });
    expect(events.every((e) => e.resourceId && /^\d{4}-\d\d-\d\dT.*Z$/.test(e.at))).toBe(true);
    expect(second).toEqual(events.map((e) => e.eventId));
    await waitFor(async () => (await pendingRows()) === 0, 2000, 'rows marked processed');

    off();
    await repo.create(patient('AfterOff'));
    await waitFor(() => events.length === 6, 3000, 'the sixth event');
    expect(second).toHaveLength(5);
  });

  it('delivers nothing for a rolled-back transaction, and a committed one after its commit', async () => {
    const r = relay();
    const events: ResourceEvent[] = [];
    r.onResourceEvent((e) => {
      events.push(e);
    });
    r.start();
    await expect(
      repo.transaction(async (tx) => {
        await tx.create(patient('RolledBack'));
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    const created = await repo.transaction(async (tx) => {
      const a = await tx.create(patient('Committed'));
      const b = await tx.create(patient('Committed2'));
      return [a.id, b.id];
    });
    await waitFor(() => events.length === 2, 3000, 'two events');
    await sleep(100);
    expect(events.map((e) => e.resourceId)).toEqual(created);
  });

  it('redelivers after a listener fails, holding back later events of that resource only', async () => {
    const r = relay({ retryMs: 150 });
    const delivered: string[] = [];
    let failOnce = true;
    const a = await repo.create(patient('Flaky'));
    await repo.create(patient('Steady'));
    await repo.update({ ...a, active: true });
    r.onResourceEvent((e) => {
      const label = `${e.resourceId === a.id ? 'A' : 'B'}${e.version}#${e.attempt}`;
      if (e.resourceId === a.id && e.version === 1 && failOnce) {
        failOnce = false;
        throw new Error('listener down');
      }
      delivered.push(label);
    });
    r.start();
    await waitFor(() => delivered.length === 3, 4000, 'all three events');
    // B flows at once; A's create comes again (second attempt) before A's update.
    expect(delivered[0]).toBe('B1#1');
    expect(delivered.slice(1)).toEqual(['A1#2', 'A2#1']);
    await waitFor(async () => (await pendingRows()) === 0, 2000, 'rows marked processed');
  });

  it('sets an event aside after maxAttempts so it cannot block its resource forever', async () => {
    const r = relay({ retryMs: 20, maxAttempts: 2 });
    const p = await repo.create(patient('Poison'));
    await repo.update({ ...p, active: true });
    const seen: string[] = [];
    r.onResourceEvent((e) => {
      if (e.resourceId !== p.id) return;
      seen.push(`${e.version}#${e.attempt}`);
      if (e.version === 1) throw new Error('poison');
    });
    r.start();
    await waitFor(() => seen.includes('2#1'), 4000, 'the later event');
    expect(seen).toEqual(['1#1', '1#2', '2#1']);
    const res = await m.db.query<{ version: number; last_error: string | null }>(
      `SELECT version, last_error FROM outbox WHERE resource_id = $1 ORDER BY id`,
      [p.id],
    );
    expect(res.rows[0].last_error).toContain('poison');
    expect(res.rows[1].last_error).toBeNull();
  });
});

describe('outbox relay with several processes', () => {
  const relay = newRelay;

  it('takes over rows whose claim lapsed, and waits for a live claim on an earlier event of the resource', async () => {
    const p = await repo.create(patient('Claimed'));
    await repo.update({ ...p, active: true });
    const q = await repo.create(patient('Abandoned'));
    // Another process holds p's first event for 400 ms more; a dead one held q's.
    const claimedAt = Date.now();
    await m.db.query(
      `UPDATE outbox SET claimed_by = 'other', claimed_until = clock_timestamp() + interval '400 milliseconds', attempts = 1
       WHERE resource_id = $1 AND version = 1`,
      [p.id],
    );
    await m.db.query(
      `UPDATE outbox SET claimed_by = 'dead', claimed_until = clock_timestamp() - interval '1 second', attempts = 1 WHERE resource_id = $1`,
      [q.id],
    );
    const r = relay();
    const seen: { label: string; at: number }[] = [];
    r.onResourceEvent((e) => {
      seen.push({ label: `${e.resourceId === p.id ? 'P' : 'Q'}${e.version}#${e.attempt}`, at: Date.now() });
    });
    r.start();
    await waitFor(() => seen.length === 3, 4000, 'three events');
    expect(seen.map((s) => s.label)).toEqual(['Q1#2', 'P1#2', 'P2#1']);
    // p's update did not overtake its create, which waited for the other claim to lapse.
    expect(seen[1].at - claimedAt).toBeGreaterThanOrEqual(390);
  });

  it('two relays on one database deliver each event once and keep each resource in order', async () => {
    const ps = await Promise.all(['One', 'Two', 'Three'].map((n) => repo.create(patient(n))));
    for (let v = 0; v < 8; v++) for (const p of ps) await repo.update({ ...p, active: v % 2 === 0 });
    // 3 creates + 24 updates
    const spans: { relay: string; key: string; version: number; start: number; end: number }[] = [];
    let clock = 0;
    for (const name of ['r1', 'r2']) {
      const r = relay({ batchSize: 4 });
      r.onResourceEvent(async (e) => {
        const start = ++clock;
        await sleep(2);
        spans.push({ relay: name, key: `${e.resourceType}/${e.resourceId}`, version: e.version, start, end: ++clock });
      });
    }
    for (const r of relays) r.start();
    await waitFor(() => spans.length >= 27, 8000, 'all 27 events');
    await sleep(150);
    expect(spans).toHaveLength(27);
    for (const p of ps) {
      const mine = spans.filter((s) => s.key === `Patient/${p.id}`).sort((x, y) => x.start - y.start);
      expect(mine.map((s) => s.version)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
      for (let i = 1; i < mine.length; i++) expect(mine[i].start).toBeGreaterThan(mine[i - 1].end);
    }
    expect(await pendingRows()).toBe(0);
  });

  it('prunes processed rows older than the retention and keeps pending ones', async () => {
    await repo.create(patient('Old'));
    await settle();
    await m.db.query(`UPDATE outbox SET processed_at = processed_at - interval '2 hours' WHERE processed_at IS NOT NULL`);
    await repo.create(patient('Pending'));
    const r = relay({ retentionMs: 3600_000 });
    expect(await r.prune()).toBeGreaterThan(0);
    const res = await m.db.query<{ processed: number; pending: number }>(
      `SELECT count(*) FILTER (WHERE processed_at IS NOT NULL)::int AS processed, count(*) FILTER (WHERE processed_at IS NULL)::int AS pending FROM outbox`,
    );
    expect(res.rows[0]).toEqual({ processed: 0, pending: 1 });
  });
});
