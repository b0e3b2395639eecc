// HL7 v2: the inbound message store (every message as received, before anything is processed,
// with its outcome, ACK and the FHIR resources it produced), the per-resource event clock that
// keeps older messages from overwriting newer data, and the outbound queue's dead-letter list.
import type { Knex } from 'knex';

export const name = '003_hl7';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE hl7_message (
      id bigserial PRIMARY KEY,
      sender text NOT NULL,                  -- MSH-3|MSH-4 as received ('' when unreadable)
      control_id text,                       -- MSH-10
      message_type text,                     -- MSH-9 (code^event)
      version text,                          -- MSH-12
      via text NOT NULL,                     -- mllp | http
      received_at timestamptz NOT NULL DEFAULT now(),
      raw bytea NOT NULL,                    -- exactly the bytes received (Z-segments included)
      original_raw bytea,                    -- the first raw, once an operator fixed the message
      status text NOT NULL,                  -- received | processed | error | rejected
      ack_code text,
      ack text,                              -- the ACK sent on the connection (replayed on duplicates)
      app_ack text,                          -- enhanced mode: the application ACK
      errors jsonb,
      notes jsonb,
      resources jsonb NOT NULL DEFAULT '[]', -- Type/id/_history/v written by this message
      attempts integer NOT NULL DEFAULT 0,
      processed_at timestamptz
    );
    -- Idempotency: one message per (sender, MSH-10).
    CREATE UNIQUE INDEX hl7_message_key ON hl7_message (sender, control_id) WHERE control_id IS NOT NULL;
    CREATE INDEX hl7_message_status ON hl7_message (status, id);

    -- Latest event time (EVN-2 / MSH-7) applied per business key (Type|system|value).
    CREATE TABLE hl7_clock (
      key text PRIMARY KEY,
      event_time timestamptz NOT NULL,
      message_id bigint
    );

    -- Outbound messages that exhausted their retries (the live ones are jobs in the job queue).
    CREATE TABLE hl7_outbound (
      id bigserial PRIMARY KEY,
      endpoint text NOT NULL,                -- host:port
      message_type text NOT NULL,
      control_id text NOT NULL,
      raw text NOT NULL,
      source text,                           -- the event that caused it (outbox id), for at-least-once delivery
      status text NOT NULL,                  -- pending | sent | dead
      attempts integer NOT NULL DEFAULT 0,
      last_error text,
      ack text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX hl7_outbound_status ON hl7_outbound (status, id);
    CREATE UNIQUE INDEX hl7_outbound_source ON hl7_outbound (endpoint, message_type, source) WHERE source IS NOT NULL;
  `);
}

export async function down(): Promise<void> {
  throw new Error('003_hl7 cannot be rolled back');
}
