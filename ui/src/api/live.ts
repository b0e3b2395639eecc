// Live updates over the server's websocket subscription channel (Subscriptions Backport): one
// Subscription per signed-in tab on the resource-change topic, filtered to Task and
// Communication (board, requests, notes, notification bell), created with
// the user's own token (so it only ever carries what the user may read). The socket binds with
// a token from $get-ws-binding-token, rebinds before that token expires, reconnects with
// backoff, and after a reconnect tells the screens to reload (events may have been missed).
import { session } from '../auth/session.ts';
import { fhir, type Resource } from './fhir.ts';

const SUB_KEY = 'wl.live.subscription';
const BP = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/';
const TOPIC = 'http://wardlink.org/fhir/SubscriptionTopic/resource-change';
const HEARTBEAT_S = 30;

export type LiveStatus = 'off' | 'connecting' | 'live';

export interface ChangeDetail {
  /** "Task/123" */
  reference: string;
  type: string;
  id: string;
}

interface Parameters extends Resource {
  parameter?: { name: string; valueString?: string; valueDateTime?: string; valueUrl?: string; valueCode?: string; part?: { name: string; valueReference?: { reference?: string } }[] }[];
}

function subscriptionBody(): Resource {
  return {
    resourceType: 'Subscription',
    meta: { profile: [`${BP}backport-subscription`] } as Resource['meta'],
    status: 'requested',
    reason: 'Wardlink web app: live updates',
    criteria: TOPIC,
    _criteria: { extension: [{ url: `${BP}backport-filter-criteria`, valueString: 'Resource?_type=Task,Communication' }] },
    channel: {
      type: 'websocket',
      payload: 'application/fhir+json',
      _payload: { extension: [{ url: `${BP}backport-payload-content`, valueCode: 'id-only' }] },
      extension: [{ url: `${BP}backport-heartbeat-period`, valueUnsignedInt: HEARTBEAT_S }],
    },
  };
}

class Live extends EventTarget {
  status: LiveStatus = 'off';
  private ws: WebSocket | undefined;
  private subscriptionId: string | undefined = sessionStorage.getItem(SUB_KEY) ?? undefined;
  private wanted = false;
  private attempt = 0;
  private rebindTimer: ReturnType<typeof setTimeout> | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private watchdog: ReturnType<typeof setTimeout> | undefined;
  private everLive = false;
  private starting: Promise<void> | undefined;

  /** Connects (once; later calls are no-ops while connected). */
  start(): void {
    this.wanted = true;
    if (this.ws || this.starting) return;
    this.starting = this.connect().finally(() => (this.starting = undefined));
  }

  /** Disconnects; with forget, deletes the Subscription on the server (sign-out). */
  async stop(options: { forget: boolean }): Promise<void> {
    this.wanted = false;
    clearTimeout(this.rebindTimer);
    clearTimeout(this.retryTimer);
    clearTimeout(this.watchdog);
    this.ws?.close(1000);
    this.ws = undefined;
    this.setStatus('off');
    const id = this.subscriptionId;
    this.subscriptionId = undefined;
    sessionStorage.removeItem(SUB_KEY);
    if (options.forget && id && session.signedIn) await fhir(`Subscription/${id}`, { method: 'DELETE' }).catch(() => undefined);
  }

  private setStatus(s: LiveStatus): void {
    if (this.status === s) return;
    this.status = s;
    this.dispatchEvent(new Event('status'));
  }

  private async bindingToken(): Promise<{ token: string; url: string; expiresAt: number }> {
    const get = (id: string) => fhir<Parameters>(`Subscription/${id}/$get-ws-binding-token`, { method: 'POST', body: { resourceType: 'Parameters', parameter: [] } });
    let out: Parameters | undefined;
    if (this.subscriptionId) out = await get(this.subscriptionId).catch(() => undefined);
    if (!out) {
      const created = await fhir<Resource>('Subscription', { method: 'POST', body: subscriptionBody() });
      this.subscriptionId = created.id as string;
      sessionStorage.setItem(SUB_KEY, this.subscriptionId);
      out = await get(this.subscriptionId);
    }
    const p = (name: string) => out.parameter?.find((x) => x.name === name);
    return { token: p('token')?.valueString as string, url: p('websocket-url')?.valueUrl as string, expiresAt: Date.parse(p('expiration')?.valueDateTime ?? '') || Date.now() + 300_000 };
  }

  private async connect(): Promise<void> {
    clearTimeout(this.retryTimer);
    this.setStatus('connecting');
    try {
      const binding = await this.bindingToken();
      if (!this.wanted) return;
      const ws = new WebSocket(binding.url);
      this.ws = ws;
      ws.onopen = () => {
        ws.send(`bind-with-token ${binding.token}`);
        this.scheduleRebind(binding.expiresAt);
      };
      ws.onmessage = (m) => this.onMessage(String(m.data));
      ws.onclose = () => {
        if (this.ws !== ws) return;
        this.ws = undefined;
        this.retry();
      };
    } catch {
      this.retry();
    }
  }

  private retry(): void {
    clearTimeout(this.rebindTimer);
    clearTimeout(this.watchdog);
    if (!this.wanted || !session.signedIn) return this.setStatus('off');
    this.setStatus('connecting');
    const delay = Math.min(30_000, 1000 * 2 ** this.attempt++) * (0.75 + Math.random() / 2);
    this.retryTimer = setTimeout(() => {
      this.starting = this.connect().finally(() => (this.starting = undefined));
    }, delay);
  }

  /** A fresh binding token on the same socket before the current one expires. */
  private scheduleRebind(expiresAt: number): void {
    clearTimeout(this.rebindTimer);
    const wait = Math.max(5_000, (expiresAt - Date.now()) * 0.8);
    this.rebindTimer = setTimeout(async () => {
      try {
        const b = await this.bindingToken();
        this.ws?.send(`bind-with-token ${b.token}`);
        this.scheduleRebind(b.expiresAt);
      } catch {
        this.ws?.close();
      }
    }, wait);
  }

  /** No message (event or heartbeat) for 2.5 heartbeats: the connection is dead. */
  private armWatchdog(): void {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => this.ws?.close(), HEARTBEAT_S * 2500);
  }

  private onMessage(text: string): void {
    let msg: Resource;
    try {
      msg = JSON.parse(text) as Resource;
    } catch {
      return;
    }
    if (msg.resourceType === 'OperationOutcome') {
      // Refused binding (expired token, deleted Subscription): start over with a new one.
      this.subscriptionId = undefined;
      sessionStorage.removeItem(SUB_KEY);
      this.ws?.close();
      return;
    }
    const entries = (msg.entry as { resource?: Parameters }[] | undefined) ?? [];
    const status = entries[0]?.resource;
    const type = status?.parameter?.find((p) => p.name === 'type')?.valueCode;
    this.armWatchdog();
    if (type === 'handshake') {
      this.attempt = 0;
      this.setStatus('live');
      if (this.everLive) this.dispatchEvent(new Event('resync'));
      this.everLive = true;
      return;
    }
    if (type !== 'event-notification') return;
    for (const p of status?.parameter ?? []) {
      if (p.name !== 'notification-event') continue;
      const focus = p.part?.find((x) => x.name === 'focus')?.valueReference?.reference;
      const m = focus && /([A-Z][A-Za-z]+)\/([^/]+)$/.exec(focus);
      if (m) this.dispatchEvent(new CustomEvent<ChangeDetail>('change', { detail: { reference: `${m[1]}/${m[2]}`, type: m[1], id: m[2] } }));
    }
  }
}

export const live = new Live();
