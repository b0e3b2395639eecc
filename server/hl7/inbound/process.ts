// The inbound pipeline, the same for MLLP and POST /hl7/v2?commit=true:
//   1. parse and check the header (what cannot be taken at all is answered AR / CR), and map
//      the message to its plan (pure: a mapping error is answered AE without touching FHIR data),
//   2. store the raw bytes (a duplicate (sender, MSH-10) gets the ACK it got the first time),
//      taking the locks of the resources it upserts and checking its event time against theirs,
//   3. enhanced mode: commit the raw message, and the commit ACK (CA) can go,
//   4. write the plan's resources through the repository (validation, history, outbox, index
//      rows), with the out-of-order check and the A40 merge: all of the message's writes or none,
//   5. record the outcome and commit (original mode: raw message and outcome in one commit),
//      then answer AA, or AE with ERR (nothing of the message was written; it waits in the
//      store, status error, to be fixed and reprocessed). No ACK AA before the commit.
// Original mode costs six statements per message (BEGIN, locks + clock, match identifiers,
// write all resources, store the message with its outcome, COMMIT) whatever the number of
// resources, in two round trips on PostgreSQL (pipelined: the first three, then the last three);
// a resend is recognised by the message's unique key at the end (and rolled back). Messages
// that arrive while others are being written share one such transaction, still of six
// statements (group.ts).
import type { Bundle } from '@medplum/fhirtypes';
import type { Db, Queryable } from '../../db/pool.ts';
import { Repository } from '../../fhir/repository.ts';
import { FhirError } from '../../fhir/outcome.ts';
import type { FhirContext } from '../../fhir/request.ts';
import type { Logger } from '../../logger.ts';
import type { AuditLog } from '../../audit/audit-log.ts';
import { buildAck, ackTargetOf, type AckCode, type AckError } from '../ack.ts';
import { ErrorCode, V2Error, parseMessage, type Message } from '../message.ts';
import * as store from '../store.ts';
import { senderOf } from './context.ts';
import { checkHeader, mapMessage } from './map.ts';
import { applyMerge } from './merge.ts';
import type { MessagePlan } from './plan.ts';
import type { GroupCommitter } from './group.ts';
import {
  batchable, batchFor, claimOf, matchPlan, staleNote, writableAtOnce, writeAndCommit, writePlanBatched, writePlanViaEngine, type PlanBatch,
} from './write.ts';
import type pg from 'pg';
import { PipelinedTransaction } from '../pipelined.ts';
import type { OutboundDeps } from '../outbound/queue.ts';
import { sendApplicationAck } from '../outbound/reply.ts';

export interface InboundDeps {
  db: Db;
  /**
   * TEST HOOK ONLY (tests/hl7/crash.test.ts): enhanced-mode processing waits this long after the
   * commit ACK, so a test can kill the process between CA and processing. Never set in production.
   */
  testHoldMs?: number;
  /** Real PostgreSQL: pipelined connections for original-mode messages (see pipelined.ts). */
  pipelined?: pg.Pool;
  /** With pipelined: original-mode messages committed in groups (group.ts). */
  groups?: GroupCommitter;
  /** Enhanced mode: application ACKs go back to the sender's configured Endpoint through this. */
  outbound?: OutboundDeps;
  /** Public FHIR base (for fullUrls in transaction responses). */
  fhirBase: string;
  log: Logger;
  /** The audit trail: one AuditEvent per message received (replays of a stored one add none). */
  audit?: AuditLog;
}

export interface InboundResult {
  /** The ACK to send on the connection; undefined when the sender asked for none (MSH-15 NE / ER / SU). */
  ack?: string;
  ackCode: AckCode;
  messageId?: string;
  duplicate?: boolean;
  status: store.MessageStatus;
  resources?: string[];
  errors?: AckError[];
  /** Enhanced mode: the application ACK (AA / AE), sent to the sender's endpoint per MSH-16. */
  appAck?: string;
  /** Enhanced mode: processing continues after the commit ACK; wait for it before the next message. */
  processing?: Promise<InboundResult>;
}

