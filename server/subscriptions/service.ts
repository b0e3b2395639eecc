// The subscription engine: keeps the Subscriptions in memory, turns each outbox event into
// numbered notification events for the subscriptions whose topic, filters and owner's access it
// meets, and delivers them: rest-hook through the job queue (one cursor job per subscription, so
// order is kept and retries back off), websocket through the hub (websocket.ts).
import { matchesSearchRequest, parseSearchRequest, type SearchRequest } from '@medplum/core';
import type { Resource, Subscription } from '@medplum/fhirtypes';
import { AccessPolicy, isUnrestricted } from '../auth/access.ts';
import type { AuthContext } from '../auth/context.ts';
import type { Config } from '../config.ts';
import type { Db } from '../db/pool.ts';
import { instantSql } from '../db/pool.ts';
import { assertVisible } from '../fhir/authorize.ts';
import { Repository } from '../fhir/repository.ts';
import type { FhirContext } from '../fhir/request.ts';
import type { OutboxRelay, ResourceEvent } from '../jobs/outbox-relay.ts';
import type { Job, JobQueue } from '../jobs/queue.ts';
import type { Logger } from '../logger.ts';
import { readSubscription, type SubscriptionConfig } from './model.ts';
import { notificationBundle, type EventRow, type NotificationType, type StatusInfo } from './notification.ts';
import { EventValues, mayMatch } from './prefilter.ts';
import { endpointRefusal } from './ssrf.ts';
import { topicFires } from './topics.ts';

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
  lastSentAt: number;
}

/** Something that pushes events to websocket clients (the hub). */
export interface LivePush {
  push(subscriptionId: string, events: EventRow[]): void;
}

interface StateRow {
  owner: AuthContext | null;
  events_since: string;
  delivered_through: string;
  handshake_done: boolean;
  failures: number;
  last_error: string | null;
}

const EVENT_COLUMNS = `event_number::text AS "eventNumber", ${instantSql('at')} AS at, focus_type AS "focusType", focus_id AS "focusId", focus_version AS "focusVersion", action`;

/** A filter's search parameters apart from _type, and its _type values (computed once per filter). */
const splitFilters = new WeakMap<SubscriptionConfig['filters'][number], { params: [string, string][]; types: string[] }>();

