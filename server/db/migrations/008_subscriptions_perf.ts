// Subscriptions, batched delivery (server/subscriptions): the additional-context references of
// each numbered event (computed once from the focus version when the event is numbered, so
// deliveries and $events replays show the same context), and a small partial index that lets
// every process find the Subscription changes it has not applied yet from the outbox itself
// (the cross-process registry sync: resource writes of other types do not enter it).
import type { Knex } from 'knex';

export const name = '008_subscriptions_perf';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE subscription_event ADD COLUMN additional_context text[];
    CREATE INDEX outbox_subscription_changes ON outbox (id) WHERE resource_type = 'Subscription';
    CREATE INDEX outbox_subscription_pending ON outbox (id) WHERE resource_type = 'Subscription' AND processed_at IS NULL;
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP INDEX IF EXISTS outbox_subscription_pending;
    DROP INDEX IF EXISTS outbox_subscription_changes;
    ALTER TABLE subscription_event DROP COLUMN IF EXISTS additional_context;
  `);
}