/** MSH-18 8859/x -> latin1; everything else is read as UTF-8. */
export function decode(raw: Buffer): string {
  const ascii = raw.subarray(0, Math.min(raw.length, 4096)).toString('latin1');
  const msh = ascii.split(/\r|\n/)[0] ?? '';
  const sep = msh[3] ?? '|';
  const charset = (msh.split(sep)[17] ?? '').toUpperCase();
  return /8859/.test(charset) ? raw.toString('latin1') : raw.toString('utf8');
}

interface AckMode {
  enhanced: boolean;
  /** MSH-15 accept ack type, MSH-16 application ack type (AL, NE, ER, SU). */
  accept: string;
  application: string;
}

function ackMode(message: Message | undefined): AckMode {
  const accept = message?.msh.get(15).toUpperCase() ?? '';
  const application = message?.msh.get(16).toUpperCase() ?? '';
  if (!accept && !application) return { enhanced: false, accept: '', application: '' };
  return { enhanced: true, accept: accept || 'AL', application: application || 'AL' };
}

/** Whether an ack of this outcome is sent under condition AL / NE / ER / SU. */
function wanted(condition: string, success: boolean): boolean {
  if (condition === 'NE') return false;
  if (condition === 'ER') return !success;
  if (condition === 'SU') return success;
  return true;
}

function errorOf(e: V2Error): AckError {
  return { code: e.code, text: e.message, location: e.location };
}

export async function receive(deps: InboundDeps, raw: Buffer, via: 'mllp' | 'http'): Promise<InboundResult> {
  const text = decode(raw);
  let message: Message | undefined;
  let headerError: V2Error | undefined;
  try {
    message = parseMessage(text);
    checkHeader(message);
  } catch (e) {
    if (!(e instanceof V2Error)) throw e;
    headerError = e;
    message ??= e.partial;
  }
  const mode = ackMode(message);
  const target = ackTargetOf(message);
  const sender = message ? senderOf(message) : '';
  const controlId = message?.controlId || undefined;
  const messageType = message ? [message.messageCode, message.triggerEvent].filter(Boolean).join('^') || undefined : undefined;
  const audited = (r: InboundResult): InboundResult => {
    if (deps.audit && !r.duplicate) {
      const description = r.errors?.map((e) => e.text).join('; ');
      deps.audit.message({ sender, messageType, controlId, messageId: r.messageId, via, ackCode: r.ackCode, resources: r.resources ?? [], description });
    }
    return r;
  };

  if (headerError) {
    // Content that cannot be a message we process: AR (CR), or AE (CE) for a broken segment.
    const code: AckCode = headerError.reject ? (mode.enhanced ? 'CR' : 'AR') : mode.enhanced ? 'CE' : 'AE';
    const errors = [errorOf(headerError)];
    const ack = buildAck(target, code, errors);
    const stored = await store.insertMessage(deps.db, {
      sender,
      controlId,
      messageType,
      version: message?.version || undefined,
      via,
      raw,
      status: 'rejected',
      ackCode: code,
      ack,
      errors,
    });
    if (stored.duplicate) return replay(stored.duplicate);
    const send = !mode.enhanced || wanted(mode.accept, false);
    return audited({ ack: send ? ack : undefined, ackCode: code, messageId: stored.id, status: 'rejected', errors });
  }

  const msg = message as Message;
  if (!mode.enhanced) return audited(await receiveOriginal(deps, msg, { sender, controlId, messageType, version: msg.version, via, raw, status: 'received' }));

  // Enhanced mode: the commit ACK says "safely stored", so the raw message commits first; the
  // application ACK comes from processing afterwards.
  const stored = await store.insertMessage(deps.db, { sender, controlId, messageType, version: msg.version, via, raw, status: 'received' });
  if (stored.duplicate && stored.duplicate.status !== 'received') return replay(stored.duplicate);
  const commit = buildAck(target, 'CA');
  await store.recordAck(deps.db, stored.id, 'CA', commit);
  const held = deps.testHoldMs ? new Promise((r) => setTimeout(r, deps.testHoldMs)) : Promise.resolve();
  const processing = held.then(() => processStored(deps, stored.id, msg, mode)).then(async (result) => {
    audited(result);
    await returnApplicationAck(deps, result, sender, mode);
    return result;
  });
  processing.catch(() => {});
  return { ack: wanted(mode.accept, true) ? commit : undefined, ackCode: 'CA', messageId: stored.id, status: 'received', processing };
}