export class SubscriptionService {
  readonly deps: SubscriptionDeps;
  readonly log: Logger;
  readonly subs = new Map<string, Entry>();
  /** Subscription ids by resource type their topic fires on ('*': any). */
  private byType = new Map<string, Set<string>>();
  /** Parsed filter criteria ("Type?query" -> request, null when unparsable): parsed once, not per event. */
  private readonly parsedFilters = new Map<string, SearchRequest | null>();
  live: LivePush | undefined;
  /** Called after this process refreshed a Subscription from its outbox event (fanout.ts tells the other processes). */
  announce: ((id: string) => void) | undefined;
  private timers: NodeJS.Timeout[] = [];
  private unlisten: (() => void) | undefined;
  private stopped = false;

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
    this.unlisten = this.deps.outbox.onResourceEvent((e) => this.onEvent(e));
    // Heartbeats, and a periodic reload (another process may have handled a Subscription change).
    this.timers.push(setInterval(() => void this.heartbeats(), 1000));
    this.timers.push(setInterval(() => void this.reloadAll().catch((err: unknown) => this.log.warn({ err }, 'subscription reload failed')), 10_000));
    for (const t of this.timers) t.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unlisten?.();
    for (const t of this.timers) clearInterval(t);
  }

  // ------------------------------------------------------------------ the in-memory registry

  async reloadAll(): Promise<void> {
    const res = await this.deps.db.query<{ content: Subscription; owner: AuthContext | null }>(
      `SELECT s.content, st.owner FROM "Subscription" s LEFT JOIN subscription_state st ON st.id = s.id
       WHERE s.deleted = false AND s.content->>'status' IN ('requested', 'active')`,
    );
    const seen = new Set<string>();
    for (const row of res.rows) {
      seen.add(row.content.id as string);
      this.put(row.content, row.owner ?? undefined);
    }
    for (const id of [...this.subs.keys()]) if (!seen.has(id)) this.remove(id);
  }

  private put(sub: Subscription, owner: AuthContext | undefined): Entry | undefined {
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
    const entry: Entry = { cfg, owner, lastSentAt: prior?.lastSentAt ?? Date.now() };
    this.subs.set(cfg.id, entry);
    for (const t of cfg.topic.triggers) {
      const set = this.byType.get(t.resource) ?? new Set();
      set.add(cfg.id);
      this.byType.set(t.resource, set);
    }
    return entry;
  }

  private remove(id: string): void {
    if (!this.subs.delete(id)) return;
    for (const set of this.byType.values()) set.delete(id);
  }

  /** The registry entry, read from the database when this process has not seen it yet. */
  async load(id: string): Promise<Entry | undefined> {
    const known = this.subs.get(id);
    if (known) return known;
    const v = await this.repo().readVersion('Subscription', id).catch(() => undefined);
    if (!v?.json || v.deleted) return undefined;
    const sub = JSON.parse(v.json) as Subscription;
    if (sub.status !== 'requested' && sub.status !== 'active') return undefined;
    return this.put(sub, (await this.state(id))?.owner ?? undefined);
  }

  /** A Subscription changed: refresh it, and start its handshake when it was (re)requested. */
  private async refresh(id: string): Promise<void> {
    try {
      await this.refreshHere(id);
    } finally {
      this.announce?.(id);
    }
  }

  /** Another process refreshed a Subscription: update this registry only (no handshake, no status change). */
  async refreshRegistry(id: string): Promise<void> {
    const v = await this.repo().readVersion('Subscription', id).catch(() => undefined);
    const sub = v && !v.deleted && v.json ? (JSON.parse(v.json) as Subscription) : undefined;
    if (!sub || (sub.status !== 'requested' && sub.status !== 'active')) return this.remove(id);
    this.put(sub, (await this.state(id))?.owner ?? undefined);
  }

  private async refreshHere(id: string): Promise<void> {
    const repo = this.repo();
    const v = await repo.readVersion('Subscription', id).catch(() => undefined);
    if (!v || v.deleted || !v.json) {
      this.remove(id);
      return;
    }
    const sub = JSON.parse(v.json) as Subscription;
    if (sub.status !== 'requested' && sub.status !== 'active') {
      this.remove(id);
      return;
    }
    await this.deps.db.query(`INSERT INTO subscription_state (id) VALUES ($1) ON CONFLICT (id) DO NOTHING`, [id]);
    const state = await this.state(id);
    const entry = this.put(sub, state?.owner ?? undefined);
    if (!entry || sub.status !== 'requested') return;
    if (entry.cfg.channelType === 'websocket') {
      // No endpoint to call: the handshake is sent when a client binds (websocket.ts).
      await this.setStatus(id, 'active');
    } else {
      await this.trigger(id);
    }
  }

  async state(id: string): Promise<StateRow | undefined> {
    const res = await this.deps.db.query<StateRow>(
      `SELECT owner, events_since::text, delivered_through::text, handshake_done, failures, last_error FROM subscription_state WHERE id = $1`,
      [id],
    );
    return res.rows[0];
  }

  /** Sets Subscription.status (and .error) as the server, unless someone changed it meanwhile. */
  async setStatus(id: string, status: 'active' | 'error', error?: string): Promise<void> {
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
        if (status === 'error') this.remove(id);
        return;
      } catch {
        // changed meanwhile: read again
      }
    }
  }

  // ------------------------------------------------------------------ events

  private async onEvent(e: ResourceEvent): Promise<void> {
    if (this.stopped) return;
    if (e.resourceType === 'Subscription') await this.refresh(e.resourceId);
    const candidates = new Set([...(this.byType.get(e.resourceType) ?? []), ...(this.byType.get('*') ?? [])]);
    if (candidates.size === 0) return;

    const repo = this.repo();
    let current: Resource | undefined;
    let previous: Resource | undefined | null = null;
    if (e.action !== 'delete') {
      const v = await repo.vread(e.resourceType, e.resourceId, String(e.version)).catch(() => undefined);
      if (!v?.json) return;
      current = JSON.parse(v.json) as Resource;
    }
    const loadPrevious = async (): Promise<Resource | undefined> => {
      if (previous !== null) return previous;
      previous = undefined;
      for (let n = e.version - 1; n >= 1 && !previous; n--) {
        const v = await repo.vread(e.resourceType, e.resourceId, String(n)).catch(() => undefined);
        if (v?.json) previous = JSON.parse(v.json) as Resource;
        if (v) break;
      }
      return previous;
    };

    const matched: string[] = [];
    let values: EventValues | undefined; // the focus's search values, shared by all candidates
    const firing = new Map<SubscriptionConfig['topic'], boolean>(); // a topic fires or not once per event
    for (const id of candidates) {
      const entry = this.subs.get(id);
      if (!entry || (entry.cfg.status !== 'active' && entry.cfg.status !== 'requested')) continue;
      if (entry.cfg.end && entry.cfg.end < Date.now()) continue;
      const cfg = entry.cfg;
      const needsPrevious = e.action !== 'create' && cfg.topic.triggers.some((t) => t.query?.previous || t.fhirPath);
      const prev = needsPrevious || e.action === 'delete' ? await loadPrevious() : undefined;
      let fires = firing.get(cfg.topic);
      if (fires === undefined) {
        fires = topicFires(cfg.topic, e.resourceType, e.action, current, prev);
        firing.set(cfg.topic, fires);
      }
      if (!fires) continue;
      const focus = current ?? prev;
      if (!focus) continue;
      values ??= new EventValues(focus);
      if (!this.filtersMatch(cfg, focus, values)) continue;
      if (!(await this.mayRead(entry.owner, focus))) continue;
      matched.push(id);
    }
    if (matched.length === 0) return;

    const res = await this.deps.db.query<{ id: string; event_number: string; failures: number }>(
      `WITH input AS (SELECT unnest($1::text[]) AS sid),
       prev AS (SELECT e.subscription_id, e.event_number FROM subscription_event e JOIN input i ON e.subscription_id = i.sid WHERE e.outbox_id = $2),
       bump AS (UPDATE subscription_state s SET events_since = s.events_since + 1 FROM input i
                WHERE s.id = i.sid AND NOT EXISTS (SELECT 1 FROM prev p WHERE p.subscription_id = s.id)
                RETURNING s.id, s.events_since, s.failures),
       ins AS (INSERT INTO subscription_event (subscription_id, event_number, outbox_id, at, focus_type, focus_id, focus_version, action)
               SELECT id, events_since, $2, $3::timestamptz, $4, $5, $6, $7 FROM bump RETURNING subscription_id)
       SELECT b.id, b.events_since::text AS event_number, b.failures FROM bump b
       UNION ALL SELECT p.subscription_id, p.event_number::text, 0 FROM prev p`,
      [matched, e.eventId, e.at, e.resourceType, e.resourceId, e.version, e.action],
    );
    for (const row of res.rows) {
      const entry = this.subs.get(row.id);
      if (!entry) continue;
      if (entry.cfg.channelType === 'rest-hook') {
        // A subscription waiting for a retry keeps its backoff: the retry picks the event up.
        if (row.failures === 0) await this.trigger(row.id);
      } else {
        this.live?.push(row.id, [
          { eventNumber: row.event_number, at: e.at, focusType: e.resourceType, focusId: e.resourceId, focusVersion: e.version, action: e.action },
        ]);
      }
    }
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

  /** Could the subscription's owner read this resource (its scopes, role, patient, organisation)? */
  async mayRead(owner: AuthContext | undefined, resource: Resource): Promise<boolean> {
    if (!owner) return true;
    try {
      const restriction = new AccessPolicy(owner).check(resource.resourceType, 'r');
      if (isUnrestricted(restriction)) return true;
      const ctx: FhirContext = {
        repo: this.repo(),
        fhirBase: this.fhirBase,
        defaultCount: 20,
        maxCount: 20,
        maxBinaryBytes: 0,
        restriction,
      };
      await assertVisible(ctx, resource);
      return true;
    } catch {
      return false;
    }
  }

  // ------------------------------------------------------------------ rest-hook delivery

  async trigger(id: string): Promise<void> {
    const { retryAttempts, retryBackoffMs } = this.deps.config.subscriptions;
    await this.deps.jobs.add(REST_HOOK_QUEUE, { id }, { jobId: `sub:${id}`, attempts: retryAttempts, backoffMs: retryBackoffMs });
  }

  statusInfo(entry: Entry, state: StateRow | undefined, status = entry.cfg.status): StatusInfo {
    return { id: entry.cfg.id, topic: entry.cfg.topicUrl, status, eventsSince: state?.events_since ?? '0', error: state?.last_error ?? undefined };
  }

  async eventsAfter(id: string, after: string, limit: number, until?: string): Promise<EventRow[]> {
    const res = await this.deps.db.query<EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM subscription_event WHERE subscription_id = $1 AND event_number > $2::bigint
       AND ($4::bigint IS NULL OR event_number <= $4::bigint) ORDER BY event_number LIMIT $3`,
      [id, after, limit, until ?? null],
    );
    return res.rows;
  }

  private async post(entry: Entry, type: NotificationType, events: EventRow[], state: StateRow | undefined, status?: string): Promise<void> {
    const cfg = entry.cfg;
    const endpoint = cfg.endpoint as string;
    const refusal = await endpointRefusal(endpoint, this.deps.config.subscriptions.allowedHosts);
    if (refusal) throw new Error(`Refused: ${refusal}`);
    const bundle = await notificationBundle(this.repo(), this.fhirBase, this.statusInfo(entry, state, status), type, events, cfg.content);
    const headers: Record<string, string> = { 'content-type': 'application/fhir+json' };
    for (const [k, v] of cfg.headers) headers[k] = v;
    const res = await fetch(endpoint, {
      method: 'POST',
      headers,
      body: JSON.stringify(bundle),
      signal: AbortSignal.timeout(cfg.timeoutSeconds * 1000),
      redirect: 'manual',
    });
    await res.arrayBuffer().catch(() => undefined);
    if (res.status < 200 || res.status > 299) throw new Error(`The endpoint answered HTTP ${res.status}`);
    entry.lastSentAt = Date.now();
    await this.deps.db.query(`UPDATE subscription_state SET last_sent_at = now(), failures = 0, last_error = NULL WHERE id = $1`, [cfg.id]);
  }

  private async restHookJob(job: Job<{ id: string }>): Promise<void> {
    const id = job.data.id;
    const entry = this.subs.get(id);
    if (!entry || entry.cfg.channelType !== 'rest-hook') return;
    let state = await this.state(id);
    if (!state) return;
    let batch: EventRow[] = [];
    try {
      if (!state.handshake_done) {
        await this.post(entry, 'handshake', [], state, 'requested');
        await this.deps.db.query(`UPDATE subscription_state SET handshake_done = true WHERE id = $1`, [id]);
        await this.setStatus(id, 'active');
        state = (await this.state(id)) as StateRow;
      }
      let sent = false;
      for (;;) {
        batch = await this.eventsAfter(id, state.delivered_through, entry.cfg.maxCount);
        if (batch.length === 0) break;
        await this.post(entry, 'event-notification', batch, state, 'active');
        const last = batch[batch.length - 1].eventNumber;
        await this.deps.db.query(`UPDATE subscription_state SET delivered_through = GREATEST(delivered_through, $2::bigint) WHERE id = $1`, [id, last]);
        state.delivered_through = last;
        sent = true;
      }
      batch = [];
      const hb = entry.cfg.heartbeatSeconds;
      if (!sent && hb && Date.now() - entry.lastSentAt >= hb * 1000) await this.post(entry, 'heartbeat', [], state, 'active');
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

  private async heartbeats(): Promise<void> {
    if (this.stopped) return;
    const now = Date.now();
    for (const entry of this.subs.values()) {
      const hb = entry.cfg.heartbeatSeconds;
      if (!hb || entry.cfg.channelType !== 'rest-hook' || entry.cfg.status !== 'active') continue;
      if (now - entry.lastSentAt < hb * 1000) continue;
      entry.lastSentAt = now; // one trigger per period; the job re-checks
      const state = await this.state(entry.cfg.id).catch(() => undefined);
      if (!state || state.failures > 0) continue;
      await this.trigger(entry.cfg.id).catch((err: unknown) => this.log.warn({ err }, 'heartbeat trigger failed'));
      entry.lastSentAt = now - hb * 1000; // let the job decide (it compares with lastSentAt)
    }
  }
}
