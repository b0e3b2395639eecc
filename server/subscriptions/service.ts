// The subscription engine: keeps the Subscriptions in memory, turns each outbox batch into
// numbered notification events for the subscriptions whose topic, filters and owner's access
// each event meets, and delivers them: websocket at once through the hub (websocket.ts),
// rest-hook through the job queue (one cursor job per subscription, so order is kept and
// retries back off).
//
// The hot path costs a fixed number of queries per outbox batch, not per event (matching.ts
// has the in-memory part): one for Subscription changes other processes made (the registry
// sync, from the outbox itself), one reading the focus versions of the whole batch, one
// numbering every match of the batch (gap-free and in outbox order per subscription), and the
// context resources only when a restricted owner's access must be checked on them.
// Websocket pushes go out before any rest-hook work; rest-hook jobs are triggered by a
// coalescing pump that the relay does not wait for (a periodic sweep re-triggers what a crash
// left undelivered, so nothing numbered is stranded).
import { matchesSearchRequest, parseSearchRequest, type SearchRequest } from '@medplum/core';
import type { Resource, Subscription } from '@medplum/fhirtypes';
import { AccessPolicy, isUnrestricted, type Restriction } from '../auth/access.ts';
import type { AuthContext } from '../auth/context.ts';
import type { Config } from '../config.ts';
import type { Db } from '../db/pool.ts';
import { instantSql } from '../db/pool.ts';
import { assertVisible } from '../fhir/authorize.ts';
import { FhirError } from '../fhir/outcome.ts';
import { Repository } from '../fhir/repository.ts';
import type { FhirContext } from '../fhir/request.ts';
import type { OutboxRelay, ResourceEvent } from '../jobs/outbox-relay.ts';
import type { Job, JobQueue } from '../jobs/queue.ts';
import type { Logger } from '../logger.ts';
import { readSubscription, type SubscriptionConfig } from './model.ts';
import { loadPayload, notificationBundle, type EventRow, type NotificationType, type Payload, type StatusInfo } from './notification.ts';
import { readCurrent, readVersions, versionKey } from './payload.ts';
import { EventValues, FilterIndex, mayMatch } from './prefilter.ts';
import { endpointRefusal } from './ssrf.ts';
import { additionalContext, topicFires, type Topic } from './topics.ts';

export const REST_HOOK_QUEUE = 'subscription-rest-hook';

export interface SubscriptionDeps {
  config: Config;
  db: Db;
  log: Logger;
  jobs: JobQueue;
  outbox: OutboxRelay;
}

export interface Entry {
  cfg: SubscriptionConfig;
  owner?: AuthContext;
  /** The owner's access rules, built once; restrictions per resource type (null: may not read it). */
  policy?: AccessPolicy;
  restrictions: Map<string, Restriction | null>;
  /** Identifies the owner's grant: subscriptions of one owner share access answers within a batch. */
  ownerKey: string;
  /** events-since-subscription-start as far as this process knows (numbering, fan-out, reload). */
  eventsSince: bigint;
  /** When this process first saw this version of the Subscription (Date.now()). */
  seenAt: number;
}

/** Something that pushes events to websocket clients (the hub). */
export interface LivePush {
  push(subscriptionId: string, events: EventRow[], payload?: Payload): void;
}

interface StateRow {
  owner: AuthContext | null;
  events_since: string;
  delivered_through: string;
  handshake_done: boolean;
  failures: number;
  last_error: string | null;
  /** Milliseconds since the last notification of any kind (database clock); null: never. */
  idle_ms: number | null;
}

const STATE_COLUMNS = `owner, events_since::text, delivered_through::text, handshake_done, failures, last_error,
  (extract(epoch from clock_timestamp() - last_sent_at) * 1000)::float8 AS idle_ms`;
const EVENT_COLUMNS = `event_number::text AS "eventNumber", ${instantSql('at')} AS at, focus_type AS "focusType", focus_id AS "focusId", focus_version AS "focusVersion", action, additional_context AS context`;

/** A filter's search parameters apart from _type, and its _type values (computed once per filter). */
const splitFilters = new WeakMap<SubscriptionConfig['filters'][number], { params: [string, string][]; types: string[] }>();

/** Does the topic look at the previous version (query "previous" or FHIRPath %previous)? */
const needsPrevious = new WeakMap<Topic, boolean>();
function topicNeedsPrevious(topic: Topic): boolean {
  let v = needsPrevious.get(topic);
  if (v === undefined) {
    v = topic.triggers.some((t) => Boolean(t.query?.previous || t.fhirPath));
    needsPrevious.set(topic, v);
  }
  return v;
}

/** An outbox event, the subscriptions it may concern, and whether its previous version is needed. */
interface Work {
  event: ResourceEvent;
  previous: boolean;
}

