// Topic-based subscriptions (server/subscriptions): per-subscription state beside the Subscription
// resource (who created it, so notifications honour that caller's access; the event counter that
// numbers events without gaps; delivery cursor and errors), the notification log that $events
// replays, the rest-hook dead letters, and websocket binding tokens.
import type { Knex } from 'knex';

export const name = '005_subscriptions';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE subscription_state (
      id text PRIMARY KEY,                          -- Subscription.id
      owner jsonb,                                  -- AuthContext of the creator (null: trusted code)
      events_since bigint NOT NULL DEFAULT 0,       -- events-since-subscription-start (last number given)
      delivered_through bigint NOT NULL DEFAULT 0,  -- rest-hook: last event number delivered
      handshake_done boolean NOT NULL DEFAULT false,
      last_sent_at timestamptz,                     -- last notification of any kind (heartbeats)
      failures integer NOT NULL DEFAULT 0,
      last_error text,
      updated_at timestamptz NOT NULL DEFAULT now()
    );

    -- One row per event given to a subscription (the $events log); outbox_id keeps a redelivered
    -- outbox event from being numbered twice.
    CREATE TABLE subscription_event (
      subscription_id text NOT NULL,
      event_number bigint NOT NULL,
      outbox_id bigint NOT NULL,
      at timestamptz NOT NULL,
      focus_type text NOT NULL,
      focus_id text NOT NULL,
      focus_version integer NOT NULL,
      action text NOT NULL,
      PRIMARY KEY (subscription_id, event_number)
    );
    CREATE UNIQUE INDEX subscription_event_outbox ON subscription_event (subscription_id, outbox_id);

    CREATE TABLE subscription_dead_letter (
      id bigserial PRIMARY KEY,
      subscription_id text NOT NULL,
      first_event bigint NOT NULL,
      last_event bigint NOT NULL,
      error text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX subscription_dead_letter_sub ON subscription_dead_letter (subscription_id, id);

    CREATE TABLE subscription_ws_token (
      token_hash text PRIMARY KEY,
      subscriptions text[] NOT NULL,
      expires_at timestamptz NOT NULL
    );
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP TABLE IF EXISTS subscription_ws_token, subscription_dead_letter, subscription_event, subscription_state`);
}
