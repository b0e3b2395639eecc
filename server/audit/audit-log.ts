// The audit trail: an AuditEvent (IHE Basic Audit Log Patterns shape) for every FHIR
// interaction, sign-in and failed sign-in. Requests only append to an in-memory queue; a
// flusher writes the queue in batches (one INSERT statement per batch through the repository's
// bulk path), so auditing costs a request almost nothing. stop() flushes what is left, so a
// graceful shutdown loses nothing; a crash can lose at most the last flush interval.
//
// Successful reads are the high-volume case: within one flush interval, the reads of one
// agent with the same outcome become one AuditEvent whose period spans them and whose entities
// list every resource (and patient) read. Every read is still recorded, who / what / when to
// the flush interval, at a fraction of the cost of one event (and ~25 index rows) per read.
// Successful searches are folded the same way, each query kept as an entity. Writes, operations
// and failures keep one event each. HL7 v2 messages stored without
// error are folded the same way per sender (a feed sends hundreds a second; each message keeps
// its own entry in the event, and the message store keeps every message with its ACK).
import { randomUUID } from 'node:crypto';
import type { AuditEvent, AuditEventAgent, AuditEventEntity, Coding } from '@medplum/fhirtypes';
import type { AuthContext } from '../auth/context.ts';
import type { Repository } from '../fhir/repository.ts';
import type { Logger } from '../logger.ts';

const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
const ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';

/** FHIR interaction -> BALP action code (query is E, "execute"). */
const ACTION: Record<string, AuditEvent['action']> = {
  read: 'R',
  vread: 'R',
  'history-instance': 'R',
  'history-type': 'R',
  'history-system': 'R',
  capabilities: 'R',
  'search-type': 'E',
  'search-system': 'E',
  create: 'C',
  update: 'U',
  patch: 'U',
  'conditional-update': 'U',
  'conditional-patch': 'U',
  delete: 'D',
  'conditional-delete': 'D',
  transaction: 'E',
  batch: 'E',
  operation: 'E',
};

export interface InteractionAudit {
  /** restful-interaction code (read, create, search-type, operation...) */
  interaction: string;
  status: number;
  auth?: AuthContext;
  /** The client's address. */
  address?: string;
  requestId?: string;
  /** Type/id of the resource acted on (when there is one). */
  resource?: string;
  /** Patient/id the data belongs to (when known). */
  patient?: string;
  /** The query string of a search (recorded base64, as BALP asks). */
  query?: string;
  /** Operation name without '$' */
  operation?: string;
  description?: string;
}

export interface LoginAudit {
  success: boolean;
  username: string;
  fhirUser?: string;
  clientId?: string;
  address?: string;
  reason?: string;
}

/** An HL7 v2 message received (MLLP or POST /hl7/v2?commit=true) and what it wrote. */
export interface MessageAudit {
  /** MSH-3|MSH-4 */
  sender: string;
  /** e.g. ADT^A01 */
  messageType?: string;
  /** MSH-10 */
  controlId?: string;
  /** Our stored message's id (admin API /hl7/v2/messages/{id}). */
  messageId?: string;
  via: 'mllp' | 'http';
  /** The ACK code answered: AA / CA stored, AE / AR / CE / CR refused. */
  ackCode: string;
  /** Type/id of every resource the message wrote. */
  resources: string[];
  description?: string;
}

/** Reads (or searches) folded into one event: same agent, same interaction, successful, one flush window. */
interface ReadGroup {
  first: string;
  last: string;
  auth?: AuthContext;
  address?: string;
  interaction: string;
  resources: Set<string>;
  patients: Set<string>;
  /** Searches: each query string, in order (one entity each). */
  queries: string[];
}

const FOLDED_READS = new Set(['read', 'vread', 'history-instance']);
/**
 * Successful searches are folded too: an AuditEvent costs ~1 ms of index work to store, so at
 * 1,000+ searches a second one event per search fell behind and the queue grew without bound
 * (measured with bench:search). Each query keeps its own entity in the folded event.
 */
const FOLDED_SEARCHES = new Set(['search-type', 'search-system']);

export class AuditLog {
  private queue: AuditEvent[] = [];
  private reads = new Map<string, ReadGroup>();
  private imports = new Map<string, { first: string; last: string; sender: string; via: string; entity: AuditEventEntity[] }>();
  private timer?: NodeJS.Timeout;
  private flushing?: Promise<void>;
  private readonly repo: Repository;
  private readonly log: Logger;
  private readonly serverName: string;
  private readonly batchSize: number;

  constructor(repo: Repository, log: Logger, options: { serverName: string; flushMs?: number; batchSize?: number }) {
    this.repo = repo;
    this.log = log;
    this.serverName = options.serverName;
    this.batchSize = options.batchSize ?? 500;
    this.timer = setInterval(() => void this.flush(), options.flushMs ?? 250);
    this.timer.unref();
  }