/** Thrown inside the transaction to undo a refused message's writes; carries the refusal. */
class Refused extends Error {
  readonly reason: unknown;
  constructor(reason: unknown) {
    super('refused');
    this.reason = reason;
  }
}

/**
 * Original mode: the raw message, its resources and its outcome commit together, and the ACK
 * goes only after that commit. If the process dies before it, the sender got no ACK and
 * resends: nothing is lost. A refused message rolls back whole (no partial data) and is then
 * stored on its own with its AE. A database failure throws: no ACK, the sender resends.
 */
async function receiveOriginal(deps: InboundDeps, msg: Message, row: store.NewMessage): Promise<InboundResult> {
  const target = ackTargetOf(msg);
  let plan: MessagePlan;
  try {
    plan = mapMessage(msg);
  } catch (e) {
    return storeRefusal(deps, msg, row, e);
  }
  const ack = buildAck(target, 'AA', plan.warnings);
  if (deps.groups && writableAtOnce(plan)) {
    const grouped = await deps.groups.submit({ plan, row, ack });
    if (grouped) return { ack, ackCode: 'AA', messageId: grouped.messageId, status: 'processed', resources: grouped.resources };
  }
  const outcome: store.Outcome = { status: 'processed', ackCode: 'AA', ack, notes: plan.notes };
  // commitWith(last): the last statement, after which the transaction commits.
  const body = async (client: Queryable, commitWith: <T>(last: Promise<T>) => Promise<T>): Promise<InboundResult> => {
    const repo = new Repository(client, { baseUrl: deps.fhirBase });
    // First round trip: BEGIN, the claim (locks, clock rows) and the match of the upserts'
    // identifiers, sent together; the match runs after the claim, so its snapshot sees what a
    // writer holding the same locks committed.
    const claimed = store.reserveAndClaim(client, claimOf(plan));
    const matched = writableAtOnce(plan) ? matchPlan(repo, plan) : undefined;
    matched?.catch(() => {}); // a failure shows through the claim's first
    const { id, stale } = await claimed;
    let planned: PlanBatch | undefined;
    try {
      planned = matched ? batchFor(repo, plan, stale, await matched) : undefined;
    } catch (e) {
      throw new Refused(e);
    }
    if (!planned) {
      // Merges, and plans one statement cannot write: entry by entry.
      let written: string[];
      try {
        written = await writePlan(deps, client, plan, id, stale);
      } catch (e) {
        throw new Refused(e);
      }
      await commitWith(store.insertFinished(client, [{ id, row, outcome: { ...outcome, resources: written } }]));
      return { ack, ackCode: 'AA', messageId: id, status: 'processed', resources: written };
    }
    noteStale(plan, stale);
    const [resources] = await writeAndCommit(client, commitWith, repo, [{ id, row, outcome, planned }], (e) => new Refused(e));
    return { ack, ackCode: 'AA', messageId: id, status: 'processed', resources };
  };
  try {
    if (!deps.pipelined) return await deps.db.transaction((client) => body(client, (last) => last));
    const tx = await PipelinedTransaction.open(deps.pipelined);
    try {
      return await body(tx, (last) => tx.commitWith(last));
    } catch (e) {
      await tx.rollback();
      throw e;
    } finally {
      tx.release();
    }
  } catch (e) {
    // Stored before (a resend, or a twin sent at the same moment): everything above rolled back;
    // the stored one answers (or is finished, if a crash left it unprocessed).
    if (store.isDuplicateKey(e)) return receiveStored(deps, msg, row);
    if (!(e instanceof Refused)) throw e;
    return storeRefusal(deps, msg, row, e.reason, plan.notes);
  }
}

/** A message whose (sender, MSH-10) is stored already: its ACK again, or finish it. */
async function receiveStored(deps: InboundDeps, msg: Message, row: store.NewMessage): Promise<InboundResult> {
  const stored = await store.insertMessage(deps.db, row);
  if (!stored.duplicate) return processStored(deps, stored.id, msg);
  if (stored.duplicate.status !== 'received') return replay(stored.duplicate);
  return processStored(deps, stored.id, msg);
}