/** The versions a batch's matching reads: the focus as written, and the one before where needed. */
function versionKeys(work: Work[]): { type: string; id: string; version: number }[] {
  return work.flatMap(({ event: e, previous }) => [
    ...(e.action !== 'delete' ? [{ type: e.resourceType, id: e.resourceId, version: e.version }] : []),
    ...(previous ? [{ type: e.resourceType, id: e.resourceId, version: e.version - 1 }] : []),
  ]);
}

/** One match of an outbox event to a subscription, before it is numbered. */
interface Match {
  event: ResourceEvent;
  entry: Entry;
  /** additional-context references (filtered by the owner's access before numbering). */
  context: string[];
}

export class SubscriptionService {
  readonly deps: SubscriptionDeps;
  readonly log: Logger;
  readonly subs = new Map<string, Entry>();
  /** Subscription ids by resource type their topic fires on ('*': any). */
  private byType = new Map<string, Set<string>>();
  /** Subscriptions by what their filters want (prefilter.ts): an event meets only the few that may match. */
  private readonly filterIndex = new FilterIndex();
  /** Per resource type: does some subscription's topic need the previous version? */
  private readonly previousByType = new Map<string, boolean>();
  /** Parsed filter criteria ("Type?query" -> request, null when unparsable): parsed once, not per event. */
  private readonly parsedFilters = new Map<string, SearchRequest | null>();
  live: LivePush | undefined;
  /** Called after this process refreshed a Subscription from its outbox event (fanout.ts tells the other processes). */
  announce: ((id: string) => void) | undefined;
  private timers: NodeJS.Timeout[] = [];
  private unlisten: (() => void) | undefined;
  private stopped = false;
  /** Registry sync: highest Subscription outbox id applied, and applied ids at or below it that were pending. */
  private syncedThrough = 0n;
  private readonly syncedPending = new Set<string>();
  private syncing: Promise<number> | undefined;
  /** rest-hook trigger pump: ids waiting, ids being triggered, when each was last triggered. */
  private readonly toTrigger = new Set<string>();
  private readonly triggering = new Set<string>();
  private readonly lastTriggered = new Map<string, number>();
  private ticking = false;

  constructor(deps: SubscriptionDeps) {
    this.deps = deps;
    this.log = deps.log.child({ component: 'subscriptions' });
  }

  get fhirBase(): string {
    return `${this.deps.config.baseUrl}/fhir`;
  }

  repo(): Repository {
    return new Repository(this.deps.db, { baseUrl: this.fhirBase }, this.deps.db);
  }

  async start(): Promise<void> {
    await this.reloadAll();
    this.deps.jobs.process<{ id: string }>(REST_HOOK_QUEUE, (job) => this.restHookJob(job), { concurrency: 8 });
    this.unlisten = this.deps.outbox.onResourceBatch((events) => this.onBatch(events));
    // Every second: registry sync, subscription ends, rest-hook heartbeats and the sweep of
    // undelivered events (each one query, whatever the number of subscriptions); a full reload
    // now and then as a safety net.
    this.timers.push(setInterval(() => void this.tick(), 1000));
    this.timers.push(setInterval(() => void this.reloadAll().catch((err: unknown) => this.log.warn({ err }, 'subscription reload failed')), 60_000));
    for (const t of this.timers) t.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unlisten?.();
    for (const t of this.timers) clearInterval(t);
  }

  // ------------------------------------------------------------------ the in-memory registry

  async reloadAll(): Promise<void> {
    // The sync watermark first: a change committed meanwhile is applied again by the next sync.
    const mark = await this.deps.db.query<{ max: string | null }>(`SELECT max(id)::text AS max FROM outbox WHERE resource_type = 'Subscription'`);
    const res = await this.deps.db.query<{ content: Subscription; owner: AuthContext | null; events_since: string | null }>(
      `SELECT s.content, st.owner, st.events_since::text AS events_since FROM "Subscription" s LEFT JOIN subscription_state st ON st.id = s.id
       WHERE s.deleted = false AND s.content->>'status' IN ('requested', 'active')`,
    );
    const seen = new Set<string>();
    for (const row of res.rows) {
      seen.add(row.content.id as string);
      this.put(row.content, row.owner ?? undefined, row.events_since ?? '0');
    }
    for (const id of [...this.subs.keys()]) if (!seen.has(id)) this.remove(id);
    const m = BigInt(mark.rows[0]?.max ?? '0');
    if (m > this.syncedThrough) this.syncedThrough = m;
  }

