// Websocket events across server processes: each outbox event is relayed by one process, but a
// websocket client may be connected to any. With REDIS_URL set, every event a process pushes
// to its own websocket clients is also published on a Redis pub/sub channel, and every process
// pushes what the others published to its own clients. Without Redis, only the local hub gets
// events (one process, or clients catch up with $events). Subscription changes are announced on
// the same channel, so every process's registry (which the relaying process alone refreshes from
// the outbox) follows at once rather than at its next periodic reload. Events carry their numbers, so a
// client never gets one twice on the same socket (the hub drops numbers it has already sent).
import { randomUUID } from 'node:crypto';
import type { Resource } from '@medplum/fhirtypes';
import { Redis } from 'ioredis';
import type { Logger } from '../logger.ts';
import type { EventRow } from './notification.ts';
import { versionKey } from './payload.ts';
import type { LivePush } from './service.ts';

export interface Fanout extends LivePush {
  close(): Promise<void>;
}

export interface FanoutOptions {
  /** Does this subscription's payload carry resources (full-resource)? Only then do they travel. */
  fullResource(id: string): boolean;
  /** Another process refreshed this Subscription from its outbox event: refresh the local registry. */
  onRefresh(id: string): void;
  /** Channel name (one per deployment: config.redisPrefix + ":subscription-events"). */
  channel: string;
}

export async function startRedisFanout(redisUrl: string, local: LivePush, log: Logger, options: FanoutOptions): Promise<Fanout & { announce(id: string): void }> {
  const channel = options.channel;
  const wantsResources = options.fullResource;
  const origin = randomUUID();
  const pub = new Redis(redisUrl, { maxRetriesPerRequest: null, lazyConnect: true });
  const sub = new Redis(redisUrl, { maxRetriesPerRequest: null, lazyConnect: true });
  pub.on('error', (err) => log.warn({ err }, 'subscription fan-out (publish) Redis error'));
  sub.on('error', (err) => log.warn({ err }, 'subscription fan-out (subscribe) Redis error'));
  await Promise.all([pub.connect(), sub.connect()]);
  sub.on('message', (_channel: string, text: string) => {
    try {
      const msg = JSON.parse(text) as { origin: string; id: string; events?: EventRow[]; refresh?: boolean; resources?: [string, Resource][] };
      if (msg.origin === origin) return;
      if (msg.refresh) options.onRefresh(msg.id);
      else if (msg.events) local.push(msg.id, msg.events, msg.resources ? { versions: new Map(msg.resources), current: new Map() } : undefined);
    } catch (err) {
      log.warn({ err }, 'bad subscription fan-out message');
    }
  });
  await sub.subscribe(channel);
  return {
    push(id, events, payload) {
      local.push(id, events, payload);
      // The focus versions already read travel along, so the other processes need not read them.
      const resources: [string, Resource][] = [];
      for (const e of events) {
        const k = versionKey(e.focusType, e.focusId, e.focusVersion);
        const r = payload?.versions.get(k);
        if (r && wantsResources(id)) resources.push([k, r]);
      }
      pub.publish(channel, JSON.stringify({ origin, id, events, resources: resources.length ? resources : undefined })).catch((err: unknown) => log.warn({ err }, 'subscription fan-out publish failed'));
    },
    announce(id) {
      pub.publish(channel, JSON.stringify({ origin, id, refresh: true })).catch((err: unknown) => log.warn({ err }, 'subscription fan-out publish failed'));
    },
    async close() {
      await sub.unsubscribe(channel).catch(() => undefined);
      sub.disconnect();
      pub.disconnect();
    },
  };
}