/** Stores a message whose content was refused (mapping or FHIR validation) with its AE. */
async function storeRefusal(deps: InboundDeps, msg: Message, row: store.NewMessage, reason: unknown, notes?: string[]): Promise<InboundResult> {
  const errors = [classify(reason)];
  logRefusal(deps, reason, errors[0]);
  const ack = buildAck(ackTargetOf(msg), 'AE', errors);
  const stored = await store.insertMessage(deps.db, { ...row, status: 'error', ackCode: 'AE', ack, errors, notes, processed: true });
  if (stored.duplicate) {
    if (stored.duplicate.status !== 'received') return replay(stored.duplicate);
    return processStored(deps, stored.id, msg);
  }
  return { ack, ackCode: 'AE', messageId: stored.id, status: 'error', errors };
}

function logRefusal(deps: InboundDeps, e: unknown, error: AckError, messageId?: string): void {
  if (!(e instanceof V2Error) && !(e instanceof FhirError)) deps.log.error({ err: e, messageId }, 'HL7 v2 message processing failed');
  else deps.log.info({ messageId, error: error.text }, 'HL7 v2 message refused');
}

/** Enhanced mode, after processing: the application ACK to the sender, as MSH-16 asks. */
async function returnApplicationAck(deps: InboundDeps, result: InboundResult, sender: string, mode: AckMode): Promise<void> {
  if (!result.appAck || !result.messageId || result.duplicate) return;
  if (!wanted(mode.application, result.ackCode === 'AA')) return;
  if (!deps.outbound) return;
  try {
    const endpoints = await sendApplicationAck(deps.outbound, result.messageId, sender, result.appAck);
    await store.addNote(
      deps.db,
      result.messageId,
      endpoints.length
        ? `Application ACK ${result.ackCode} queued for ${endpoints.join(', ')}`
        : `No MLLP Endpoint is configured for sender ${sender}: the application ACK is kept in the store (app_ack) only`,
    );
  } catch (err) {
    deps.log.error({ err, messageId: result.messageId }, 'could not queue the HL7 v2 application ACK');
  }
}

/** MSH-15 / MSH-16 of an application ACK we send: commit ACK wanted back, no application ACK. */
const APP_ACK_TYPES = { accept: 'AL', application: 'NE' };

function replay(m: store.StoredMessage): InboundResult {
  return {
    ack: m.ack ?? undefined,
    ackCode: (m.ackCode ?? 'AA') as AckCode,
    messageId: m.id,
    duplicate: true,
    status: m.status,
    resources: m.resources,
  };
}

/** Maps and writes a stored message in its own transaction (enhanced mode, reprocessing). */
export async function processStored(deps: InboundDeps, id: string, message: Message, mode: AckMode = ackMode(message)): Promise<InboundResult> {
  return deps.db.transaction((client) => processIn(deps, client, id, message, mode));
}

/**
 * Maps and writes a stored message inside the open transaction: the FHIR writes run under a
 * savepoint, so a refusal undoes all of them (no partial data) and records the error instead.
 */
async function processIn(deps: InboundDeps, client: Queryable, id: string, message: Message, mode: AckMode): Promise<InboundResult> {
  const target = ackTargetOf(message);
  const row = await store.lockMessage(client, id);
  if (row && row.status === 'processed') return replay(row);
  await client.query('SAVEPOINT hl7_message');
  try {
    const plan = mapMessage(message);
    const written = await writePlan(deps, client, plan, id);
    await client.query('RELEASE SAVEPOINT hl7_message');
    const ack = buildAck(target, 'AA', plan.warnings, undefined, mode.enhanced ? APP_ACK_TYPES : undefined);
    await store.recordOutcome(client, id, {
      status: 'processed',
      ackCode: 'AA',
      ack: mode.enhanced ? undefined : ack,
      appAck: mode.enhanced ? ack : undefined,
      notes: plan.notes,
      resources: written,
    });
    return { ack: mode.enhanced ? undefined : ack, appAck: mode.enhanced ? ack : undefined, ackCode: 'AA', messageId: id, status: 'processed', resources: written };
  } catch (e) {
    // If the database itself failed, this throws too: no ACK, the sender resends.
    await client.query('ROLLBACK TO SAVEPOINT hl7_message');
    const errors = [classify(e)];
    logRefusal(deps, e, errors[0], id);
    const ack = buildAck(target, 'AE', errors, undefined, mode.enhanced ? APP_ACK_TYPES : undefined);
    await store.recordOutcome(client, id, {
      status: 'error',
      ackCode: 'AE',
      ack: mode.enhanced ? undefined : ack,
      appAck: mode.enhanced ? ack : undefined,
      errors,
      resources: [],
    });
    return { ack: mode.enhanced ? undefined : ack, appAck: mode.enhanced ? ack : undefined, ackCode: 'AE', messageId: id, status: 'error', errors };
  }
}

