// Authorization server state (server/auth): signing keys, credentials linked to FHIR users,
// registered clients, sign-in sessions, authorization codes, EHR launch contexts, refresh
// tokens, revocations, client-assertion jti replay guard and rate-limit counters.
// Secrets are stored only as hashes (scrypt for passwords and client secrets, SHA-256 for
// random tokens); nothing here is ever copied into FHIR content.
import type { Knex } from 'knex';

export const name = '004_auth';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    -- JWT signing keys. One active key at a time (the partial unique index lets concurrent
    -- first starts of several processes agree on one); retired keys stay published in the JWKS
    -- until the tokens they signed have expired.
    CREATE TABLE auth_key (
      kid text PRIMARY KEY,
      alg text NOT NULL,
      private_jwk jsonb NOT NULL,
      public_jwk jsonb NOT NULL,
      active boolean NOT NULL DEFAULT true,
      created_at timestamptz NOT NULL DEFAULT now(),
      retired_at timestamptz
    );
    CREATE UNIQUE INDEX auth_key_one_active ON auth_key ((true)) WHERE active;

    -- A user's credentials; the person is the FHIR resource in fhir_user.
    CREATE TABLE auth_user (
      id text PRIMARY KEY,
      username text NOT NULL UNIQUE,       -- stored lower-case
      password_hash text NOT NULL,
      fhir_user text NOT NULL,             -- Practitioner/123 | Patient/456 | RelatedPerson/789
      role text NOT NULL,
      organization text,                   -- Organization/abc
      totp_secret text,                    -- base32; null = no second factor
      totp_last_step bigint,               -- last accepted time step (no code is accepted twice)
      failed_attempts integer NOT NULL DEFAULT 0,
      locked_until timestamptz,
      disabled boolean NOT NULL DEFAULT false,
      password_changed_at timestamptz NOT NULL DEFAULT now(),
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX auth_user_fhir_user ON auth_user (fhir_user);

    CREATE TABLE auth_client (
      client_id text PRIMARY KEY,
      name text NOT NULL,
      kind text NOT NULL,                  -- public | confidential
      secret_hash text,                    -- client_secret_basic (scrypt)
      jwks jsonb,                          -- private_key_jwt: registered public keys
      jwks_uri text,                       -- ... or where to fetch them
      redirect_uris jsonb NOT NULL DEFAULT '[]',
      launch_uri text,
      scopes text NOT NULL,                -- space-separated: what the client may be granted
      grant_types jsonb NOT NULL,
      trusted boolean NOT NULL DEFAULT false, -- first-party: no consent page
      disabled boolean NOT NULL DEFAULT false,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );

    -- Browser sign-in sessions; id is SHA-256 of the cookie value.
    CREATE TABLE auth_session (
      id text PRIMARY KEY,
      user_id text NOT NULL REFERENCES auth_user(id) ON DELETE CASCADE,
      created_at timestamptz NOT NULL DEFAULT now(),
      last_seen timestamptz NOT NULL DEFAULT now(),
      ended_at timestamptz
    );

    -- An authorization request between /authorize and the redirect back (sign-in, picker,
    -- consent happen in between).
    CREATE TABLE auth_request (
      id text PRIMARY KEY,
      params jsonb NOT NULL,
      expires_at timestamptz NOT NULL
    );

    -- One authorization (the consent behind a code and all tokens derived from it): revoking
    -- it (code reuse, refresh token reuse, revocation) invalidates them all.
    CREATE TABLE auth_grant (
      id text PRIMARY KEY,
      client_id text NOT NULL,
      user_id text,
      session_id text,
      revoked_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE auth_code (
      code_hash text PRIMARY KEY,
      grant_id text NOT NULL,
      client_id text NOT NULL,
      redirect_uri text NOT NULL,
      details jsonb NOT NULL,              -- scope, patient, encounter, nonce, code_challenge...
      expires_at timestamptz NOT NULL,
      used_at timestamptz
    );

    -- EHR launch contexts: what the launch parameter stands for.
    CREATE TABLE auth_launch (
      id text PRIMARY KEY,
      patient text,
      encounter text,
      created_by text,                     -- auth_user id of the staff member who launched
      client_id text,
      expires_at timestamptz NOT NULL
    );

    CREATE TABLE auth_refresh (
      token_hash text PRIMARY KEY,
      grant_id text NOT NULL,
      client_id text NOT NULL,
      details jsonb NOT NULL,              -- scope, user, patient, encounter, fhirUser...
      online boolean NOT NULL,             -- online_access: lives with the sign-in session
      expires_at timestamptz NOT NULL,
      used_at timestamptz                  -- rotated: presenting it again revokes the grant
    );
    CREATE INDEX auth_refresh_grant ON auth_refresh (grant_id);

    -- Revoked access tokens (by jti) and grants, polled by every process's verifier.
    CREATE TABLE auth_revocation (
      seq bigserial PRIMARY KEY,
      kind text NOT NULL,                  -- jti | grant
      value text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz NOT NULL
    );
    CREATE INDEX auth_revocation_created ON auth_revocation (created_at);

    -- Client assertion jti values seen (SMART Backend Services replay protection).
    CREATE TABLE auth_assertion_jti (
      client_id text NOT NULL,
      jti text NOT NULL,
      expires_at timestamptz NOT NULL,
      PRIMARY KEY (client_id, jti)
    );

    -- Fixed-window rate-limit counters shared by all processes. UNLOGGED: losing a minute of
    -- counts in a crash is harmless, and without WAL the hot counter row is not held for a
    -- disk flush on every request.
    CREATE UNLOGGED TABLE auth_rate (
      key text NOT NULL,
      window_start bigint NOT NULL,
      count integer NOT NULL,
      PRIMARY KEY (key, window_start)
    );
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP TABLE auth_rate, auth_assertion_jti, auth_revocation, auth_refresh, auth_launch, auth_code,
      auth_grant, auth_request, auth_session, auth_client, auth_user, auth_key;
  `);
}
