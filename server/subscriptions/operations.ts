// Subscription operations (Backport IG): $status, $events, $get-ws-binding-token; and the write
// hook that checks a Subscription as it is written through the API, records who wrote it (its
// notifications honour that caller's access) and starts it as "requested".
import { randomUUID } from 'node:crypto';
import type { Bundle, OperationDefinition, Parameters, Subscription } from '@medplum/fhirtypes';
import { isUnrestricted } from '../auth/access.ts';
import type { AuthContext } from '../auth/context.ts';
import { assertVisible } from '../fhir/authorize.ts';
import { registerOperation, type OperationTarget } from '../fhir/operations/registry.ts';
import { badRequest, forbidden, notFound } from '../fhir/outcome.ts';
import { type FhirContext, type FhirRequest, type FhirResponse } from '../fhir/request.ts';
import { registerWriteHook } from '../fhir/router.ts';
import { readSubscription, type PayloadContent } from './model.ts';
import { notificationBundle, statusParameters } from './notification.ts';
import type { SubscriptionService } from './service.ts';
import { endpointRefusal } from './ssrf.ts';
import { issueBindingToken, WS_PATH } from './websocket.ts';

let service: SubscriptionService | undefined;

export function setService(s: SubscriptionService | undefined): void {
  service = s;
}

function running(): SubscriptionService {
  if (!service) throw badRequest('Subscriptions are not running on this server');
  return service;
}

const BACKPORT_OP = 'http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/';

function def(id: string, code: string, params: OperationDefinition['parameter'], instance = true): OperationDefinition {
  return {
    resourceType: 'OperationDefinition',
    id,
    url: `${BACKPORT_OP}${id}`,
    name: id,
    status: 'active',
    kind: 'operation',
    code,
    resource: ['Subscription' as never],
    system: false,
    type: true,
    instance,
    parameter: params,
  };
}

/** Values of an input parameter from the query string or a posted Parameters (comma lists split). */
function inputs(req: FhirRequest, name: string): string[] {
  const out = req.query.filter(([k]) => k === name).map(([, v]) => v);
  const body = req.body as Parameters | undefined;
  if (body?.resourceType === 'Parameters') {
    for (const p of body.parameter ?? []) {
      if (p.name === name) out.push(String(p.valueId ?? p.valueString ?? p.valueCode ?? p.valueInteger ?? p.valueUnsignedInt ?? ''));
    }
  }
  return out.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
}

/** A token that may read everything: nothing a subscription delivers can be hidden from it. */
function readsEverything(ctx: FhirContext): boolean {
  if (!ctx.access) return true;
  try {
    return isUnrestricted(ctx.access.check('*', 'r'));
  } catch {
    return false;
  }
}

/** Same grant: same subject, patient context and scopes (notifications follow the owner's access). */
function sameGrant(a: AuthContext | null | undefined, b: AuthContext): boolean {
  if (!a) return false;
  const scopes = (x: AuthContext) => [...new Set(x.scopes)].sort().join(' ');
  return a.subject === b.subject && a.patient === b.patient && a.fhirUser === b.fhirUser && scopes(a) === scopes(b);
}

/**
 * The Subscription, if the caller may use it: readable by the caller, and either created with the
 * same grant or the caller may read everything (so its events reveal nothing the caller could not read).
 */
async function visibleSubscription(ctx: FhirContext, s: SubscriptionService, id: string): Promise<Subscription> {
  const sub = await ctx.repo.readResource<Subscription>('Subscription', id);
  await assertVisible(ctx, sub);
  if (ctx.access && !readsEverything(ctx)) {
    const owner = (await s.state(id))?.owner;
    if (!sameGrant(owner, ctx.access.auth)) throw forbidden(`Subscription/${id} was created with another grant than this token's`);
  }
  return sub;
}

interface StatusRow {
  id: string;
  content: Subscription;
  owner: AuthContext | null;
  events_since: string | null;
  last_error: string | null;
}

