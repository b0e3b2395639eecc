// Picks the job queue for the run mode (BullMQ when REDIS_URL is set, in-process otherwise) and
// starts the outbox relay; server.ts starts this after migrations and stops it before the pool.
import type { Config } from '../config.ts';
import type { Db } from '../db/pool.ts';
import type { Logger } from '../logger.ts';
import { createBullmqQueue } from './bullmq.ts';
import { createInProcessQueue } from './inprocess.ts';
import { createOutboxRelay, type OutboxRelay, type OutboxRelayOptions } from './outbox-relay.ts';
import type { JobQueue } from './queue.ts';

export interface JobsRuntime {
  jobs: JobQueue;
  outbox: OutboxRelay;
  /** Stops the relay and the queue; running handlers and the batch being relayed finish. */
  stop(): Promise<void>;
}

export interface JobsRuntimeOptions {
  config: Pick<Config, 'redisUrl'> & Partial<Pick<Config, 'redisPrefix'>>;
  db: Db;
  log: Logger;
  /** BullMQ key prefix (default: config.redisPrefix, else "wardlink"). */
  redisPrefix?: string;
  outbox?: Omit<OutboxRelayOptions, 'db' | 'log'>;
  /**
   * The database is PGlite (one backend session, one process): the outbox relay reads rather
   * than leases (OutboxRelayOptions.exclusive).
   */
  embeddedDatabase?: boolean;
  /**
   * Start delivering outbox events now (default). server.ts passes false and starts the relay
   * once every listener is registered, so no event is delivered to nobody.
   */
  startRelay?: boolean;
}

export function startJobs(options: JobsRuntimeOptions): JobsRuntime {
  const log = options.log.child({ component: 'jobs' });
  const jobs: JobQueue = options.config.redisUrl
    ? createBullmqQueue({ redisUrl: options.config.redisUrl, log, prefix: options.redisPrefix ?? options.config.redisPrefix })
    : createInProcessQueue({ db: options.db, log });
  const outbox = createOutboxRelay({
    exclusive: options.embeddedDatabase ?? false,
    ...options.outbox,
    db: options.db,
    log: options.log.child({ component: 'outbox' }),
  });
  if (options.startRelay !== false) outbox.start();
  log.info({ queue: jobs.kind }, 'jobs runtime started');
  return {
    jobs,
    outbox,
    async stop() {
      await outbox.stop();
      await jobs.close();
    },
  };
}
