// The HL7 v2 message store: every inbound message is inserted here (raw bytes) before it is
// processed or acknowledged, so nothing received is lost, whatever happens next. SQL on the
// store's own tables lives here; FHIR resources are only ever written through the repository.
import type { Queryable } from '../db/pool.ts';
import { instantSql } from '../db/pool.ts';

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
    `INSERT INTO hl7_message (sender, control_id, message_type, version, via, raw, status, ack_code, ack, errors)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
     ON CONFLICT (sender, control_id) WHERE control_id IS NOT NULL DO NOTHING
     RETURNING id::text AS id`,
    [m.sender, m.controlId ?? null, m.messageType ?? null, m.version ?? null, m.via, m.raw, m.status, m.ackCode ?? null, m.ack ?? null, m.errors === undefined ? null : JSON.stringify(m.errors)],
  );
  if (res.rows[0]) return { id: res.rows[0].id };
  const existing = await db.query<StoredMessage>(`SELECT ${COLUMNS} FROM hl7_message WHERE sender = $1 AND control_id = $2`, [m.sender, m.controlId]);
  return { id: existing.rows[0].id, duplicate: existing.rows[0] };
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

// ---------------------------------------------------------------- out-of-order clock

/**
 * Locks the clock rows of keys (creating missing ones) and returns the keys whose stored event
 * time is later than eventMs: what this message must not overwrite.
 */
export async function staleKeys(db: Queryable, keys: string[], eventMs: number): Promise<Set<string>> {
  const sorted = [...new Set(keys)].sort();
  if (sorted.length === 0) return new Set();
  // Two statements on purpose: the SELECT must see rows a concurrent message created after
  // this INSERT's snapshot (READ COMMITTED gives each statement a new one).
  await db.query(
    `INSERT INTO hl7_clock (key, event_time) SELECT k, '-infinity'::timestamptz FROM unnest($1::text[]) AS k ORDER BY k ON CONFLICT (key) DO NOTHING`,
    [sorted],
  );
  // Locks every key's row in key order (no deadlocks), so two messages about one resource serialise.
  const res = await db.query<{ key: string; stale: boolean }>(
    `SELECT key, event_time > to_timestamp($2::float8 / 1000) AS stale FROM hl7_clock WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE`,
    [sorted, eventMs],
  );
  return new Set(res.rows.filter((r) => r.stale).map((r) => r.key));
}

export async function advanceClock(db: Queryable, keys: string[], eventMs: number, messageId: string): Promise<void> {
  if (keys.length === 0) return;
  await db.query(
    `UPDATE hl7_clock SET event_time = GREATEST(event_time, to_timestamp($2::float8 / 1000)), message_id = $3 WHERE key = ANY($1::text[])`,
    [[...new Set(keys)], eventMs, messageId],
  );
}
