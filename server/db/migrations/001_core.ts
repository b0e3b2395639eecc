// Core schema: one current-version table per resource type, one shared append-only history
// table, typed search index tables, the outbox, and Binary content.
//
// Why one history table rather than one per type (DESIGN.md suggests per type): system-level
// `_history` and `_since` then read one index instead of a 146-way UNION, and the write path
// touches the same small set of tables for every type. The current-version tables stay per
// type so each type's search works on small, dedicated tables and indexes.
import type { Knex } from 'knex';
import { loadDefinitions } from '../../fhir/definitions.ts';

export const name = '001_core';

export async function up(knex: Knex): Promise<void> {
  await knex.raw('CREATE EXTENSION IF NOT EXISTS pg_trgm');
  // Sets meta.versionId and meta.lastUpdated of stored JSON from the values the row gets, so the
  // JSON and the columns can never disagree (see Repository.write).
  await knex.raw(`
    CREATE FUNCTION wl_stamp(content jsonb, version integer, ts timestamptz) RETURNS jsonb
    LANGUAGE sql STABLE AS $$
      SELECT jsonb_set(jsonb_set(content, '{meta,versionId}', to_jsonb(version::text)),
        '{meta,lastUpdated}', to_jsonb(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')))
    $$;
  `);
  for (const type of loadDefinitions()) {
    await knex.raw(`
      CREATE TABLE "${type}" (
        id text PRIMARY KEY,
        version integer NOT NULL,
        last_updated timestamptz NOT NULL,
        deleted boolean NOT NULL DEFAULT false,
        content jsonb NOT NULL
      );
      CREATE INDEX "${type}_last_updated" ON "${type}" (last_updated);
    `);
  }
  await knex.raw(`
    CREATE TABLE resource_history (
      resource_type text NOT NULL,
      id text NOT NULL,
      version integer NOT NULL,
      last_updated timestamptz NOT NULL,
      deleted boolean NOT NULL DEFAULT false,
      method text NOT NULL,            -- POST | PUT | PATCH | DELETE: how this version came to be
      content jsonb,                   -- null for a delete
      PRIMARY KEY (resource_type, id, version)
    );
    CREATE INDEX resource_history_type_time ON resource_history (resource_type, last_updated);
    CREATE INDEX resource_history_time ON resource_history (last_updated);

    -- Search index rows, computed at write time from the SearchParameter expressions.
    -- Every table: (resource_type, resource_id, param) plus typed values.
    CREATE TABLE idx_token (
      resource_type text NOT NULL, resource_id text NOT NULL, param text NOT NULL,
      system text, code text, display text
    );
    CREATE INDEX idx_token_lookup ON idx_token (resource_type, param, code, system, resource_id);
    CREATE INDEX idx_token_owner ON idx_token (resource_type, resource_id, param);

    CREATE TABLE idx_string (
      resource_type text NOT NULL, resource_id text NOT NULL, param text NOT NULL,
      value text NOT NULL,             -- normalised: lower case, accents removed
      exact text NOT NULL              -- as written, for :exact
    );
    CREATE INDEX idx_string_prefix ON idx_string (resource_type, param, value text_pattern_ops, resource_id);
    CREATE INDEX idx_string_owner ON idx_string (resource_type, resource_id, param);
    -- No trigram (GIN) indexes for :contains / :text: they made every write of a resource with
    -- names or codings several times dearer (and spiky when the GIN pending list is flushed),
    -- for modifiers that are rare; those searches scan the (type, param) range of the btree.

    CREATE TABLE idx_date (
      resource_type text NOT NULL, resource_id text NOT NULL, param text NOT NULL,
      low timestamptz NOT NULL,        -- -infinity when open
      high timestamptz NOT NULL        -- infinity when open
    );
    -- Both bounds in both indexes: ge / le / eq test low and high together, so the range scan
    -- on one bound checks the other from the same entry (index-only) instead of visiting rows.
    CREATE INDEX idx_date_low ON idx_date (resource_type, param, low, high, resource_id);
    CREATE INDEX idx_date_high ON idx_date (resource_type, param, high, low, resource_id);
    CREATE INDEX idx_date_owner ON idx_date (resource_type, resource_id, param);

    CREATE TABLE idx_number (
      resource_type text NOT NULL, resource_id text NOT NULL, param text NOT NULL,
      value numeric, low numeric, high numeric
    );
    CREATE INDEX idx_number_lookup ON idx_number (resource_type, param, value, resource_id);
    CREATE INDEX idx_number_owner ON idx_number (resource_type, resource_id, param);

    CREATE TABLE idx_quantity (
      resource_type text NOT NULL, resource_id text NOT NULL, param text NOT NULL,
      value numeric, low numeric, high numeric, system text, code text, unit text
    );
    CREATE INDEX idx_quantity_lookup ON idx_quantity (resource_type, param, value, resource_id);
    CREATE INDEX idx_quantity_owner ON idx_quantity (resource_type, resource_id, param);

    CREATE TABLE idx_reference (
      resource_type text NOT NULL, resource_id text NOT NULL, param text NOT NULL,
      target_type text, target_id text,  -- local references
      target_url text                    -- absolute URLs, canonicals, and the raw reference
    );
    CREATE INDEX idx_reference_lookup ON idx_reference (resource_type, param, target_id, target_type, resource_id);
    -- target: _revinclude and _has walk from a target to its referrers, owner: _include and
    -- chains walk from a resource to its targets; both carry the rest of the row so those walks
    -- are index-only (no visit of the table per reference).
    CREATE INDEX idx_reference_target ON idx_reference (target_type, target_id, resource_type, param, resource_id);
    CREATE INDEX idx_reference_url ON idx_reference (resource_type, param, target_url);
    CREATE INDEX idx_reference_owner ON idx_reference (resource_type, resource_id, param, target_type, target_id);

    CREATE TABLE idx_uri (
      resource_type text NOT NULL, resource_id text NOT NULL, param text NOT NULL,
      value text NOT NULL
    );
    CREATE INDEX idx_uri_lookup ON idx_uri (resource_type, param, value, resource_id);
    CREATE INDEX idx_uri_owner ON idx_uri (resource_type, resource_id, param);

    CREATE TABLE idx_geo (
      resource_type text NOT NULL, resource_id text NOT NULL, param text NOT NULL,
      lat double precision NOT NULL, lng double precision NOT NULL
    );
    CREATE INDEX idx_geo_lookup ON idx_geo (resource_type, param, lat, lng);
    CREATE INDEX idx_geo_owner ON idx_geo (resource_type, resource_id, param);

    -- Composite parameters (e.g. Observation code-value-quantity): one row per combination of
    -- component values taken from the same element. c1 is a token (or a reference as code
    -- "Type/id"); c2 a token / number or quantity (low2..high2, system2, code2) / date range /
    -- normalised string; c3 the third (numeric) component of MolecularSequence coordinates.
    CREATE TABLE idx_composite (
      resource_type text NOT NULL, resource_id text NOT NULL, param text NOT NULL,
      system1 text, code1 text,
      system2 text, code2 text, low2 numeric, high2 numeric,
      dlow2 timestamptz, dhigh2 timestamptz, text2 text,
      low3 numeric, high3 numeric
    );
    CREATE INDEX idx_composite_lookup ON idx_composite (resource_type, param, code1, system1, resource_id);
    CREATE INDEX idx_composite_owner ON idx_composite (resource_type, resource_id, param);

    -- The index tables hold every parameter of every type in one table each, so the planner's
    -- per-column statistics multiply independent-looking selectivities (resource_type, param,
    -- code) and underestimate a common code by 10x, which picks nested loops over tens of
    -- thousands of rows. Multi-column statistics (ANALYZE only; nothing on the write path) fix it.
    CREATE STATISTICS idx_token_stats (mcv, dependencies) ON resource_type, param, code, system FROM idx_token;
    CREATE STATISTICS idx_reference_stats (mcv, dependencies) ON resource_type, param, target_type FROM idx_reference;
    CREATE STATISTICS idx_string_stats (mcv, dependencies) ON resource_type, param FROM idx_string;
    CREATE STATISTICS idx_date_stats (mcv, dependencies) ON resource_type, param FROM idx_date;

    -- Events written in the same transaction as each change, for subscriptions, HL7 outbound
    -- and audit: nothing is lost if the process dies between commit and delivery.
    CREATE TABLE outbox (
      id bigserial PRIMARY KEY,
      resource_type text NOT NULL,
      resource_id text NOT NULL,
      version integer NOT NULL,
      action text NOT NULL,            -- create | update | delete
      created_at timestamptz NOT NULL DEFAULT now(),
      processed_at timestamptz
    );
    CREATE INDEX outbox_pending ON outbox (id) WHERE processed_at IS NULL;

    -- Binary content lives beside the Binary resource (which keeps contentType and meta),
    -- one row per version, so large attachments never sit inside JSONB.
    CREATE TABLE binary_content (
      id text NOT NULL,
      version integer NOT NULL,
      data bytea NOT NULL,
      PRIMARY KEY (id, version)
    );
  `);
}

export async function down(): Promise<void> {
  throw new Error('001_core cannot be rolled back');
}
