// One behaviour suite for the JobQueue interface, declared once and run against both
// implementations (queue-inprocess.test.ts, queue-bullmq.test.ts, which vitest runs in
// parallel): BullMQ on a real Redis (own key prefix per run, deleted afterwards) and the
// in-process queue on a fresh database (real PostgreSQL with DATABASE_URL, in-memory PGlite).
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createBullmqQueue, type BullmqJobQueue } from '../../server/jobs/bullmq.ts';
import { InProcessJobQueue } from '../../server/jobs/inprocess.ts';
import type { Job, JobQueue } from '../../server/jobs/queue.ts';
import { gate, log, migratedDb, sleep, uniquePrefix, waitFor, type MigratedDb } from './support.ts';

export interface Harness {
  setup(): Promise<void>;
  /** A new queue runtime over the shared storage: another process, or the same one restarted. */
  create(): JobQueue;
  /** Ids of the jobs of queue kept as failed. */
  failed(queue: string): Promise<string[]>;
  teardown(): Promise<void>;
}

export function inProcessHarness(): Harness {
  let m: MigratedDb;
  return {
    async setup() {
      m = await migratedDb();
    },
    create: () => new InProcessJobQueue({ db: m.db, log, pollMs: 100 }),
    async failed(queue) {
      const res = await m.db.query<{ id: string }>(`SELECT id FROM job WHERE queue = $1 AND failed_at IS NOT NULL ORDER BY id`, [queue]);
      return res.rows.map((r) => r.id);
    },
    teardown: () => m.close(),
  };
}

export function bullmqHarness(redisUrl: string): Harness {
  const prefix = uniquePrefix();
  let inspector: BullmqJobQueue;
  return {
    async setup() {
      inspector = createBullmqQueue({ redisUrl, log, prefix });
    },
    create: () => createBullmqQueue({ redisUrl, log, prefix }),
    async failed(queue) {
      const jobs = await inspector.queue(queue).getFailed();
      return jobs.map((j) => j.deduplicationId ?? String(j.id)).sort();
    },
    async teardown() {
      await inspector.close();
      // Leave nothing behind in the shared Redis.
      const redis = new Redis(redisUrl);
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await redis.del(...keys);
      } while (cursor !== '0');
      await redis.quit();
    },
  };
}

let queueCounter = 0;
const newQueueName = () => `q${++queueCounter}-${Date.now().toString(36)}`;

