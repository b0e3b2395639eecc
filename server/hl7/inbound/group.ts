// Group commit for original-mode messages: messages that arrive (on any connection) while
// earlier ones are being written share one transaction, so they share one WAL flush, one set of
// round trips and one statement for all their resources. The ACK AA of each still goes only
// after that commit. Measured on bench:hl7 (2 cores): with PostgreSQL's commit flush switched off
// the feed ran 25% faster, so the flush per message was the largest cost left that is not the
// writing itself; grouping pays it once per group.
//
// A group holds messages that share nothing: no conditional lock or clock key (two messages
// about one patient go one after the other, in arrival order) and no (sender, MSH-10). If
// anything in a group fails (a message refused, a resend, a database error), the group rolls
// back whole and each of its messages is then processed on its own, as if never grouped, and
// gets its own answer. A message that arrives with nothing waiting is a group of one.
import type pg from 'pg';
import { Repository } from '../../fhir/repository.ts';
import { PipelinedTransaction } from '../pipelined.ts';
import * as store from '../store.ts';
import type { MessagePlan } from './plan.ts';
import { claimOf, matchPlans, prepareTogether, staleNote, writeAndCommit, writesFor, type PlanBatch, type PlanWrites } from './write.ts';

/** One message waiting for its group. */
export interface GroupItem {
  plan: MessagePlan;
  row: store.NewMessage;
  /** The ACK AA it gets once committed. */
  ack: string;
}

/** What a committed message produced. */
export interface GroupResult {
  messageId: string;
  resources: string[];
}

interface Waiting extends GroupItem {
  keys: string[];
  resolve(r: GroupResult | undefined): void;
}

export interface GroupCommitterOptions {
  pool: pg.Pool;
  fhirBase: string;
  /** Groups written at once (each on its own connection). */
  concurrency: number;
  /** Messages in one group at most. */
  maxGroup: number;
}

export class GroupCommitter {
  private readonly queue: Waiting[] = [];
  private running = 0;
  private readonly options: GroupCommitterOptions;

  constructor(options: GroupCommitterOptions) {
    this.options = options;
  }

  /**
   * Commits the message (write.ts writableAtOnce) with others that are waiting; resolves to
   * what it produced, or to undefined when its group failed and it must be processed on its own.
   */
  submit(item: GroupItem): Promise<GroupResult | undefined> {
    const keys = [...item.plan.lockKeys, ...item.plan.clockKeys.map((k) => `clock:${k}`), `msg:${item.row.sender}|${item.row.controlId ?? ''}`];
    return new Promise((resolve) => {
      this.queue.push({ ...item, keys, resolve });
      this.pump();
    });
  }

  private pump(): void {
    // With a group being written, the next starts beside it only when it would not be one
    // message alone (measured: mostly groups of one and little gained otherwise).
    while (this.queue.length && (this.running === 0 || (this.running < this.options.concurrency && this.queue.length >= 2))) {
      const group = this.take();
      this.running++;
      void this.run(group).finally(() => {
        this.running--;
        this.pump();
      });
    }
  }

  /** The first waiting message and those after it that share no key with the group, in order. */
  private take(): Waiting[] {
    const group: Waiting[] = [];
    const taken = new Set<string>();
    for (let i = 0; i < this.queue.length && group.length < this.options.maxGroup; ) {
      const w = this.queue[i];
      if (w.keys.some((k) => taken.has(k))) {
        // A later message with one of its keys must not overtake it either.
        for (const k of w.keys) taken.add(k);
        i++;
        continue;
      }
      for (const k of w.keys) taken.add(k);
      group.push(w);
      this.queue.splice(i, 1);
    }
    return group;
  }

  private async run(group: Waiting[]): Promise<void> {
    let results: GroupResult[];
    try {
      results = await this.commit(group);
    } catch {
      // Rolled back: each on its own, with its own answer.
      for (const w of group) w.resolve(undefined);
      return;
    }
    group.forEach((w, i) => w.resolve(results[i]));
  }

  /** How often recent groups held only messages about resources not stored yet (moving average). */
  private newRate = 1;

  /**
   * While PostgreSQL claims and matches, the writes are prepared (validated, index rows
   * computed) as if no message matched a stored resource, the common case of a feed of
   * admissions: that work then leaves the group's critical path. Used only if the matches say
   * so; skipped while most groups update stored resources (the guess would be work thrown away).
   */
  private async guessAllNew(repo: Repository, group: Waiting[]): Promise<PlanBatch[] | undefined> {
    if (this.newRate < 0.5) return undefined;
    // Let the claims and matches go out first (the socket is corked until this turn ends).
    await new Promise((resolve) => setImmediate(resolve));
    try {
      const writes = group.map((w) => writesFor(w.plan, new Set(), []));
      return writes.every(Boolean) ? prepareTogether(repo, writes as PlanWrites[]) : undefined;
    } catch {
      return undefined; // refused: found again (and answered) the usual way
    }
  }

  /** The group in two round trips of three statements each, as process.ts does for one message. */
  private async commit(group: Waiting[]): Promise<GroupResult[]> {
    const tx = await PipelinedTransaction.open(this.options.pool);
    try {
      const repo = new Repository(tx, { baseUrl: this.options.fhirBase });
      // The claims first, then the match (which sees what a holder of the locks committed).
      const claims = store.reserveAndClaimAll(tx, group.map((w) => claimOf(w.plan)));
      const matches = matchPlans(repo, group.map((w) => w.plan));
      for (const p of [claims, matches]) p.catch(() => {});
      const guess = await this.guessAllNew(repo, group);
      const claimed = await claims;
      const matched = await matches;
      const allNew = matched.every((m) => m.every((found) => found.length === 0)) && claimed.every((c) => c.stale.size === 0);
      this.newRate = 0.8 * this.newRate + 0.2 * (allNew ? 1 : 0);
      let planned: PlanBatch[];
      if (guess && allNew) planned = guess;
      else {
        const writes = group.map((w, i) => writesFor(w.plan, claimed[i].stale, matched[i]));
        if (writes.some((w) => !w)) throw new Error('a plan cannot be written in one statement');
        planned = prepareTogether(repo, writes as PlanWrites[]);
      }
      // The notes are not put on the plan until the commit: if the group fails, the message is
      // processed again on its own.
      const resources = await writeAndCommit(
        tx,
        (last) => tx.commitWith(last),
        repo,
        group.map((w, i) => ({
          id: claimed[i].id,
          row: w.row,
          outcome: { status: 'processed', ackCode: 'AA', ack: w.ack, notes: [...w.plan.notes, ...staleNote(claimed[i].stale)] },
          planned: planned[i],
        })),
      );
      group.forEach((w, i) => w.plan.notes.push(...staleNote(claimed[i].stale)));
      return group.map((_, i) => ({ messageId: claimed[i].id, resources: resources[i] }));
    } catch (e) {
      await tx.rollback();
      throw e;
    } finally {
      tx.release();
    }
  }
}
