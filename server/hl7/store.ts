// The HL7 v2 message store: every inbound message is inserted here (raw bytes) before it is
// processed or acknowledged, so nothing received is lost, whatever happens next. SQL on the
// store's own tables lives here; FHIR resources are only ever written through the repository.
import type { Queryable } from '../db/pool.ts';
import { instantSql, preparedStatement } from '../db/pool.ts';
import { locationSql } from '../fhir/repository.ts';

export type MessageStatus = 'received' | 'processed' | 'error' | 'rejected';

export interface StoredMessage {
  id: string;
  sender: string;
  controlId: string | null;
  messageType: string | null;
  version: string | null;
  via: string;
  receivedAt: string;
  status: MessageStatus;
  ackCode: string | null;
  ack: string | null;
  appAck: string | null;
  errors: unknown;
  notes: unknown;
  resources: string[];
  attempts: number;
  processedAt: string | null;
  edited: boolean;
}

export interface NewMessage {
  sender: string;
  controlId?: string;
  messageType?: string;
  version?: string;
  via: 'mllp' | 'http';
  raw: Buffer;
  status: MessageStatus;
  ackCode?: string;
  ack?: string;
  errors?: unknown;
  notes?: string[];
  /** Stored with its final outcome (attempts 1, processed_at now). */
  processed?: boolean;
}

const COLUMNS = `id::text AS id, sender, control_id AS "controlId", message_type AS "messageType", version, via,
  ${instantSql('received_at')} AS "receivedAt", status, ack_code AS "ackCode", ack, app_ack AS "appAck", errors, notes,
  resources, attempts, ${instantSql('processed_at')} AS "processedAt", (original_raw IS NOT NULL) AS edited`;

/**
 * Inserts a received message. With a control id already stored for this sender, nothing is
 * inserted and the stored message comes back as `duplicate`.
 */
export async function insertMessage(db: Queryable, m: NewMessage): Promise<{ id: string; duplicate?: StoredMessage }> {
  const res = await db.query<{ id: string }>(
    `INSERT INTO hl7_message (sender, control_id, message_type, version, via, raw, status, ack_code, ack, errors, notes, attempts, processed_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, CASE WHEN $12::boolean THEN 1 ELSE 0 END, CASE WHEN $12::boolean THEN now() END)
     ON CONFLICT (sender, control_id) WHERE control_id IS NOT NULL DO NOTHING
     RETURNING id::text AS id`,
    [
      m.sender, m.controlId ?? null, m.messageType ?? null, m.version ?? null, m.via, m.raw, m.status, m.ackCode ?? null, m.ack ?? null,
      m.errors === undefined ? null : JSON.stringify(m.errors), m.notes?.length ? JSON.stringify(m.notes) : null, m.processed ?? false,
    ],
  );
  if (res.rows[0]) return { id: res.rows[0].id };
  const existing = await db.query<StoredMessage>(`SELECT ${COLUMNS} FROM hl7_message WHERE sender = $1 AND control_id = $2`, [m.sender, m.controlId]);
  return { id: existing.rows[0].id, duplicate: existing.rows[0] };
}

/** What a message locks before it writes: conditional-lock texts and its clock keys. */
export interface Claim {
  lockKeys: string[];
  clockKeys: string[];
  /** Event time in epoch ms; undefined: no out-of-order check (no clock rows). */
  eventMs?: number;
}

// Takes the advisory locks (sorted, so two messages never wait on each other in a circle) and
// upserts the clock rows, which locks them: two messages about one resource serialise here.
// A clock row keeps the latest event time; a key whose stored time is later than this
// message's is stale (the message must not overwrite it). ON CONFLICT DO UPDATE sees (and
// waits for) rows other transactions committed after this statement began.
const CLAIM_CTES = (id: string, locks: string, keys: string, time: string) => `
  locks AS (SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) AS n
    FROM (SELECT DISTINCT k FROM unnest(${locks}::text[]) AS k ORDER BY k) s),
  clock AS (INSERT INTO hl7_clock AS c (key, event_time, message_id)
    SELECT DISTINCT k, to_timestamp(${time}::float8 / 1000), ${id} FROM unnest(${keys}::text[]) AS k WHERE ${time}::float8 IS NOT NULL ORDER BY k
    ON CONFLICT (key) DO UPDATE SET event_time = GREATEST(c.event_time, EXCLUDED.event_time),
      message_id = CASE WHEN EXCLUDED.event_time >= c.event_time THEN EXCLUDED.message_id ELSE c.message_id END
    RETURNING c.key, c.event_time > to_timestamp(${time}::float8 / 1000) AS stale)`;