/** Declares the behaviour suite for one implementation; skip (a reason) skips it visibly. */
export function jobQueueSuite(name: string, harness: () => Harness, skip?: string): void {
  const title = skip ? `${name} [skipped: ${skip}]` : name;
  describe.skipIf(skip !== undefined)(title, () => {
    const h = harness();
    const open: JobQueue[] = [];
    const runtime = (): JobQueue => {
      const q = h.create();
      open.push(q);
      return q;
    };

    beforeAll(() => h.setup());
    afterEach(async () => {
      await Promise.all(open.splice(0).map((q) => q.close()));
    });
    afterAll(() => h.teardown());

    it('runs a delayed job after its delay and not before', async () => {
      const q = runtime();
      const name = newQueueName();
      const fired: { data: unknown; at: number }[] = [];
      q.process<{ n: number }>(name, async (job) => {
        fired.push({ data: job.data, at: Date.now() });
      });
      const addedAt = Date.now();
      const id = await q.add(name, { n: 1 }, { delayMs: 400 });
      expect(typeof id).toBe('string');
      await sleep(250);
      expect(fired).toEqual([]);
      await waitFor(() => fired.length === 1, 3000, 'the delayed job');
      expect(fired[0].data).toEqual({ n: 1 });
      expect(fired[0].at - addedAt).toBeGreaterThanOrEqual(395);
      expect(fired[0].at - addedAt).toBeLessThan(2500);
      await sleep(150);
      expect(fired).toHaveLength(1);
    });

    it('replaces a pending delayed job re-added with the same jobId: only the newer runs', async () => {
      const q = runtime();
      const name = newQueueName();
      const fired: Job<{ n: number }>[] = [];
      q.process<{ n: number }>(name, async (job) => {
        fired.push(job);
      });
      const addedAt = Date.now();
      expect(await q.add(name, { n: 1 }, { jobId: 'Task/1', delayMs: 500 })).toBe('Task/1');
      expect(await q.add(name, { n: 2 }, { jobId: 'Task/1', delayMs: 800 })).toBe('Task/1');
      await sleep(650 - (Date.now() - addedAt));
      expect(fired).toEqual([]); // the first timer (500 ms) is gone
      await waitFor(() => fired.length === 1, 3000, 'the newer job');
      expect(fired[0].data).toEqual({ n: 2 });
      expect(fired[0].id).toBe('Task/1');
      await sleep(200);
      expect(fired).toHaveLength(1);
    });

    it('replaces a waiting (already due) job re-added with the same jobId', async () => {
      const q = runtime();
      const name = newQueueName();
      await q.add(name, { n: 1 }, { jobId: 'due' });
      await q.add(name, { n: 2 }, { jobId: 'due' });
      const fired: unknown[] = [];
      q.process(name, async (job) => {
        fired.push(job.data);
      });
      await waitFor(() => fired.length === 1, 3000, 'the job');
      await sleep(200);
      expect(fired).toEqual([{ n: 2 }]);
    });

    it('keeps a job re-added while the one with its id runs, and runs it afterwards', async () => {
      const q = runtime();
      const name = newQueueName();
      const release = gate();
      const started: unknown[] = [];
      const finished: unknown[] = [];
      q.process<{ n: number }>(name, async (job) => {
        started.push(job.data);
        if (job.data.n === 1) await release.promise;
        finished.push(job.data);
      });
      await q.add(name, { n: 1 }, { jobId: 'timer' });
      await waitFor(() => started.length === 1, 3000, 'the first job to start');
      await q.add(name, { n: 2 }, { jobId: 'timer' });
      await q.add(name, { n: 3 }, { jobId: 'timer' }); // replaces n: 2 (only the latest is kept)
      await sleep(150);
      expect(started).toEqual([{ n: 1 }]); // never two runs of one id at once
      release.open();
      await waitFor(() => finished.length === 2, 3000, 'the newer job');
      await sleep(150);
      expect(finished).toEqual([{ n: 1 }, { n: 3 }]);
    });

    it('remove cancels a pending job', async () => {
      const q = runtime();
      const name = newQueueName();
      const fired: unknown[] = [];
      q.process(name, async (job) => {
        fired.push(job.data);
      });
      await q.add(name, { n: 1 }, { jobId: 'cancel-me', delayMs: 500 });
      await q.add(name, { n: 2 }, { jobId: 'keep-me', delayMs: 500 });
      expect(await q.remove(name, 'cancel-me')).toBe(true);
      expect(await q.remove(name, 'never-added')).toBe(false);
      await waitFor(() => fired.length === 1, 3000, 'the kept job');
      await sleep(150);
      expect(fired).toEqual([{ n: 2 }]);
    });

    it('retries a failing job with exponential backoff, then succeeds', async () => {
      const q = runtime();
      const name = newQueueName();
      const tries: { attempt: number; at: number }[] = [];
      q.process(name, async (job) => {
        tries.push({ attempt: job.attempt, at: Date.now() });
        expect(job.attempts).toBe(4);
        if (job.attempt < 3) throw new Error(`flaky ${job.attempt}`);
      });
      await q.add(name, { n: 1 }, { jobId: 'flaky', attempts: 4, backoffMs: 100 });
      await waitFor(() => tries.length === 3, 4000, 'three tries');
      await sleep(300);
      expect(tries.map((t) => t.attempt)).toEqual([1, 2, 3]);
      expect(tries[1].at - tries[0].at).toBeGreaterThanOrEqual(95); // 100 ms
      expect(tries[2].at - tries[1].at).toBeGreaterThanOrEqual(195); // 200 ms
      expect(await h.failed(name)).toEqual([]);
    });

    it('keeps a job that ran out of attempts as failed, for inspection', async () => {
      const q = runtime();
      const name = newQueueName();
      let tries = 0;
      q.process(name, async () => {
        tries++;
        throw new Error('always');
      });
      await q.add(name, { n: 1 }, { jobId: 'doomed', attempts: 2, backoffMs: 50 });
      await waitFor(async () => (await h.failed(name)).length === 1, 4000, 'the job to be failed');
      expect(tries).toBe(2);
      expect(await h.failed(name)).toEqual(['doomed']);
    });

    it('a pending job survives a restart of the runtime', async () => {
      const name = newQueueName();
      const first = h.create();
      await first.add(name, { n: 'survivor' }, { jobId: 'sla:Task/9:3', delayMs: 300 });
      await first.close();
      const fired: Job<unknown>[] = [];
      const second = runtime();
      second.process(name, async (job) => {
        fired.push(job);
      });
      await waitFor(() => fired.length === 1, 4000, 'the job after the restart');
      expect(fired[0].data).toEqual({ n: 'survivor' });
      expect(fired[0].id).toBe('sla:Task/9:3');
    });

    it('two runtimes sharing the storage run each job exactly once', async () => {
      const a = runtime();
      const b = runtime();
      const name = newQueueName();
      const runs = new Map<string, string[]>();
      const handler = (who: string) => async (job: Job<{ i: number }>) => {
        runs.set(String(job.data.i), [...(runs.get(String(job.data.i)) ?? []), who]);
        await sleep(10);
      };
      a.process(name, handler('a'), { concurrency: 2 });
      b.process(name, handler('b'), { concurrency: 2 });
      for (let i = 0; i < 20; i++) await (i % 2 ? a : b).add(name, { i }, { jobId: `j${i}`, delayMs: i % 3 === 0 ? 100 : 0 });
      await waitFor(() => runs.size === 20, 5000, 'all 20 jobs');
      await sleep(300);
      expect([...runs.values()].every((who) => who.length === 1)).toBe(true);
      const byA = [...runs.values()].filter((w) => w[0] === 'a').length;
      expect(byA + [...runs.values()].filter((w) => w[0] === 'b').length).toBe(20);
    });

    it('close waits for running handlers to finish', async () => {
      const q = h.create();
      const name = newQueueName();
      let finished = false;
      let started = false;
      q.process(name, async () => {
        started = true;
        await sleep(300);
        finished = true;
      });
      await q.add(name, {}, { jobId: 'slow' });
      await waitFor(() => started, 3000, 'the handler to start');
      await q.close();
      expect(finished).toBe(true);
      // It completed, so a new runtime does not run it again.
      const again: unknown[] = [];
      const next = runtime();
      next.process(name, async (job) => {
        again.push(job.data);
      });
      await sleep(300);
      expect(again).toEqual([]);
    });
  });
}