  private put(sub: Subscription, owner: AuthContext | undefined, eventsSince?: string): Entry | undefined {
    let cfg: SubscriptionConfig;
    try {
      cfg = readSubscription(sub);
    } catch (err) {
      this.log.warn({ err, id: sub.id }, 'stored Subscription is not one this server can serve; ignored');
      this.remove(sub.id as string);
      return undefined;
    }
    const prior = this.subs.get(cfg.id);
    this.remove(cfg.id);
    const since = eventsSince === undefined ? (prior?.eventsSince ?? 0n) : BigInt(eventsSince);
    const entry: Entry = {
      cfg,
      owner,
      policy: owner ? new AccessPolicy(owner) : undefined,
      restrictions: new Map(),
      ownerKey: owner ? JSON.stringify([owner.subject, owner.role, owner.patient, owner.fhirUser, owner.organization, [...owner.scopes].sort()]) : '',
      eventsSince: prior && prior.eventsSince > since ? prior.eventsSince : since,
      seenAt: prior && prior.cfg.status === cfg.status ? prior.seenAt : Date.now(),
    };
    this.subs.set(cfg.id, entry);
    this.filterIndex.add(cfg.id, cfg.filters);
    this.previousByType.clear();
    for (const t of cfg.topic.triggers) {
      const set = this.byType.get(t.resource) ?? new Set();
      set.add(cfg.id);
      this.byType.set(t.resource, set);
    }
    return entry;
  }

  private remove(id: string): void {
    if (!this.subs.delete(id)) return;
    this.filterIndex.remove(id);
    this.previousByType.clear();
    for (const set of this.byType.values()) set.delete(id);
  }

  /** The registry entry, read from the database when this process has not seen it yet. */
  async load(id: string): Promise<Entry | undefined> {
    const known = this.subs.get(id);
    if (known) return known;
    await this.refreshRegistry([id]);
    return this.subs.get(id);
  }

  /** Re-reads these Subscriptions (content, owner, count) into the registry in one query. */
  async refreshRegistry(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    const res = await this.deps.db.query<{ id: string; deleted: boolean; content: Subscription; owner: AuthContext | null; events_since: string | null }>(
      `SELECT s.id, s.deleted, s.content, st.owner, st.events_since::text AS events_since
       FROM "Subscription" s LEFT JOIN subscription_state st ON st.id = s.id WHERE s.id = ANY($1::text[])`,
      [ids],
    );
    const found = new Map(res.rows.map((r) => [r.id, r]));
    for (const id of ids) {
      const row = found.get(id);
      const sub = row && !row.deleted ? row.content : undefined;
      if (!sub || (sub.status !== 'requested' && sub.status !== 'active')) this.remove(id);
      else this.put(sub, row?.owner ?? undefined, row?.events_since ?? undefined);
    }
  }

