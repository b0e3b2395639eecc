// Topic-based Subscriptions (R4 Backport IG STU 1.1): rest-hook and websocket channels, fed by
// the outbox relay. server.ts starts it before the relay starts and attaches the websocket
// endpoint to the HTTP server:
//   const subscriptions = await startSubscriptions({ config, db, log, jobs, outbox });
//   subscriptions.attach(server);
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { OutboxRelay } from '../jobs/outbox-relay.ts';
import { startRedisFanout, type Fanout } from './fanout.ts';
import { setService } from './operations.ts';
import { SubscriptionService, type SubscriptionDeps } from './service.ts';
import { loadTopics } from './topics.ts';
import { WebsocketHub, WS_PATH } from './websocket.ts';

export { WS_PATH };

export interface RunningSubscriptions {
  service: SubscriptionService;
  /** Serves the websocket endpoint (WS_PATH) on this HTTP server; returns a detach function. */
  attach(server: Server): () => void;
  stop(): Promise<void>;
}

const started = new WeakMap<OutboxRelay, RunningSubscriptions>();

export async function startSubscriptions(deps: SubscriptionDeps): Promise<RunningSubscriptions> {
  // One engine per outbox relay (a test harness and server.ts may both ask).
  const existing = started.get(deps.outbox);
  if (existing) return existing;
  loadTopics();
  const service = new SubscriptionService(deps);
  const hub = new WebsocketHub(service);
  service.live = hub;
  // Several processes: events relayed by any reach websocket clients of every one (fanout.ts).
  let fanout: Fanout | undefined;
  if (deps.config.redisUrl) {
    const log = deps.log.child({ component: 'subscriptions' });
    const f = await startRedisFanout(deps.config.redisUrl, hub, log, {
      channel: `${deps.config.redisPrefix}:subscription-events`,
      fullResource: (id) => service.subs.get(id)?.cfg.content === 'full-resource',
      onRefresh: (id) => void service.refreshRegistry([id]).catch((err: unknown) => log.warn({ err, id }, 'subscription registry refresh failed')),
    });
    service.live = f;
    service.announce = (id) => f.announce(id);
    fanout = f;
  }
  setService(service);
  await service.start();
  const running: RunningSubscriptions = {
    service,
    attach(server) {
      const detach = hub.attach(server);
      // A write's response is sent after its transaction committed: look at the outbox now
      // rather than at the relay's next poll (its poll stays the safety net for writers that
      // are not HTTP requests). This is most of the latency budget on an idle relay.
      const wake = () => deps.outbox.wake();
      const onRequest = (req: IncomingMessage, res: ServerResponse) => {
        if (req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'OPTIONS') res.once('finish', wake);
      };
      server.on('request', onRequest);
      return () => {
        detach();
        server.off('request', onRequest);
      };
    },
    async stop() {
      started.delete(deps.outbox);
      hub.close();
      await fanout?.close();
      await service.stop();
      setService(undefined);
    },
  };
  started.set(deps.outbox, running);
  return running;
}
