// Shared setup for the HL7 v2 tests: a migrated fresh database, the real MLLP listener on port 0,
// and a small MLLP client that sends frames over a real TCP socket and reads the answers.
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { migrate } from '../../server/db/migrate.ts';
import { createDb, type Db } from '../../server/db/pool.ts';
import { loadDefinitions } from '../../server/fhir/definitions.ts';
import { Repository } from '../../server/fhir/repository.ts';
import { findMatches } from '../../server/fhir/search/search.ts';
import { startHl7, type RunningHl7 } from '../../server/hl7/index.ts';
import type { InboundDeps } from '../../server/hl7/inbound/process.ts';
import { MllpDecoder, frame } from '../../server/hl7/mllp.ts';
import { createInProcessQueue } from '../../server/jobs/inprocess.ts';
import { createOutboxRelay } from '../../server/jobs/outbox-relay.ts';
import { createLogger } from '../../server/logger.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { corpusDir } from '../support/fhir.ts';

export const log = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
export const FHIR_BASE = 'http://wardlink.test/fhir';
export const hl7Dir = path.join(corpusDir, 'hl7v2');

export interface Hl7Env {
  db: Db;
  database: TestDatabase;
  hl7: RunningHl7;
  deps: InboundDeps;
  repo: Repository;
  close(): Promise<void>;
}

export async function startHl7Env(options: { idleTimeoutMs?: number; jobs?: boolean } = {}): Promise<Hl7Env> {
  loadDefinitions();
  const database = await createTestDatabase();
  await migrate(database.connectionString);
  const db = createDb(database.connectionString, database.embedded ? 1 : 5, { namedStatements: !database.embedded });
  // With jobs: the real in-process job queue and outbox relay, so outbound messages (application
  // ACKs, OSU^O51, REF^I12) flow from resource events as in the server.
  const jobs = options.jobs ? createInProcessQueue({ db, log, pollMs: 50 }) : undefined;
  const outbox = options.jobs ? createOutboxRelay({ db, log, pollMs: 50 }) : undefined;
  const hl7 = await startHl7({ db, log, fhirBase: FHIR_BASE, port: 0, host: '127.0.0.1', idleTimeoutMs: options.idleTimeoutMs, jobs, outbox });
  outbox?.start();
  return {
    db,
    database,
    hl7,
    deps: { db, log, fhirBase: FHIR_BASE },
    repo: new Repository(db, { baseUrl: FHIR_BASE }, db),
    async close() {
      await hl7.stop();
      await outbox?.stop();
      await jobs?.close();
      await db.close();
      await database.drop();
    },
  };
}

/** One MLLP connection: send a message, get the next answer frame (text). */
export class MllpClient {
  private readonly socket: net.Socket;
  private readonly decoder = new MllpDecoder();
  private readonly frames: string[] = [];
  private waiters: ((f: string) => void)[] = [];
  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      for (const f of this.decoder.push(chunk)) {
        const text = f.toString('utf8');
        const w = this.waiters.shift();
        if (w) w(text);
        else this.frames.push(text);
      }
    });
  }

  /** Resolves when the server closed the connection. */
  get closed(): Promise<void> {
    if (this.socket.destroyed || this.socket.readableEnded) return Promise.resolve();
    return new Promise((resolve) => this.socket.once('close', () => resolve()));
  }

  static async connect(port: number): Promise<MllpClient> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.setNoDelay(true);
    return new MllpClient(socket);
  }

  sendRaw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  send(message: string | Buffer): void {
    this.socket.write(frame(message));
  }

  /** The next answer, or undefined after timeoutMs. */
  next(timeoutMs = 10_000): Promise<string | undefined> {
    const ready = this.frames.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(undefined);
      }, timeoutMs);
      const waiter = (f: string) => {
        clearTimeout(timer);
        resolve(f);
      };
      this.waiters.push(waiter);
    });
  }

  async request(message: string | Buffer, timeoutMs?: number): Promise<string | undefined> {
    this.send(message);
    return this.next(timeoutMs);
  }

  close(): void {
    this.socket.end();
  }
}

export function corpusMessage(name: string): Buffer {
  return readFileSync(path.join(hl7Dir, name));
}

export function corpusNames(sub = ''): string[] {
  return readdirSync(path.join(hl7Dir, sub))
    .filter((f) => f.endsWith('.hl7'))
    .sort()
    .map((f) => (sub ? `${sub}/${f}` : f));
}

/** Parsed ACK: MSA-1, MSA-2 and ERR segments (fields split). */
export function parseAck(ack: string): { code: string; controlId: string; msh: string[]; err: string[][] } {
  const lines = ack.split('\r');
  const msh = lines.find((l) => l.startsWith('MSH'))?.split('|') ?? [];
  const msa = lines.find((l) => l.startsWith('MSA'))?.split('|') ?? [];
  return { code: msa[1] ?? '', controlId: msa[2] ?? '', msh, err: lines.filter((l) => l.startsWith('ERR')).map((l) => l.split('|')) };
}

/** An ACK's ERR segments as ERR-2 location, ERR-3 code, ERR-4 severity and ERR-8 text. */
export function errorsOf(ack: { err: string[][] }): { location: string; code: string; severity: string; text: string }[] {
  return ack.err.map((e) => ({ location: e[2], code: e[3].split('^')[0], severity: e[4], text: e[8] }));
}

/** The notes the message store keeps for a message (by its MSH-10). */
export async function storedNotes(env: Hl7Env, controlId: string): Promise<string[]> {
  const res = await env.db.query<{ notes: string[] | null }>('SELECT notes FROM hl7_message WHERE control_id = $1', [controlId]);
  return res.rows[0]?.notes ?? [];
}

/** Resources of type whose token param matches. */
export async function findBy(env: Hl7Env, type: string, params: [string, string][]): Promise<Record<string, any>[]> {
  const matches = await findMatches(env.db, type, params, 100);
  return Promise.all(matches.map((m) => env.repo.readResource(type, m.id)));
}

export async function countRows(env: Hl7Env, table: string): Promise<number> {
  const res = await env.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM "${table}" WHERE NOT deleted`);
  return Number(res.rows[0].n);
}

export function mkMessage(segments: string[]): string {
  return segments.join('\r');
}

/** Two MLLP frames in one buffer (one TCP write). */
export function frameBoth(a: string, b: string): Buffer {
  return Buffer.concat([frame(a), frame(b)]);
}