const CLAIM_RESULT = `(SELECT n FROM locks) AS locked, (SELECT coalesce(array_agg(key), '{}') FROM clock WHERE stale) AS stale`;

const RESERVE_AND_CLAIM = `WITH m AS (SELECT nextval('hl7_message_id_seq') AS id),
     ${CLAIM_CTES('(SELECT id FROM m)', '$1', '$2', '$3')}
     SELECT m.id::text AS id, ${CLAIM_RESULT} FROM m`;

// reserveAndClaim for several messages that share no key (a group, group.ts): one id each, all
// their advisory locks in one sorted pass, their clock rows in one upsert. A key is stale for
// its message when the upsert kept another message's id on the row: the stored event time was
// later (see CLAIM_CTES). $1 how many messages, $2 every lock key, $3 / $4 every clock key and
// the (1-based) message it belongs to, $5 each message's event time (ms, null: none).
const RESERVE_AND_CLAIM_ALL = `WITH m AS (SELECT i, nextval('hl7_message_id_seq') AS id FROM generate_series(1, $1::int) AS i),
  k AS (SELECT * FROM unnest($3::text[], $4::int[]) AS k(key, i)),
  locks AS (SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) AS n
    FROM (SELECT DISTINCT k FROM unnest($2::text[]) AS k ORDER BY k) s),
  clock AS (INSERT INTO hl7_clock AS c (key, event_time, message_id)
    SELECT DISTINCT ON (k.key) k.key, to_timestamp(t.ms / 1000), m.id
    FROM k JOIN m USING (i) JOIN unnest($5::float8[]) WITH ORDINALITY AS t(ms, i) USING (i)
    WHERE t.ms IS NOT NULL ORDER BY k.key
    ON CONFLICT (key) DO UPDATE SET event_time = GREATEST(c.event_time, EXCLUDED.event_time),
      message_id = CASE WHEN EXCLUDED.event_time >= c.event_time THEN EXCLUDED.message_id ELSE c.message_id END
    RETURNING c.key, c.message_id)
  SELECT m.id::text AS id, (SELECT n FROM locks) AS locked,
    ARRAY(SELECT clock.key FROM clock JOIN k USING (key) WHERE k.i = m.i AND clock.message_id IS DISTINCT FROM m.id) AS stale
  FROM m ORDER BY m.i`;

/**
 * Original-mode fast path, first statement: reserves the message's id and claims its keys. The
 * message row itself is inserted at the end, with its outcome (insertFinished), so each message
 * writes its row once.
 */
export async function reserveAndClaim(db: Queryable, claim: Claim): Promise<{ id: string; stale: Set<string> }> {
  const res = await db.query<{ id: string; stale: string[] }>(preparedStatement(RESERVE_AND_CLAIM, [claim.lockKeys, claim.clockKeys, claim.eventMs ?? null]));
  return { id: res.rows[0].id, stale: new Set(res.rows[0].stale) };
}

/** reserveAndClaim for messages that share no lock or clock key, in one statement. */
export async function reserveAndClaimAll(db: Queryable, claims: Claim[]): Promise<{ id: string; stale: Set<string> }[]> {
  if (claims.length === 1) return [await reserveAndClaim(db, claims[0])];
  const clockKeys = claims.flatMap((c) => c.clockKeys);
  const owners = claims.flatMap((c, i) => c.clockKeys.map(() => i + 1));
  const res = await db.query<{ id: string; stale: string[] }>(
    preparedStatement(RESERVE_AND_CLAIM_ALL, [claims.length, claims.flatMap((c) => c.lockKeys), clockKeys, owners, claims.map((c) => c.eventMs ?? null)]),
  );
  return res.rows.map((r) => ({ id: r.id, stale: new Set(r.stale) }));
}