  /** Records a FHIR interaction. Never throws and never waits for the database. */
  interaction(a: InteractionAudit): void {
    if ((FOLDED_READS.has(a.interaction) || FOLDED_SEARCHES.has(a.interaction)) && a.status < 400 && !a.operation) {
      const key = `${a.interaction}|${a.auth?.jti ?? ''}|${a.address ?? ''}`;
      const now = new Date().toISOString();
      let group = this.reads.get(key);
      if (!group) {
        group = { first: now, last: now, auth: a.auth, address: a.address, interaction: a.interaction, resources: new Set(), patients: new Set(), queries: [] };
        this.reads.set(key, group);
      }
      group.last = now;
      if (a.query !== undefined) group.queries.push(a.query);
      if (a.resource) group.resources.add(a.resource);
      if (a.patient) group.patients.add(a.patient);
      return;
    }
    const outcome = a.status < 400 ? '0' : a.status < 500 ? '4' : '8';
    const subtype: Coding = a.operation
      ? { system: 'urn:ietf:rfc:3986', code: `$${a.operation}` }
      : { system: 'http://hl7.org/fhir/restful-interaction', code: a.interaction };
    const entity: AuditEventEntity[] = [];
    if (a.patient) {
      entity.push({ what: { reference: a.patient }, type: { system: ENTITY_TYPE, code: '1' }, role: { system: OBJECT_ROLE, code: '1' } });
    }
    if (a.resource && a.resource !== a.patient) {
      entity.push({ what: { reference: a.resource }, type: { system: ENTITY_TYPE, code: '2' }, role: { system: OBJECT_ROLE, code: '4' } });
    }
    if (a.query !== undefined) {
      entity.push({ type: { system: ENTITY_TYPE, code: '2' }, role: { system: OBJECT_ROLE, code: '24' }, query: Buffer.from(a.query).toString('base64') });
    }
    if (a.requestId) entity.push({ type: { system: ENTITY_TYPE, code: '4' }, detail: [{ type: 'X-Request-Id', valueString: a.requestId }] });
    this.push({
      resourceType: 'AuditEvent',
      type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'RESTful Operation' },
      subtype: [subtype],
      action: ACTION[a.interaction] ?? 'E',
      recorded: new Date().toISOString(),
      outcome,
      outcomeDesc: a.description ?? (a.status < 400 ? undefined : `HTTP ${a.status}`),
      agent: this.agents(a.auth, a.address),
      source: this.source(),
      entity: entity.length ? entity : undefined,
    });
  }

  /** Records a sign-in attempt (IHE BALP Login). */
  login(a: LoginAudit): void {
    const user: AuditEventAgent = {
      type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP', display: 'information recipient' }] },
      who: a.fhirUser ? { reference: a.fhirUser, display: a.username } : { identifier: { value: a.username } },
      requestor: true,
      network: a.address ? { address: a.address, type: '2' } : undefined,
    };
    this.push({
      resourceType: 'AuditEvent',
      type: { system: DCM, code: '110114', display: 'User Authentication' },
      subtype: [{ system: DCM, code: '110122', display: 'Login' }],
      action: 'E',
      recorded: new Date().toISOString(),
      outcome: a.success ? '0' : '4',
      outcomeDesc: a.success ? undefined : (a.reason ?? 'Sign-in failed'),
      agent: [user, ...(a.clientId ? [{ who: { identifier: { value: a.clientId } }, requestor: false, type: { coding: [{ system: DCM, code: '110153', display: 'Source Role ID' }] } }] : [])],
      source: this.source(),
    });
  }

  /**
   * Records an inbound HL7 v2 message: DICOM "Import", the sender as requestor, the message (MSH-9,
   * MSH-10, ACK) and what it wrote. Stored messages of one sender are folded per flush window.
   */
  message(a: MessageAudit): void {
    const ok = a.ackCode === 'AA' || a.ackCode === 'CA';
    const entity: AuditEventEntity[] = a.resources.map((r) =>
      r.startsWith('Patient/')
        ? { what: { reference: r }, type: { system: ENTITY_TYPE, code: '1' }, role: { system: OBJECT_ROLE, code: '1' } }
        : { what: { reference: r }, type: { system: ENTITY_TYPE, code: '2' }, role: { system: OBJECT_ROLE, code: '4' } },
    );
    const detail = [
      ...(a.messageType ? [{ type: 'MSH-9', valueString: a.messageType }] : []),
      ...(a.controlId ? [{ type: 'MSH-10', valueString: a.controlId }] : []),
      { type: 'ACK', valueString: a.ackCode },
    ];
    entity.push({
      what: a.messageId ? { identifier: { system: 'urn:wardlink:hl7v2:message', value: a.messageId } } : undefined,
      type: { system: ENTITY_TYPE, code: '2' },
      role: { system: OBJECT_ROLE, code: '3', display: 'Report' },
      detail,
    });
    const now = new Date().toISOString();
    if (ok) {
      const key = `${a.sender}|${a.via}`;
      const group = this.imports.get(key) ?? { first: now, last: now, sender: a.sender, via: a.via, entity: [] };
      group.last = now;
      group.entity.push(...entity);
      this.imports.set(key, group);
      return;
    }
    this.push(this.importEvent(a.sender, a.via, entity, now, a.description ?? `HL7 v2 message answered ${a.ackCode}`));
  }

  private importEvent(sender: string, via: string, entity: AuditEventEntity[], recorded: string, failure?: string, period?: { start: string; end: string }): AuditEvent {
    return {
      resourceType: 'AuditEvent',
      type: { system: DCM, code: '110107', display: 'Import' },
      subtype: [{ system: 'urn:wardlink:hl7v2:via', code: via }],
      action: 'C',
      period,
      recorded,
      outcome: failure ? '4' : '0',
      outcomeDesc: failure,
      agent: [
        {
          type: { coding: [{ system: DCM, code: '110153', display: 'Source Role ID' }] },
          who: { identifier: { system: 'urn:wardlink:hl7v2:sender', value: sender || 'unknown' } },
          requestor: true,
        },
        { type: { coding: [{ system: DCM, code: '110152', display: 'Destination Role ID' }] }, who: { display: this.serverName }, requestor: false },
      ],
      source: this.source(),
      entity,
    };
  }

  /** One AuditEvent per sender for the messages stored in this flush window. */
  private foldImports(): void {
    const groups = [...this.imports.values()];
    this.imports.clear();
    for (const g of groups) this.push(this.importEvent(g.sender, g.via, g.entity, g.last, undefined, { start: g.first, end: g.last }));
  }

  private agents(auth: AuthContext | undefined, address: string | undefined): AuditEventAgent[] {
    const agents: AuditEventAgent[] = [
      {
        type: { coding: [{ system: DCM, code: '110153', display: 'Source Role ID' }] },
        who: { identifier: { value: auth?.clientId ?? 'anonymous' } },
        requestor: false,
        network: address ? { address, type: '2' } : undefined,
      },
      {
        type: { coding: [{ system: DCM, code: '110152', display: 'Destination Role ID' }] },
        who: { display: this.serverName },
        requestor: false,
      },
    ];
    if (auth) {
      agents.push({
        type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP', display: 'information recipient' }] },
        who: auth.fhirUser ? { reference: auth.fhirUser } : { identifier: { value: auth.subject } },
        requestor: true,
        policy: [auth.jti],
      });
    }
    return agents;
  }

  private source(): AuditEvent['source'] {
    return {
      observer: { display: this.serverName },
      type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4', display: 'Application Server' }],
    };
  }

  private push(event: AuditEvent): void {
    // Built by the server, valid by construction: the bulk path skips per-event validation.
    event.id = randomUUID();
    event.meta = { versionId: '1', lastUpdated: event.recorded };
    this.queue.push(event);
    if (this.queue.length >= this.batchSize) void this.flush();
  }

  /** One AuditEvent per group of folded reads or searches. */
  private foldReads(): void {
    const groups = [...this.reads.values()];
    this.reads.clear();
    for (const g of groups) {
      const entity: AuditEventEntity[] = [
        ...[...g.patients].map((p) => ({ what: { reference: p }, type: { system: ENTITY_TYPE, code: '1' }, role: { system: OBJECT_ROLE, code: '1' } })),
        ...[...g.resources]
          .filter((r) => !g.patients.has(r))
          .map((r) => ({ what: { reference: r }, type: { system: ENTITY_TYPE, code: '2' }, role: { system: OBJECT_ROLE, code: '4' } })),
        ...g.queries.map((q) => ({ type: { system: ENTITY_TYPE, code: '2' }, role: { system: OBJECT_ROLE, code: '24' }, query: Buffer.from(q).toString('base64') })),
      ];
      this.push({
        resourceType: 'AuditEvent',
        type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'RESTful Operation' },
        subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: g.interaction }],
        action: FOLDED_SEARCHES.has(g.interaction) ? 'E' : 'R',
        period: { start: g.first, end: g.last },
        recorded: g.last,
        outcome: '0',
        agent: this.agents(g.auth, g.address),
        source: this.source(),
        entity: entity.length ? entity : undefined,
      });
    }
  }

  /** Writes everything queued so far (one statement per batch). */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.reads.size) this.foldReads();
    if (this.imports.size) this.foldImports();
    if (this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.queue.length);
    this.flushing = (async () => {
      try {
        for (let i = 0; i < batch.length; i += this.batchSize) {
          await this.repo.insertPrepared(batch.slice(i, i + this.batchSize));
        }
      } catch (err) {
        // Keep the events for the next attempt rather than lose them.
        this.queue.unshift(...batch);
        this.log.error({ err, events: batch.length }, 'audit flush failed; will retry');
      }
    })();
    try {
      await this.flushing;
    } finally {
      this.flushing = undefined;
    }
  }

  /** Stops the timer and writes what is left (graceful shutdown). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