/**
 * Writes the plan inside the open transaction (claiming its keys first unless the caller did);
 * returns Type/id/_history/v of what was written.
 */
async function writePlan(deps: InboundDeps, client: Queryable, plan: MessagePlan, messageId: string, claimed?: Set<string>): Promise<string[]> {
  const repo = new Repository(client, { baseUrl: deps.fhirBase });
  const stale = claimed ?? (await store.claimKeys(client, messageId, claimOf(plan)));
  noteStale(plan, stale);
  const locations =
    (batchable(plan) ? await writePlanBatched(repo, plan, stale) : undefined) ?? (await writePlanViaEngine(fhirContext(deps, repo), plan, stale));
  const written = locations.filter(Boolean);
  if (plan.merge) {
    const index = plan.entries.findIndex((p) => p.entry.fullUrl === plan.merge?.survivor);
    const location = locations[index] ?? '';
    const survivorId = location.split('/')[1];
    if (survivorId) {
      const merge = await applyMerge(repo, survivorId, plan.merge.prior);
      if (merge.merged.length === 0) plan.notes.push('MRG-1 names no known patient: the prior identifiers were added to the survivor');
      written.push(...merge.merged, ...merge.repointed);
    }
  }
  return written;
}

/** Notes the keys the message did not overwrite (newer data was there). */
function noteStale(plan: MessagePlan, stale: Set<string>): void {
  plan.notes.push(...staleNote(stale));
}

export function fhirContext(deps: InboundDeps, repo: Repository): FhirContext {
  return { repo, fhirBase: deps.fhirBase, defaultCount: 20, maxCount: 1000, maxBinaryBytes: 0, log: deps.log };
}

/** Any processing failure -> one ERR entry. */
function classify(e: unknown): AckError {
  if (e instanceof V2Error) return errorOf(e);
  if (e instanceof FhirError) {
    const issue = e.outcome.issue?.[0];
    const text = `The mapped FHIR resources were refused (${e.status}): ${issue?.diagnostics ?? issue?.details?.text ?? issue?.code ?? 'invalid'}${issue?.expression?.length ? ` at ${issue.expression.join(', ')}` : ''}`;
    const code = e.status === 412 ? ErrorCode.duplicateKey : e.status === 409 ? ErrorCode.recordLocked : e.status >= 500 ? ErrorCode.internalError : ErrorCode.dataType;
    return { code, text };
  }
  return { code: ErrorCode.internalError, text: 'Internal error while processing the message; it is stored and can be reprocessed' };
}

/** Dry run: the transaction Bundle a message maps to (nothing is stored). */
export function dryRun(raw: Buffer): { bundle: Bundle; notes: string[]; message: Message } {
  const message = parseMessage(decode(raw));
  checkHeader(message);
  const plan = mapMessage(message);
  return { bundle: plan.bundle(), notes: plan.notes, message };
}

/** Reprocesses a stored message (after a fix, or one left unfinished by a crash). */
export async function reprocess(deps: InboundDeps, id: string): Promise<InboundResult | undefined> {
  const raw = await store.getRaw(deps.db, id);
  if (!raw) return undefined;
  const text = decode(raw);
  let message: Message;
  try {
    message = parseMessage(text);
    checkHeader(message);
  } catch (e) {
    if (!(e instanceof V2Error)) throw e;
    const errors = [errorOf(e)];
    const code: AckCode = e.reject ? 'AR' : 'AE';
    await store.recordOutcome(deps.db, id, { status: 'rejected', ackCode: code, errors, resources: [] });
    return { ackCode: code, messageId: id, status: 'rejected', errors };
  }
  return processStored(deps, id, message);
}

/** Processes messages a crashed process stored but never finished. */
export async function recoverUnfinished(deps: InboundDeps, olderThanMs = 5_000): Promise<number> {
  const ids = await store.unfinishedMessages(deps.db, olderThanMs, 1000);
  for (const id of ids) await reprocess(deps, id);
  return ids.length;
}
