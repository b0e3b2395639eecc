// The websocket channel (Backport IG): a client connects to WS_PATH on the server's own port,
// gets a token from $get-ws-binding-token, sends "bind-with-token <token>", receives one
// handshake Bundle per Subscription the token names, then event-notification and heartbeat
// Bundles for them. Several subscriptions (and several tokens) may share one socket; when a
// token expires its subscriptions are unbound (the client rebinds with a fresh token before).
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { EventRow, Payload } from './notification.ts';
import { buildBundle, NO_PAYLOAD, notificationBundle } from './notification.ts';
import type { LivePush, SubscriptionService } from './service.ts';

export const WS_PATH = '/fhir/ws';

interface Binding {
  expiresAt: number;
  lastSentAt: number;
  /** Highest event number sent on this socket (redelivered events are not sent twice). */
  lastEvent: bigint;
}

interface Conn {
  ws: WebSocket;
  bindings: Map<string, Binding>;
  /** Keeps each socket's messages in order while bundles are built asynchronously. */
  chain: Promise<void>;
  /** Had bindings once: closed when the last one goes (expired tokens, ended subscriptions). */
  hadBindings?: boolean;
}

export const hashToken = (token: string): string => createHash('sha256').update(token).digest('hex');

export async function issueBindingToken(service: SubscriptionService, ids: string[]): Promise<{ token: string; expiresAt: Date }> {
  const token = randomBytes(32).toString('base64url');
  const expiresAt = new Date(Date.now() + service.deps.config.subscriptions.wsTokenTtl * 1000);
  await service.deps.db.query(`INSERT INTO subscription_ws_token (token_hash, subscriptions, expires_at) VALUES ($1, $2, $3)`, [
    hashToken(token),
    ids,
    expiresAt.toISOString(),
  ]);
  await service.deps.db.query(`DELETE FROM subscription_ws_token WHERE expires_at < now() - interval '1 hour'`);
  return { token, expiresAt };
}

export class WebsocketHub implements LivePush {
  private readonly service: SubscriptionService;
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  private readonly bySub = new Map<string, Set<Conn>>();
  private readonly conns = new Set<Conn>();
  private readonly timer: NodeJS.Timeout;

  constructor(service: SubscriptionService) {
    this.service = service;
    this.wss.on('connection', (ws: WebSocket) => this.connected(ws));
    this.timer = setInterval(() => this.tick(), 1000);
    this.timer.unref();
  }