/**
 * The Subscriptions $status reports on, with their state, in one query: the instance, the ids
 * asked for, or all the caller's (those it may read and, unless it may read everything, created
 * with the same grant).
 */
async function statusTargets(ctx: FhirContext, req: FhirRequest, target: OperationTarget, s: SubscriptionService): Promise<StatusRow[]> {
  if (target.id) await visibleSubscription(ctx, s, target.id); // 404 / 403 for the instance
  const ids = target.id ? [target.id] : inputs(req, 'id');
  const res = await s.deps.db.query<StatusRow>(
    `SELECT s.id, s.content, st.owner, st.events_since::text AS events_since, st.last_error
     FROM "Subscription" s LEFT JOIN subscription_state st ON st.id = s.id
     WHERE s.deleted = false AND ($1::text[] IS NULL OR s.id = ANY($1::text[])) ORDER BY s.id LIMIT 1000`,
    [ids.length ? ids : null],
  );
  if (target.id) return res.rows;
  const all = readsEverything(ctx);
  const out: StatusRow[] = [];
  for (const row of res.rows) {
    if (!all && !sameGrant(row.owner, ctx.access!.auth)) continue;
    try {
      await assertVisible(ctx, row.content);
    } catch {
      continue;
    }
    out.push(row);
  }
  return out;
}

registerOperation({
  definition: def('backport-subscription-status', 'status', [
    { name: 'id', use: 'in', min: 0, max: '*', type: 'id' },
    { name: 'status', use: 'in', min: 0, max: '*', type: 'code' },
    { name: 'return', use: 'out', min: 1, max: '1', type: 'Bundle' },
  ]),
  async handler(ctx, req, target): Promise<FhirResponse> {
    const s = running();
    const statuses = inputs(req, 'status');
    const bundle: Bundle = { resourceType: 'Bundle', id: randomUUID(), type: 'searchset', timestamp: new Date().toISOString(), entry: [] };
    for (const row of await statusTargets(ctx, req, target, s)) {
      const sub = row.content;
      const status = sub.status ?? 'requested';
      if (statuses.length && !statuses.includes(status)) continue;
      // The count is the stored one (every process numbers into it); the error is the one that
      // put the subscription in error, else the last delivery failure still being retried.
      const params = statusParameters(
        s.fhirBase,
        { id: row.id, topic: sub.criteria ?? '', status, eventsSince: row.events_since ?? '0', error: sub.error ?? row.last_error ?? undefined },
        'query-status',
        [],
        'empty',
      );
      bundle.entry?.push({ fullUrl: `urn:uuid:${params.id}`, resource: params, search: { mode: 'match' } });
    }
    bundle.total = bundle.entry?.length;
    return { status: 200, body: bundle };
  },
});

registerOperation({
  definition: {
    ...def('backport-subscription-events', 'events', [
      { name: 'eventsSinceNumber', use: 'in', min: 0, max: '1', type: 'string' },
      { name: 'eventsUntilNumber', use: 'in', min: 0, max: '1', type: 'string' },
      { name: 'content', use: 'in', min: 0, max: '1', type: 'code' },
      { name: 'return', use: 'out', min: 1, max: '1', type: 'Bundle' },
    ]),
    type: false,
  },
  async handler(ctx, req, target): Promise<FhirResponse> {
    const s = running();
    const id = target.id as string;
    const sub = await visibleSubscription(ctx, s, id);
    const num = (name: string): string | undefined => {
      const v = inputs(req, name)[0];
      if (v === undefined) return undefined;
      if (!/^\d{1,18}$/.test(v)) throw badRequest(`${name} must be a whole number`);
      return v;
    };
    const since = num('eventsSinceNumber') ?? '1';
    const until = num('eventsUntilNumber');
    const content = (inputs(req, 'content')[0] ?? undefined) as PayloadContent | undefined;
    if (content && !['empty', 'id-only', 'full-resource'].includes(content)) throw badRequest('content must be empty, id-only or full-resource');
    let cfgContent: PayloadContent = 'id-only';
    try {
      cfgContent = readSubscription(sub).content;
    } catch {
      // a Subscription we no longer serve: replay ids only
    }
    const level = content ?? cfgContent;
    const events = await s.eventsAfter(id, (BigInt(since) - 1n).toString(), Math.min(ctx.maxCount, 1000), until);
    const state = await s.state(id);
    const bundle = await notificationBundle(
      ctx.repo.db,
      s.fhirBase,
      { id, topic: sub.criteria ?? '', status: sub.status ?? 'requested', eventsSince: state?.events_since ?? '0' },
      'query-event',
      events,
      level,
    );
    return { status: 200, body: bundle };
  },
});

