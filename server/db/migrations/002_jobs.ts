// Jobs: the table behind the in-process job queue (server/jobs/inprocess.ts, the embedded
// default without Redis), and the columns the outbox relay (server/jobs/outbox-relay.ts) needs
// to share the outbox between several server processes.
import type { Knex } from 'knex';

export const name = '002_jobs';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    -- One row per pending, running or failed job of the in-process queue. Pending timers live
    -- here, so a restart loses none. (queue, id) is the caller's jobId: re-adding replaces.
    CREATE TABLE job (
      queue text NOT NULL,
      id text NOT NULL,
      data jsonb NOT NULL,
      run_at timestamptz NOT NULL,         -- not before (database clock)
      attempts_made integer NOT NULL DEFAULT 0,
      max_attempts integer NOT NULL,
      backoff_ms integer NOT NULL,
      generation integer NOT NULL DEFAULT 1, -- bumped by every re-add: a finishing run only
                                             -- deletes / retries the generation it ran
      locked_by text,                      -- runtime running it, while locked_until is ahead
      locked_until timestamptz,            -- lease, renewed while the handler runs
      failed_at timestamptz,               -- attempts exhausted: kept for inspection
      last_error text,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (queue, id)
    );
    CREATE INDEX job_due ON job (queue, run_at) WHERE failed_at IS NULL;

    -- Outbox relay: a claim is a lease (claimed_until), so a process that dies mid-delivery
    -- hands its events to another; a failed delivery waits (claimed_until) and is retried.
    ALTER TABLE outbox ADD COLUMN claimed_by text;
    ALTER TABLE outbox ADD COLUMN claimed_until timestamptz;
    ALTER TABLE outbox ADD COLUMN attempts integer NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN last_error text;
    -- Claimed, unprocessed rows per resource: later events of a resource wait for them, so
    -- events of one resource are delivered in id order. Rows enter it only when claimed, so
    -- resource writes do not pay for it.
    CREATE INDEX outbox_claimed ON outbox (resource_type, resource_id, id)
      WHERE processed_at IS NULL AND claimed_until IS NOT NULL;
    CREATE INDEX outbox_processed ON outbox (processed_at) WHERE processed_at IS NOT NULL;
  `);
}

export async function down(): Promise<void> {
  throw new Error('002_jobs cannot be rolled back');
}