  /** Handles upgrades to WS_PATH on this HTTP server (other paths are left to other listeners). */
  attach(server: Server): () => void {
    const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (path !== WS_PATH) {
        if (server.listenerCount('upgrade') === 1) socket.destroy();
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => this.wss.emit('connection', ws, req));
    };
    server.on('upgrade', onUpgrade);
    return () => server.off('upgrade', onUpgrade);
  }

  close(): void {
    clearInterval(this.timer);
    for (const c of this.conns) c.ws.terminate();
    this.wss.close();
  }

  private connected(ws: WebSocket): void {
    const conn: Conn = { ws, bindings: new Map(), chain: Promise.resolve() };
    this.conns.add(conn);
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const text = data.toString().trim();
      const m = /^(bind-with-token|unbind-with-token)\s+(\S+)$/.exec(text);
      if (!m) return this.sendError(conn, `Unknown message: expected "bind-with-token <token>"`);
      void (m[1] === 'bind-with-token' ? this.bind(conn, m[2]) : this.unbind(conn, m[2])).catch((err: unknown) => {
        this.service.log.warn({ err }, 'websocket bind failed');
        this.sendError(conn, 'The token could not be bound');
      });
    });
    ws.on('close', () => this.drop(conn));
    ws.on('error', () => this.drop(conn));
  }

  private drop(conn: Conn): void {
    this.conns.delete(conn);
    for (const id of conn.bindings.keys()) this.bySub.get(id)?.delete(conn);
    conn.bindings.clear();
  }

  private sendError(conn: Conn, diagnostics: string): void {
    this.enqueue(conn, async () =>
      JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'security', diagnostics }] }),
    );
  }

  private enqueue(conn: Conn, build: () => Promise<string | undefined>): void {
    conn.chain = conn.chain
      .then(async () => {
        const text = await build();
        if (text && conn.ws.readyState === conn.ws.OPEN) conn.ws.send(text);
      })
      .catch((err: unknown) => this.service.log.warn({ err }, 'websocket send failed'));
  }

  private async lookup(token: string): Promise<{ ids: string[]; expiresAt: number } | undefined> {
    const res = await this.service.deps.db.query<{ subscriptions: string[]; expires_at: Date }>(
      `SELECT subscriptions, expires_at FROM subscription_ws_token WHERE token_hash = $1 AND expires_at > now()`,
      [hashToken(token)],
    );
    const row = res.rows[0];
    return row ? { ids: row.subscriptions, expiresAt: new Date(row.expires_at).getTime() } : undefined;
  }

  private async unbind(conn: Conn, token: string): Promise<void> {
    const found = await this.lookup(token);
    for (const id of found?.ids ?? []) {
      conn.bindings.delete(id);
      this.bySub.get(id)?.delete(conn);
    }
  }

  private async bind(conn: Conn, token: string): Promise<void> {
    const found = await this.lookup(token);
    if (!found) return this.sendError(conn, 'The binding token is unknown or expired');
    // One query for the Subscriptions this process has not seen yet, one for all the states.
    await this.service.refreshRegistry(found.ids.filter((id) => !this.service.subs.has(id)));
    const states = await this.service.states(found.ids);
    for (const id of found.ids) {
      const entry = this.service.subs.get(id);
      if (!entry || entry.cfg.channelType !== 'websocket') continue;
      const state = states.get(id);
      const info = this.service.statusInfo(entry, state, 'active');
      const binding: Binding = {
        expiresAt: found.expiresAt,
        lastSentAt: Date.now(),
        lastEvent: conn.bindings.get(id)?.lastEvent ?? BigInt(info.eventsSince),
      };
      conn.bindings.set(id, binding);
      conn.hadBindings = true;
      const set = this.bySub.get(id) ?? new Set();
      set.add(conn);
      this.bySub.set(id, set);
      this.enqueue(conn, async () => JSON.stringify(buildBundle(this.service.fhirBase, info, 'handshake', [], entry.cfg.content, NO_PAYLOAD)));
    }
  }

  /**
   * Sends events to the sockets bound to the subscription (events already sent on a socket are
   * dropped). The Bundle is built once for all sockets that need the same events; payload holds
   * the focus versions the engine has already read (a push from another process reads them).
   */
  push(subscriptionId: string, events: EventRow[], payload?: Payload): void {
    const entry = this.service.subs.get(subscriptionId);
    if (!entry || events.length === 0) return;
    const last = BigInt(events[events.length - 1].eventNumber);
    if (last > entry.eventsSince) entry.eventsSince = last;
    const conns = this.bySub.get(subscriptionId);
    if (!conns?.size) return;
    const built = new Map<number, Promise<string>>(); // by the number of events already sent (same tail -> same Bundle)
    for (const conn of conns) {
      const binding = conn.bindings.get(subscriptionId);
      if (!binding) continue;
      const fresh = events.filter((e) => BigInt(e.eventNumber) > binding.lastEvent);
      if (fresh.length === 0) continue;
      binding.lastEvent = BigInt(fresh[fresh.length - 1].eventNumber);
      binding.lastSentAt = Date.now();
      let text = built.get(fresh.length);
      if (!text) {
        const info = { ...this.service.statusInfo(entry, undefined, 'active') };
        text = notificationBundle(this.service.deps.db, this.service.fhirBase, info, 'event-notification', fresh, entry.cfg.content, payload).then((b) => JSON.stringify(b));
        text.catch(() => undefined);
        built.set(fresh.length, text);
      }
      const ready = text;
      this.enqueue(conn, () => ready);
    }
  }

  private tick(): void {
    const now = Date.now();
    for (const conn of this.conns) {
      for (const [id, b] of conn.bindings) {
        const entry = this.service.subs.get(id);
        // Token expired, or the subscription ended, was turned off, failed or was deleted (in
        // any process: the registry follows the outbox).
        if (b.expiresAt <= now || !entry || (entry.cfg.end !== undefined && entry.cfg.end <= now)) {
          conn.bindings.delete(id);
          this.bySub.get(id)?.delete(conn);
          continue;
        }
        const hb = entry.cfg.heartbeatSeconds;
        if (!hb || now - b.lastSentAt < hb * 1000) continue;
        b.lastSentAt = now;
        const info = this.service.statusInfo(entry, undefined, 'active');
        this.enqueue(conn, async () => JSON.stringify(buildBundle(this.service.fhirBase, info, 'heartbeat', [], entry.cfg.content, NO_PAYLOAD)));
      }
      if (conn.bindings.size === 0 && conn.ws.readyState === conn.ws.OPEN && conn.hadBindings) {
        conn.ws.close(4001, 'binding token expired or subscriptions ended');
      }
    }
  }
}
