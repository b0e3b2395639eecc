// The HL7 v2 feed: startHl7 starts the MLLP listener (and finishes messages a crash left
// unprocessed); createHl7Router (http.ts) is the HTTP door. server.ts wires both.
import type pg from 'pg';
import type { Db } from '../db/pool.ts';
import { createPipelinedPool } from './pipelined.ts';
import type { OutboxRelay } from '../jobs/outbox-relay.ts';
import type { JobQueue } from '../jobs/queue.ts';
import type { Logger } from '../logger.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import { recoverUnfinished, type InboundDeps } from './inbound/process.ts';
import { GroupCommitter } from './inbound/group.ts';
import { startListener } from './listener.ts';
import type { MllpServer } from './mllp.ts';
import { outboundListener, startOutboundWorker } from './outbound/queue.ts';
import { statusUpdateListener } from './outbound/reply.ts';

export { createHl7Router } from './http.ts';
export type { InboundDeps } from './inbound/process.ts';

export interface Hl7Deps {
  db: Db;
  log: Logger;
  /** Public FHIR base, e.g. http://localhost:8080/fhir */
  fhirBase: string;
  port: number;
  host: string;
  /** Close MLLP connections idle this long (default mllp.ts DEFAULT_IDLE_TIMEOUT_MS; 0: never). */
  idleTimeoutMs?: number;
  /** Pipeline the inbound transactions on real PostgreSQL (default true). */
  pipeline?: boolean;
  /**
   * With pipeline: original-mode messages that arrive together commit in one transaction
   * (group.ts); this many groups are written at once (default 2; 0: each message on its own).
   */
  groupConcurrency?: number;
  /** Start the MLLP listener (config HL7_ENABLED); the outbound side runs either way. */
  listen?: boolean;
  /** With both: outbound REF^I12 / SIU^S12 / ADT^A01 to Endpoint resources, through the job queue. */
  jobs?: JobQueue;
  outbox?: OutboxRelay;
  /** The audit trail (one AuditEvent per inbound message). */
  audit?: AuditLog;
}

export interface RunningHl7 {
  port: number;
  stop(): Promise<void>;
}

let running: RunningHl7 | undefined;

export async function startHl7(deps: Hl7Deps): Promise<RunningHl7> {
  const inbound: InboundDeps = { db: deps.db, log: deps.log.child({ component: 'hl7' }), fhirBase: deps.fhirBase, audit: deps.audit };
  const hold = Number(process.env.WARDLINK_TEST_HOLD_HL7_MS) || 0;
  if (hold > 0) {
    inbound.testHoldMs = hold;
    inbound.log.warn({ holdMs: hold }, 'TEST HOOK: enhanced-mode HL7 v2 processing held after the commit ACK (WARDLINK_TEST_HOLD_HL7_MS)');
  }
  // Pipelined connections for the inbound hot path, on real PostgreSQL only (not the embedded PGlite).
  const connectionString = deps.db.pool.options.connectionString;
  let pipelined: pg.Pool | undefined;
  if (deps.listen !== false && deps.pipeline !== false && connectionString && !(await embedded(deps.db))) {
    pipelined = createPipelinedPool(connectionString, Math.min(deps.db.pool.options.max ?? 10, 10));
    inbound.pipelined = pipelined;
    const concurrency = deps.groupConcurrency ?? 2;
    if (concurrency > 0) {
      inbound.groups = new GroupCommitter({ pool: pipelined, fhirBase: deps.fhirBase, concurrency, maxGroup: 16 });
    }
  }
  let unsubscribe: (() => void) | undefined;
  if (deps.jobs && deps.outbox) {
    const outbound = { db: deps.db, jobs: deps.jobs, log: inbound.log, fhirBase: deps.fhirBase };
    startOutboundWorker(outbound);
    const offOutbound = deps.outbox.onResourceEvent(outboundListener(outbound));
    const offStatus = deps.outbox.onResourceEvent(statusUpdateListener(outbound));
    unsubscribe = () => {
      offOutbound();
      offStatus();
    };
    inbound.outbound = outbound;
  }
  const server: MllpServer | undefined = deps.listen === false ? undefined : await startListener(inbound, { port: deps.port, host: deps.host, idleTimeoutMs: deps.idleTimeoutMs });
  // Messages stored by a process that died before finishing them are processed now.
  const recovered = await recoverUnfinished(inbound, 0).catch((err) => {
    inbound.log.error({ err }, 'could not recover unfinished HL7 v2 messages');
    return 0;
  });
  if (server) inbound.log.info({ port: server.port, recovered }, 'HL7 v2 MLLP listener started');
  const handle: RunningHl7 = {
    port: server?.port ?? 0,
    async stop() {
      unsubscribe?.();
      await server?.close();
      await pipelined?.end();
      if (running === handle) running = undefined;
    },
  };
  running = handle;
  return handle;
}

/**
 * True on the embedded PGlite (asked over the pool's own connection: its socket server serves
 * one connection at a time, so a second one must not be opened just to ask).
 */
async function embedded(db: Db): Promise<boolean> {
  const res = await db.query<{ version: string }>('SELECT version()');
  return res.rows[0].version.includes('PGlite');
}

export async function stopHl7(): Promise<void> {
  await running?.stop();
}