const MESSAGE_COLUMNS = 'id, sender, control_id, message_type, version, via, raw, status, ack_code, ack, app_ack, errors, notes, resources, attempts, processed_at';

/**
 * A resource the message produced, for its `resources` list (Type/id/_history/v). Without a
 * version, the insert itself reads it back: a resource updated earlier in this transaction (so the
 * insert can be sent before that write's answer arrives), or one the message found and left as
 * it was. A new resource's version is 1.
 */
export type ProducedRef = { type: string; id: string; version?: number };

/** A processed message to insert with its outcome at its reserved id (insertFinished). */
export interface FinishedMessage {
  id: string;
  row: NewMessage;
  outcome: Outcome;
  /** Instead of outcome.resources: the list read back from these resources (see ProducedRef). */
  produced?: ProducedRef[];
}

/**
 * Inserts processed messages with their outcomes at their reserved ids, in one statement;
 * returns each one's stored `resources` list. A message already stored under its (sender,
 * MSH-10) makes it fail with a unique violation (isDuplicateKey), which aborts the transaction:
 * the caller's COMMIT then rolls everything back.
 */
export async function insertFinished(db: Queryable, messages: FinishedMessage[]): Promise<string[][]> {
  const values: unknown[] = [];
  const param = (v: unknown): string => {
    values.push(v);
    return `$${values.length}`;
  };
  const tuples = messages.map(({ id, row: m, outcome: o, produced }) => {
    const columns = [
      id, m.sender, m.controlId ?? null, m.messageType ?? null, m.version ?? null, m.via, m.raw, o.status, o.ackCode, o.ack ?? null, o.appAck ?? null,
      o.errors === undefined ? null : JSON.stringify(o.errors), o.notes?.length ? JSON.stringify(o.notes) : null,
    ].map(param);
    let list: string;
    if (!produced) list = `COALESCE(${param(o.resources ? JSON.stringify(o.resources) : null)}::jsonb, '[]'::jsonb)`;
    else {
      const rows = produced.map((r, i) => {
        if (r.version !== undefined) return `SELECT ${i} AS o, ${param(`${r.type}/${r.id}/_history/${r.version}`)}::text AS l`;
        return `SELECT ${i} AS o, q.l FROM (${locationSql(r.type, param(r.id))}) q`;
      });
      list = rows.length ? `COALESCE((SELECT jsonb_agg(p.l ORDER BY p.o) FROM (${rows.join(' UNION ALL ')}) p), '[]'::jsonb)` : `'[]'::jsonb`;
    }
    return `(${columns.join(', ')}, ${list}, 1, now())`;
  });
  const res = await db.query<{ id: string; resources: string[] }>(
    preparedStatement(`INSERT INTO hl7_message (${MESSAGE_COLUMNS}) VALUES ${tuples.join(',\n')} RETURNING id::text AS id, resources`, values),
  );
  const byId = new Map(res.rows.map((r) => [r.id, r.resources]));
  return messages.map((m) => byId.get(m.id) ?? []);
}

/** True for the unique violation of (sender, control id): the message was stored before. */
export function isDuplicateKey(e: unknown): boolean {
  return (e as { code?: string; constraint?: string })?.code === '23505' && (e as { constraint?: string }).constraint === 'hl7_message_key';
}

/** Claims a stored message's keys (enhanced mode, reprocessing); returns the stale keys. */
export async function claimKeys(db: Queryable, messageId: string, claim: Claim): Promise<Set<string>> {
  if (claim.lockKeys.length === 0 && (claim.eventMs === undefined || claim.clockKeys.length === 0)) return new Set();
  const res = await db.query<{ stale: string[] }>(`WITH ${CLAIM_CTES('$1::bigint', '$2', '$3', '$4')} SELECT ${CLAIM_RESULT}`, [
    messageId,
    claim.lockKeys,
    claim.clockKeys,
    claim.eventMs ?? null,
  ]);
  return new Set(res.rows[0]?.stale ?? []);
}

export async function getMessage(db: Queryable, id: string): Promise<StoredMessage | undefined> {
  if (!/^\d{1,18}$/.test(id)) return undefined;
  const res = await db.query<StoredMessage>(`SELECT ${COLUMNS} FROM hl7_message WHERE id = $1`, [id]);
  return res.rows[0];
}

