// Subscriptions, batched delivery (server/subscriptions): the additional-context references of
// each numbered event (computed once from the focus version when the event is numbered, so
// deliveries and $events replays show the same context), and a small partial index that lets
// every process find the Subscription changes it has not applied yet from the outbox itself
// (the cross-process registry sync: resource writes of other types do not enter it).
//
// And the outbox relay's claim as one function call, so a claim costs one round trip rather
// than four (BEGIN, lock, UPDATE, COMMIT) on the path of every notification: in a VOLATILE
// PL/pgSQL function each statement takes a fresh snapshot, so the UPDATE still sees every claim
// committed before the advisory lock was granted (what keeps each resource's events in order
// across processes, server/jobs/outbox-relay.ts). It first marks the previous batch processed
// (the relay passes those ids when it claims again at once), saving that round trip too, and
// commits without waiting for the WAL flush (see the function).
import type { Knex } from 'knex';

export const name = '008_subscriptions_perf';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE subscription_event ADD COLUMN additional_context text[];
    CREATE INDEX outbox_subscription_changes ON outbox (id) WHERE resource_type = 'Subscription';
    CREATE INDEX outbox_subscription_pending ON outbox (id) WHERE resource_type = 'Subscription' AND processed_at IS NULL;

    CREATE FUNCTION wl_outbox_claim(p_owner text, p_lease_ms integer, p_limit integer, p_hold_ms integer, p_lock bigint, p_done bigint[])
    RETURNS TABLE (id text, resource_type text, resource_id text, version integer, action text, at text, attempts integer)
    LANGUAGE plpgsql VOLATILE AS $$
    #variable_conflict use_column
    BEGIN
      -- A lease and "processed" marks need not wait for the WAL flush: lost in a database crash,
      -- they only make events be delivered again (at least once, as always).
      PERFORM set_config('synchronous_commit', 'off', true);
      IF cardinality(p_done) > 0 THEN
        UPDATE outbox SET processed_at = clock_timestamp(), claimed_until = NULL WHERE outbox.id = ANY(p_done);
      END IF;
      PERFORM pg_advisory_xact_lock(p_lock);
      RETURN QUERY
        UPDATE outbox o SET claimed_by = p_owner, claimed_until = clock_timestamp() + p_lease_ms * interval '1 millisecond', attempts = o.attempts + 1
        FROM (
          SELECT c.id FROM outbox c
          WHERE c.processed_at IS NULL AND (c.claimed_until IS NULL OR c.claimed_until < clock_timestamp())
            AND NOT EXISTS (SELECT 1 FROM outbox p
              WHERE p.resource_type = c.resource_type AND p.resource_id = c.resource_id AND p.id < c.id
                AND p.processed_at IS NULL AND p.claimed_until IS NOT NULL AND p.claimed_until >= clock_timestamp())
            AND (p_hold_ms <= 0 OR c.created_at < clock_timestamp() - p_hold_ms * interval '1 millisecond')
          ORDER BY c.id LIMIT p_limit FOR UPDATE SKIP LOCKED
        ) pick
        WHERE o.id = pick.id
        RETURNING o.id::text, o.resource_type, o.resource_id, o.version, o.action,
          to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), o.attempts;
    END $$;
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP FUNCTION IF EXISTS wl_outbox_claim(text, integer, integer, integer, bigint, bigint[]);
    DROP INDEX IF EXISTS outbox_subscription_pending;
    DROP INDEX IF EXISTS outbox_subscription_changes;
    ALTER TABLE subscription_event DROP COLUMN IF EXISTS additional_context;
  `);
}