  /**
   * Applies the Subscription changes written since the last sync, found in the outbox itself
   * (whichever process relays them): rows above the watermark, and rows still pending below it
   * (a transaction that took its id earlier but committed later). One indexed query.
   */
  syncRegistry(): Promise<number> {
    this.syncing ??= this.syncOnce().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  /** Returns how many Subscriptions it re-read. */
  private async syncOnce(): Promise<number> {
    const res = await this.deps.db.query<{ id: string; resource_id: string; pending: boolean }>({
      name: 'subscriptions:sync',
      text: `SELECT id::text, resource_id, processed_at IS NULL AS pending FROM outbox WHERE resource_type = 'Subscription' AND id > $1::bigint
       UNION ALL
       SELECT id::text, resource_id, true FROM outbox WHERE resource_type = 'Subscription' AND processed_at IS NULL AND id <= $1::bigint`,
      values: [this.syncedThrough.toString()],
    });
    const ids = new Set<string>();
    let top = this.syncedThrough;
    for (const row of res.rows) {
      const n = BigInt(row.id);
      if (n <= this.syncedThrough && this.syncedPending.has(row.id)) continue;
      ids.add(row.resource_id);
      if (n > top) top = n;
      if (row.pending) this.syncedPending.add(row.id);
    }
    if (ids.size > 0) await this.refreshRegistry([...ids]);
    this.syncedThrough = top;
    if (this.syncedPending.size > 10_000) this.syncedPending.clear();
    return ids.size;
  }

  /** A Subscription changed (its outbox event is relayed here): handshake or activate it when it was (re)requested. */
  private async refreshHere(id: string): Promise<void> {
    const entry = this.subs.get(id);
    if (!entry) return;
    await this.deps.db.query(`INSERT INTO subscription_state (id) VALUES ($1) ON CONFLICT (id) DO NOTHING`, [id]);
    if (entry.cfg.status !== 'requested') return;
    if (entry.cfg.channelType === 'websocket') {
      // No endpoint to call: the handshake is sent when a client binds (websocket.ts).
      await this.setStatus(id, 'active');
    } else {
      this.requestTrigger(id);
    }
  }

  async state(id: string): Promise<StateRow | undefined> {
    const res = await this.deps.db.query<StateRow>(`SELECT ${STATE_COLUMNS} FROM subscription_state WHERE id = $1`, [id]);
    return res.rows[0];
  }

  /** The states of several subscriptions in one query. */
  async states(ids: string[]): Promise<Map<string, StateRow>> {
    if (ids.length === 0) return new Map();
    const res = await this.deps.db.query<StateRow & { id: string }>(`SELECT id, ${STATE_COLUMNS} FROM subscription_state WHERE id = ANY($1::text[])`, [ids]);
    return new Map(res.rows.map((r) => [r.id, r]));
  }

  /** Sets Subscription.status (and .error) as the server, unless someone changed it meanwhile. */
  async setStatus(id: string, status: 'active' | 'error' | 'off', error?: string): Promise<void> {
    const repo = this.repo();
    for (let tries = 0; tries < 3; tries++) {
      const v = await repo.read('Subscription', id).catch(() => undefined);
      if (!v?.json) return;
      const sub = JSON.parse(v.json) as Subscription;
      if (sub.status === 'off') return;
      if (sub.status === status && sub.error === error) return;
      sub.status = status;
      if (error) sub.error = error;
      else delete sub.error;
      try {
        await repo.update(sub, { ifMatch: v.version });
        this.deps.outbox.wake();
        const entry = this.subs.get(id);
        if (entry) entry.cfg.status = status;
        if (status !== 'active') this.remove(id);
        return;
      } catch (err) {
        // Changed meanwhile (412): read again. Anything else (the database under strain...)
        // is thrown, so the outbox batch or job that asked is retried rather than the change
        // being lost.
        if (!(err instanceof FhirError && err.status === 412)) throw err;
      }
    }
  }

  // ------------------------------------------------------------------ events

  /** One outbox batch: a fixed number of queries whatever its size (see the header). */
  async onBatch(events: readonly ResourceEvent[]): Promise<void> {
    if (this.stopped || events.length === 0) return;
    const t0 = performance.now();
    // The registry sync and the focus reads go in parallel; in the rare batch where the sync
    // found Subscription changes, candidates are worked out again and missing versions read.
    const syncing = this.syncRegistry();
    let work = this.candidates(events);
    const keys = versionKeys(work);
    const [changes, versions] = await Promise.all([syncing, keys.length ? readVersions(this.deps.db, keys) : new Map<string, Resource>()]);
    const changed = [...new Set(events.filter((e) => e.resourceType === 'Subscription').map((e) => e.resourceId))];
    for (const id of changed) {
      try {
        await this.refreshHere(id);
      } finally {
        this.announce?.(id);
      }
    }
    if (changes > 0 || changed.length > 0) {
      work = this.candidates(events);
      const missing = versionKeys(work).filter((k) => !versions.has(versionKey(k.type, k.id, k.version)));
      if (missing.length) for (const [k, v] of await readVersions(this.deps.db, missing)) versions.set(k, v);
    }
    if (work.length === 0) return;

    // Match in memory; access answers are shared by subscriptions of one owner within the batch.
    const access = new Map<string, Promise<boolean>>();
    const matches: Match[] = [];
    const now = Date.now();
    for (const { event: e, previous } of work) {
      const current = e.action !== 'delete' ? versions.get(versionKey(e.resourceType, e.resourceId, e.version)) : undefined;
      if (e.action !== 'delete' && !current) continue; // a version the history no longer has
      const prev = previous ? versions.get(versionKey(e.resourceType, e.resourceId, e.version - 1)) : undefined;
      const focus = current ?? prev;
      if (!focus) continue;
      const values = new EventValues(focus); // the focus's search values, shared by all candidates
      const firing = new Map<Topic, boolean>(); // a topic fires or not once per event
      const contexts = new Map<Topic, string[]>();
      const own = this.byType.get(e.resourceType);
      const anyType = this.byType.get('*');
      // Only the subscriptions whose filters may match (prefilter.ts), among those whose topic
      // triggers on this type.
      for (const id of this.filterIndex.candidates(focus.resourceType, values)) {
        if (!own?.has(id) && !anyType?.has(id)) continue;
        const entry = this.subs.get(id);
        if (!entry || (entry.cfg.status !== 'active' && entry.cfg.status !== 'requested')) continue;
        if (entry.cfg.end && entry.cfg.end < now) continue;
        const cfg = entry.cfg;
        let fires = firing.get(cfg.topic);
        if (fires === undefined) {
          fires = topicFires(cfg.topic, e.resourceType, e.action, current, prev);
          firing.set(cfg.topic, fires);
        }
        if (!fires) continue;
        if (!this.filtersMatch(cfg, focus, values)) continue;
        if (!(await this.mayReadShared(entry, focus, access))) continue;
        let context = contexts.get(cfg.topic);
        if (!context) {
          context = additionalContext(cfg.topic, focus);
          contexts.set(cfg.topic, context);
        }
        matches.push({ event: e, entry, context });
      }
    }
    if (matches.length === 0) return;
    const t1 = performance.now();
    await this.filterContext(matches, access);
    const numbered = await this.number(matches);
    const t2 = performance.now();
    const payload: Payload = { versions, current: new Map() };
    this.fanOut(numbered, payload);
    // Where a batch's time goes (LOG_LEVEL=debug): reads and matching, numbering, fan-out.
    this.log.debug(
      { events: events.length, matches: matches.length, readMatchMs: +(t1 - t0).toFixed(2), numberMs: +(t2 - t1).toFixed(2), fanOutMs: +(performance.now() - t2).toFixed(2) },
      'subscription batch',
    );
  }

  /**
   * The events some subscription may care about (its type has subscriptions), and whether the
   * version before is needed (a delete, or a topic on that type that looks at %previous).
   */
  private candidates(events: readonly ResourceEvent[]): Work[] {
    const work: Work[] = [];
    const anyType = this.byType.get('*');
    for (const e of events) {
      const own = this.byType.get(e.resourceType);
      if (!own?.size && !anyType?.size) continue;
      const previous = e.version > 1 && (e.action === 'delete' || (e.action !== 'create' && this.typeNeedsPrevious(e.resourceType)));
      work.push({ event: e, previous });
    }
    return work;
  }

  /** Some subscription on this type has a topic that looks at the previous version (cached until the registry changes). */
  private typeNeedsPrevious(type: string): boolean {
    let v = this.previousByType.get(type);
    if (v === undefined) {
      v = false;
      for (const key of [type, '*']) for (const id of this.byType.get(key) ?? []) if (!v && topicNeedsPrevious(this.subs.get(id)!.cfg.topic)) v = true;
      this.previousByType.set(type, v);
    }
    return v;
  }

  /** Drops additional-context references a restricted owner may not read (one query for the batch). */
  private async filterContext(matches: Match[], access: Map<string, Promise<boolean>>): Promise<void> {
    const restricted = matches.filter((m) => m.context.length > 0 && m.entry.owner);
    if (restricted.length === 0) return;
    const resources = await readCurrent(this.deps.db, restricted.flatMap((m) => m.context));
    for (const m of restricted) {
      const kept: string[] = [];
      for (const ref of m.context) {
        const r = resources.get(ref);
        if (r && (await this.mayReadShared(m.entry, r, access))) kept.push(ref);
      }
      m.context = kept;
    }
  }

  /**
   * Numbers every match of the batch in ONE statement: per subscription, the new events get the
   * next numbers in outbox order (gap-free; subscription_state rows are locked in id order, so
   * concurrent batches of several processes neither deadlock nor share a number). An event
   * numbered before (a redelivered outbox row) keeps its number. Returns the rows to deliver.
   */
  private async number(matches: Match[]): Promise<{ entry: Entry; row: EventRow; failures: number }[]> {
    const input = matches.map((m) => ({
      sid: m.entry.cfg.id,
      oid: m.event.eventId,
      at: m.event.at,
      ft: m.event.resourceType,
      fi: m.event.resourceId,
      fv: m.event.version,
      act: m.event.action,
      ctx: m.context.length ? m.context : null,
    }));
    // A named (prepared) statement: planned once per connection, not per batch.
    const res = await this.deps.db.query<{ sid: string; oid: string; num: string; failures: number }>({
      name: 'subscriptions:number',
      text: `WITH input AS (
         SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(sid text, oid bigint, at timestamptz, ft text, fi text, fv integer, act text, ctx text[])
       ),
       prior AS (
         SELECT e.subscription_id AS sid, e.outbox_id AS oid, e.event_number AS num
         FROM subscription_event e JOIN input i ON e.subscription_id = i.sid AND e.outbox_id = i.oid
       ),
       fresh AS (SELECT i.* FROM input i WHERE NOT EXISTS (SELECT 1 FROM prior p WHERE p.sid = i.sid AND p.oid = i.oid)),
       counts AS (SELECT sid, count(*)::bigint AS n FROM fresh GROUP BY sid),
       locked AS MATERIALIZED (
         SELECT s.id FROM subscription_state s WHERE s.id IN (SELECT sid FROM counts) ORDER BY s.id FOR UPDATE
       ),
       bump AS (
         UPDATE subscription_state s SET events_since = s.events_since + c.n
         FROM counts c WHERE s.id = c.sid AND s.id IN (SELECT id FROM locked)
         RETURNING s.id, s.events_since - c.n AS base, s.failures
       ),
       numbered AS (
         SELECT f.sid, f.oid, f.at, f.ft, f.fi, f.fv, f.act, f.ctx, b.failures,
                b.base + row_number() OVER (PARTITION BY f.sid ORDER BY f.oid) AS num
         FROM fresh f JOIN bump b ON b.id = f.sid
       ),
       ins AS (
         INSERT INTO subscription_event (subscription_id, event_number, outbox_id, at, focus_type, focus_id, focus_version, action, additional_context)
         SELECT sid, num, oid, at, ft, fi, fv, act, ctx FROM numbered
       )
       SELECT sid, oid::text, num::text, failures FROM numbered
       UNION ALL
       SELECT p.sid, p.oid::text, p.num::text, coalesce(st.failures, 0) FROM prior p LEFT JOIN subscription_state st ON st.id = p.sid`,
      values: [JSON.stringify(input)],
    });
    const byKey = new Map(matches.map((m) => [`${m.entry.cfg.id} ${m.event.eventId}`, m]));
    const out: { entry: Entry; row: EventRow; failures: number }[] = [];
    for (const r of res.rows) {
      const m = byKey.get(`${r.sid} ${r.oid}`);
      if (!m) continue;
      const e = m.event;
      out.push({
        entry: m.entry,
        failures: r.failures,
        row: { eventNumber: r.num, at: e.at, focusType: e.resourceType, focusId: e.resourceId, focusVersion: e.version, action: e.action, context: m.context.length ? m.context : undefined },
      });
    }
    return out;
  }

  /** Websocket pushes first (one Bundle per subscription per batch), then rest-hook triggers (not waited for). */
  private fanOut(numbered: { entry: Entry; row: EventRow; failures: number }[], payload: Payload): void {
    const perSub = new Map<string, { entry: Entry; rows: EventRow[]; failures: number }>();
    for (const n of numbered) {
      const id = n.entry.cfg.id;
      const group = perSub.get(id) ?? { entry: n.entry, rows: [], failures: n.failures };
      group.rows.push(n.row);
      perSub.set(id, group);
    }
    const hooks: string[] = [];
    for (const [id, { entry, rows, failures }] of perSub) {
      rows.sort((a, b) => (BigInt(a.eventNumber) < BigInt(b.eventNumber) ? -1 : 1));
      const last = BigInt(rows[rows.length - 1].eventNumber);
      if (last > entry.eventsSince) entry.eventsSince = last;
      if (entry.cfg.channelType === 'websocket') this.live?.push(id, rows, payload);
      // A subscription waiting for a retry keeps its backoff: the retry picks the events up.
      else if (failures === 0) hooks.push(id);
    }
    for (const id of hooks) this.requestTrigger(id);
  }

  private filtersMatch(cfg: SubscriptionConfig, focus: Resource, values = new EventValues(focus)): boolean {
    for (const f of cfg.filters) {
      if (f.type && f.type !== focus.resourceType) return false;
      let split = splitFilters.get(f);
      if (!split) {
        split = {
          params: f.params.filter(([k]) => k !== '_type'),
          types: f.params.filter(([k]) => k === '_type').flatMap(([, v]) => v.split(',')),
        };
        splitFilters.set(f, split);
      }
      const { params, types } = split;
      if (types.length && !types.includes(focus.resourceType)) return false;
      if (params.length === 0) continue;
      if (!mayMatch(params, values)) return false;
      const key = `${focus.resourceType}?${new URLSearchParams(params).toString()}`;
      let request = this.parsedFilters.get(key);
      if (request === undefined) {
        try {
          request = parseSearchRequest(key);
        } catch {
          request = null;
        }
        if (this.parsedFilters.size >= 50_000) this.parsedFilters.clear();
        this.parsedFilters.set(key, request);
      }
      if (!request) return false;
      try {
        if (!matchesSearchRequest(focus, request)) return false;
      } catch {
        return false;
      }
    }
    return true;
  }

  /**
   * May the subscription's owner read this resource (its scopes, role, patient, organisation)?
   * The owner's restriction per type is computed once per subscription; the answer per resource
   * version once per owner and batch (memo).
   */
  private mayReadShared(entry: Entry, resource: Resource, memo: Map<string, Promise<boolean>>): Promise<boolean> {
    if (!entry.policy) return Promise.resolve(true);
    const type = resource.resourceType;
    let restriction = entry.restrictions.get(type);
    if (restriction === undefined) {
      try {
        restriction = entry.policy.check(type, 'r');
      } catch {
        restriction = null;
      }
      entry.restrictions.set(type, restriction);
    }
    if (restriction === null) return Promise.resolve(false);
    if (isUnrestricted(restriction)) return Promise.resolve(true);
    const key = `${entry.ownerKey} ${type}/${resource.id}/${resource.meta?.versionId ?? ''}`;
    let answer = memo.get(key);
    if (!answer) {
      answer = this.visible(restriction, resource);
      memo.set(key, answer);
    }
    return answer;
  }

  private async visible(restriction: Restriction, resource: Resource): Promise<boolean> {
    const ctx: FhirContext = { repo: this.repo(), fhirBase: this.fhirBase, defaultCount: 20, maxCount: 20, maxBinaryBytes: 0, restriction };
    try {
      await assertVisible(ctx, resource);
      return true;
    } catch {
      return false;
    }
  }

  /** Could this owner read the resource (outside the batch path: no shared memo). */
  async mayRead(owner: AuthContext | undefined, resource: Resource): Promise<boolean> {
    if (!owner) return true;
    const entry: Entry = { cfg: undefined as never, owner, policy: new AccessPolicy(owner), restrictions: new Map(), ownerKey: '', eventsSince: 0n, seenAt: 0 };
    return this.mayReadShared(entry, resource, new Map());
  }

  // ------------------------------------------------------------------ rest-hook delivery

  /** Adds (or replaces the pending) delivery job of a rest-hook subscription, now. */
  async trigger(id: string): Promise<void> {
    const { retryAttempts, retryBackoffMs } = this.deps.config.subscriptions;
    this.lastTriggered.set(id, Date.now());
    await this.deps.jobs.add(REST_HOOK_QUEUE, { id }, { jobId: `sub:${id}`, attempts: retryAttempts, backoffMs: retryBackoffMs });
  }

  /**
   * Asks for a trigger without waiting: requests for one subscription made while its trigger is
   * being added coalesce into one more (so a busy subscription costs a few queue writes per
   * second, not one per event), and at most 16 are added at once.
   */
  requestTrigger(id: string): void {
    this.toTrigger.add(id);
    this.pump();
  }

  private pump(): void {
    for (const id of this.toTrigger) {
      if (this.triggering.size >= 16) return;
      if (this.triggering.has(id)) continue;
      this.toTrigger.delete(id);
      this.triggering.add(id);
      void this.trigger(id)
        .catch((err: unknown) => this.log.warn({ err, subscription: id }, 'rest-hook trigger failed; the sweep retries it'))
        .finally(() => {
          this.triggering.delete(id);
          this.pump();
        });
    }
  }

  statusInfo(entry: Entry, state: StateRow | undefined, status = entry.cfg.status): StatusInfo {
    const stored = BigInt(state?.events_since ?? '0');
    const since = stored > entry.eventsSince ? stored : entry.eventsSince;
    return { id: entry.cfg.id, topic: entry.cfg.topicUrl, status, eventsSince: since.toString(), error: state?.last_error ?? undefined };
  }

  async eventsAfter(id: string, after: string, limit: number, until?: string): Promise<EventRow[]> {
    const res = await this.deps.db.query<EventRow & { context: string[] | null }>(
      `SELECT ${EVENT_COLUMNS} FROM subscription_event WHERE subscription_id = $1 AND event_number > $2::bigint
       AND ($4::bigint IS NULL OR event_number <= $4::bigint) ORDER BY event_number LIMIT $3`,
      [id, after, limit, until ?? null],
    );
    for (const r of res.rows) if (!r.context) delete (r as EventRow).context;
    return res.rows;
  }

  /** POSTs one notification; throws unless the endpoint answers 2xx. */
  private async post(entry: Entry, type: NotificationType, events: EventRow[], info: StatusInfo): Promise<void> {
    await this.postBundle(entry, await notificationBundle(this.deps.db, this.fhirBase, info, type, events, entry.cfg.content));
  }

  /** Records a successful notification (and how far events are delivered) in one statement. */
  private async sent(id: string, through?: string): Promise<void> {
    await this.deps.db.query(
      `UPDATE subscription_state SET last_sent_at = clock_timestamp(), failures = 0, last_error = NULL,
         delivered_through = GREATEST(delivered_through, coalesce($2::bigint, 0)) WHERE id = $1`,
      [id, through ?? null],
    );
  }

  private async restHookJob(job: Job<{ id: string }>): Promise<void> {
    const id = job.data.id;
    const entry = await this.load(id);
    if (!entry || entry.cfg.channelType !== 'rest-hook') return;
    let state = await this.state(id);
    if (!state) return;
    let batch: EventRow[] = [];
    try {
      const refusal = await endpointRefusal(entry.cfg.endpoint as string, this.deps.config.subscriptions.allowedHosts);
      if (refusal) throw new Error(`Refused: ${refusal}`);
      if (!state.handshake_done) {
        await this.post(entry, 'handshake', [], this.statusInfo(entry, state, 'requested'));
        await this.deps.db.query(`UPDATE subscription_state SET handshake_done = true WHERE id = $1`, [id]);
        await this.sent(id);
        state = (await this.state(id)) as StateRow;
      }
      // After the handshake (again if setting the status failed on an earlier run).
      if (entry.cfg.status === 'requested') await this.setStatus(id, 'active');
      let sent = false;
      const max = entry.cfg.maxCount;
      for (;;) {
        // Several Bundles' worth at once: one read (events and payload) for up to 10 POSTs.
        const ahead = await this.eventsAfter(id, state.delivered_through, Math.min(max * 10, 1000));
        if (ahead.length === 0) break;
        const payload = await loadPayload(this.deps.db, ahead, entry.cfg.content);
        const since = ahead[ahead.length - 1].eventNumber;
        for (let i = 0; i < ahead.length; i += max) {
          batch = ahead.slice(i, i + max);
          const info = this.statusInfo(entry, state, 'active');
          if (BigInt(info.eventsSince) < BigInt(since)) info.eventsSince = since;
          const bundle = await notificationBundle(this.deps.db, this.fhirBase, info, 'event-notification', batch, entry.cfg.content, payload);
          await this.postBundle(entry, bundle);
          const last = batch[batch.length - 1].eventNumber;
          await this.sent(id, last);
          state.delivered_through = last;
          sent = true;
        }
        batch = [];
      }
      const hb = entry.cfg.heartbeatSeconds;
      if (!sent && hb && (state.idle_ms === null || state.idle_ms >= hb * 1000 - 50)) {
        await this.post(entry, 'heartbeat', [], this.statusInfo(entry, state, 'active'));
        await this.sent(id);
      }
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const final = job.attempt >= job.attempts;
      this.log[final ? 'error' : 'warn']({ subscription: id, attempt: job.attempt, err: message }, 'rest-hook delivery failed');
      await this.deps.db.query(`UPDATE subscription_state SET failures = failures + 1, last_error = $2 WHERE id = $1`, [id, message.slice(0, 1000)]);
      if (!final) throw err;
      // Out of retries: dead-letter what was being delivered, and put the subscription in error.
      if (batch.length > 0) {
        const first = batch[0].eventNumber;
        const last = batch[batch.length - 1].eventNumber;
        await this.deps.db.query(
          `INSERT INTO subscription_dead_letter (subscription_id, first_event, last_event, error) VALUES ($1, $2, $3, $4)`,
          [id, first, last, message.slice(0, 1000)],
        );
        await this.deps.db.query(`UPDATE subscription_state SET delivered_through = GREATEST(delivered_through, $2::bigint) WHERE id = $1`, [id, last]);
      }
      const what = state.handshake_done ? `delivery failed ${job.attempts} times` : `handshake failed ${job.attempts} times`;
      await this.setStatus(id, 'error', `${what}: ${message}`);
    }
  }

  private async postBundle(entry: Entry, bundle: object): Promise<void> {
    const cfg = entry.cfg;
    const headers: Record<string, string> = { 'content-type': 'application/fhir+json' };
    for (const [k, v] of cfg.headers) headers[k] = v;
    const res = await fetch(cfg.endpoint as string, {
      method: 'POST',
      headers,
      body: JSON.stringify(bundle),
      signal: AbortSignal.timeout(cfg.timeoutSeconds * 1000),
      redirect: 'manual',
    });
    await res.arrayBuffer().catch(() => undefined);
    if (res.status < 200 || res.status > 299) throw new Error(`The endpoint answered HTTP ${res.status}`);
  }

  // ------------------------------------------------------------------ every second, every process

  /**
   * Runs in every process whatever sockets it holds: follows Subscription changes made
   * elsewhere, turns subscriptions whose end has passed off, and triggers rest-hook work that is
   * due (heartbeats from the database's last_sent_at, so all processes agree) or was left
   * undelivered (a crash after numbering, a lost trigger). Duplicate triggers from several
   * processes collapse on the job id.
   */
  async tick(): Promise<void> {
    if (this.stopped || this.ticking) return;
    this.ticking = true;
    try {
      await this.syncRegistry();
      const now = Date.now();
      for (const entry of [...this.subs.values()]) {
        const id = entry.cfg.id;
        const failed = (err: unknown) => this.log.warn({ err, subscription: id }, 'subscription status change failed; retried next second');
        if (entry.cfg.end && entry.cfg.end <= now) {
          this.remove(id);
          await this.setStatus(id, 'off').catch(failed);
        } else if (entry.cfg.channelType === 'websocket' && entry.cfg.status === 'requested' && now - entry.seenAt > 5000) {
          // Its own outbox event should have activated it; if that failed, activate it here.
          await this.setStatus(id, 'active').catch(failed);
        }
      }
      const hooks = [...this.subs.values()].filter((e) => e.cfg.channelType === 'rest-hook');
      if (hooks.length === 0) return;
      const res = await this.deps.db.query<{ id: string }>(
        `SELECT st.id FROM unnest($1::text[], $2::int[]) AS h(id, secs) JOIN subscription_state st ON st.id = h.id
         WHERE st.failures = 0 AND (NOT st.handshake_done OR st.delivered_through < st.events_since
           OR (h.secs > 0 AND (st.last_sent_at IS NULL OR st.last_sent_at <= clock_timestamp() - h.secs * interval '1 second')))`,
        [hooks.map((e) => e.cfg.id), hooks.map((e) => e.cfg.heartbeatSeconds ?? 0)],
      );
      for (const { id } of res.rows) {
        // Triggered (by this process) within the last second: its job is on it.
        if (now - (this.lastTriggered.get(id) ?? 0) < 1000) continue;
        this.requestTrigger(id);
      }
    } catch (err) {
      this.log.warn({ err }, 'subscription tick failed');
    } finally {
      this.ticking = false;
    }
  }
}