export async function getRaw(db: Queryable, id: string): Promise<Buffer | undefined> {
  if (!/^\d{1,18}$/.test(id)) return undefined;
  const res = await db.query<{ raw: Buffer }>('SELECT raw FROM hl7_message WHERE id = $1', [id]);
  return res.rows[0]?.raw;
}

/** Locks the message row for the processing transaction; returns its status. */
export async function lockMessage(db: Queryable, id: string): Promise<StoredMessage | undefined> {
  const res = await db.query<StoredMessage>(`SELECT ${COLUMNS} FROM hl7_message WHERE id = $1 FOR UPDATE`, [id]);
  return res.rows[0];
}

export interface Outcome {
  status: MessageStatus;
  ackCode: string;
  /** The ACK for the connection (original mode); undefined keeps the stored one (enhanced mode). */
  ack?: string;
  appAck?: string;
  errors?: unknown;
  notes?: string[];
  resources?: string[];
}

export async function recordOutcome(db: Queryable, id: string, o: Outcome): Promise<void> {
  await db.query(
    `UPDATE hl7_message SET status = $2, ack_code = $3, ack = COALESCE($4, ack), app_ack = COALESCE($5, app_ack), errors = $6,
       notes = $7, resources = COALESCE($8, resources), attempts = attempts + 1, processed_at = now()
     WHERE id = $1`,
    [
      id,
      o.status,
      o.ackCode,
      o.ack ?? null,
      o.appAck ?? null,
      o.errors === undefined ? null : JSON.stringify(o.errors),
      o.notes?.length ? JSON.stringify(o.notes) : null,
      o.resources ? JSON.stringify(o.resources) : null,
    ],
  );
}

/** Appends a note to a stored message (what happened after its outcome, e.g. the application ACK). */
export async function addNote(db: Queryable, id: string, note: string): Promise<void> {
  await db.query(`UPDATE hl7_message SET notes = COALESCE(notes, '[]'::jsonb) || jsonb_build_array($2::text) WHERE id = $1`, [id, note]);
}

/** Sets the ACK sent on the connection (enhanced mode: the commit ACK). */
export async function recordAck(db: Queryable, id: string, ackCode: string, ack: string): Promise<void> {
  await db.query('UPDATE hl7_message SET ack_code = COALESCE(ack_code, $2), ack = $3 WHERE id = $1', [id, ackCode, ack]);
}

export async function listMessages(db: Queryable, filter: { status?: string; sender?: string; limit: number; beforeId?: string }): Promise<StoredMessage[]> {
  const where: string[] = [];
  const values: unknown[] = [];
  if (filter.status) {
    values.push(filter.status);
    where.push(`status = $${values.length}`);
  }
  if (filter.sender) {
    values.push(filter.sender);
    where.push(`sender = $${values.length}`);
  }
  if (filter.beforeId && /^\d{1,18}$/.test(filter.beforeId)) {
    values.push(filter.beforeId);
    where.push(`id < $${values.length}`);
  }
  values.push(filter.limit);
  const res = await db.query<StoredMessage>(
    `SELECT ${COLUMNS} FROM hl7_message ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id DESC LIMIT $${values.length}`,
    values,
  );
  return res.rows;
}

/** An operator's fix: the new raw text replaces raw, the first version is kept in original_raw. */
export async function replaceRaw(db: Queryable, id: string, raw: Buffer): Promise<boolean> {
  const res = await db.query(
    `UPDATE hl7_message SET original_raw = COALESCE(original_raw, raw), raw = $2 WHERE id = $1 AND status IN ('error', 'rejected', 'received')`,
    [id, raw],
  );
  return (res.rowCount ?? 0) > 0;
}

/** Messages stored but never finished (the process died between storing and processing). */
export async function unfinishedMessages(db: Queryable, olderThanMs: number, limit: number): Promise<string[]> {
  const res = await db.query<{ id: string }>(
    `SELECT id::text AS id FROM hl7_message WHERE status = 'received' AND received_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2`,
    [olderThanMs / 1000, limit],
  );
  return res.rows.map((r) => r.id);
}