registerOperation({
  definition: def('backport-subscription-get-ws-binding-token', 'get-ws-binding-token', [
    { name: 'id', use: 'in', min: 0, max: '*', type: 'id' },
    { name: 'token', use: 'out', min: 1, max: '1', type: 'string' },
    { name: 'expiration', use: 'out', min: 1, max: '1', type: 'dateTime' },
    { name: 'subscription', use: 'out', min: 0, max: '*', type: 'string' },
    { name: 'websocket-url', use: 'out', min: 1, max: '1', type: 'url' },
  ]),
  async handler(ctx, req, target): Promise<FhirResponse> {
    const s = running();
    const ids = target.id ? [target.id] : inputs(req, 'id');
    if (ids.length === 0) throw badRequest('$get-ws-binding-token needs at least one Subscription id');
    for (const id of ids) {
      const sub = await visibleSubscription(ctx, s, id);
      if (sub.channel?.type !== 'websocket') throw badRequest(`Subscription/${id} does not use the websocket channel`);
    }
    const { token, expiresAt } = await issueBindingToken(s, ids);
    const base = new URL(s.fhirBase);
    const wsUrl = `${base.protocol === 'https:' ? 'wss' : 'ws'}://${base.host}${WS_PATH}`;
    const out: Parameters = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'token', valueString: token },
        { name: 'expiration', valueDateTime: expiresAt.toISOString() },
        ...ids.map((id) => ({ name: 'subscription', valueString: id })),
        { name: 'websocket-url', valueUrl: wsUrl },
      ],
    };
    return { status: 200, body: out };
  },
});

registerWriteHook('Subscription', async (ctx, req, it) => {
  if (it.kind !== 'create' && it.kind !== 'update') {
    throw badRequest('A Subscription is written with POST or PUT (not PATCH or a conditional update)');
  }
  const s = running();
  const sub = req.body as Subscription;
  if (it.kind === 'update' && !sub.id) sub.id = it.id;
  readSubscription(sub);
  if (sub.channel.type === 'rest-hook') {
    const refusal = await endpointRefusal(sub.channel.endpoint as string, s.deps.config.subscriptions.allowedHosts);
    if (refusal) throw badRequest(`Subscription.channel.endpoint refused: ${refusal}`, ['Subscription.channel.endpoint']);
  }
  // The server decides the status: requested until the handshake succeeds (off stays off).
  sub.status = sub.status === 'off' ? 'off' : 'requested';
  delete sub.error;
  let id = it.id;
  if (it.kind === 'create') {
    req.assignedId ??= randomUUID();
    id = req.assignedId;
  }
  if (it.kind === 'update') {
    const existing = await ctx.repo.readVersion('Subscription', id as string).catch(() => undefined);
    if (existing && !existing.deleted && ctx.access) await visibleSubscription(ctx, s, id as string);
  }
  const owner = ctx.access?.auth ?? null;
  // Same connection as the write (inside a transaction Bundle, the same transaction).
  await ctx.repo.db.query(
    `INSERT INTO subscription_state (id, owner) VALUES ($1, $2)
     ON CONFLICT (id) DO UPDATE SET owner = EXCLUDED.owner, handshake_done = false, failures = 0, last_error = NULL, updated_at = now()`,
    [id, owner === null ? null : JSON.stringify(owner)],
  );
  if (!id) throw notFound('Subscription id missing');
});
