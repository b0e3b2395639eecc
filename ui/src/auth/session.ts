// The signed-in session: the token set (kept in sessionStorage so a reload in the same tab stays
// signed in, and gone when the tab closes), refresh shortly before expiry (one refresh at a
// time), sign-out with revocation, and the idle timeout with its warning. Timers run on the
// monotonic clock (performance.now): a change of the wall clock neither signs anyone out nor
// skips a refresh.
import { IDLE_TIMEOUT_MS, IDLE_WARNING_MS, REFRESH_EARLY_MS, SESSION_KEEPALIVE_MS } from '../config.ts';
import { claimsOf, endSessionUrl, refresh, revoke, type TokenSet } from './smart.ts';

const TOKENS_KEY = 'wl.auth.tokens';

export type SignOutReason = 'user' | 'idle' | 'expired';

export const ROLES = ['admin', 'clinician', 'nurse', 'department-head', 'dispatcher', 'ambulance-crew', 'receptionist', 'patient'] as const;
export type Role = (typeof ROLES)[number];

/** Who is signed in, from the token's claims (the server decides what they may do). */
export interface Identity {
  /** Practitioner/123 or Patient/456 (relative to the FHIR base). */
  fhirUser: string;
  role?: Role;
  /** The organisation the user belongs to (Organization/abc). */
  organization?: string;
}

class Session extends EventTarget {
  private tokens: TokenSet | undefined;
  /** performance.now() at which the access token expires. */
  private expiresMono = 0;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private refreshing: Promise<void> | undefined;
  private lastActivity = performance.now();
  private idleTimer: ReturnType<typeof setInterval> | undefined;
  private warned = false;
  private readonly cleanups = new Set<() => Promise<unknown>>();

  constructor() {
    super();
    const stored = sessionStorage.getItem(TOKENS_KEY);
    if (stored) {
      try {
        this.adopt(JSON.parse(stored) as TokenSet);
      } catch {
        sessionStorage.removeItem(TOKENS_KEY);
      }
    }
  }

  get signedIn(): boolean {
    return this.tokens !== undefined;
  }

  get identity(): Identity | undefined {
    if (!this.tokens) return undefined;
    const c = claimsOf(this.tokens.accessToken);
    const id = claimsOf(this.tokens.idToken);
    const raw = String(c.fhirUser ?? id.fhirUser ?? '');
    const fhirUser = raw.replace(/^.*\/((Practitioner|Patient|RelatedPerson)\/[^/]+)$/, '$1');
    return {
      fhirUser,
      role: (ROLES as readonly string[]).includes(String(c.role)) ? (c.role as Role) : fhirUser.startsWith('Patient/') ? 'patient' : undefined,
      organization: typeof c.org === 'string' ? c.org : undefined,
    };
  }

  /** Stores a new token set (after sign-in or refresh) and schedules the next refresh. */
  adopt(tokens: TokenSet): void {
    this.tokens = tokens;
    sessionStorage.setItem(TOKENS_KEY, JSON.stringify(tokens));
    this.expiresMono = performance.now() + (tokens.expiresAt - Date.now());
    clearTimeout(this.refreshTimer);
    if (tokens.refreshToken) {
      const wait = Math.max(5_000, Math.min(this.expiresMono - performance.now() - REFRESH_EARLY_MS, SESSION_KEEPALIVE_MS));
      this.refreshTimer = setTimeout(() => void this.refreshNow().catch(() => undefined), wait);
    }
    this.startIdleWatch();
    this.dispatchEvent(new Event('change'));
  }

  /** A valid access token, refreshed first when it is about to expire. */
  async accessToken(): Promise<string> {
    if (!this.tokens) throw new Error('signed out');
    if (this.tokens.refreshToken && performance.now() > this.expiresMono - 10_000) await this.refreshNow();
    if (!this.tokens) throw new Error('signed out');
    return this.tokens.accessToken;
  }

  /** Refreshes now (one refresh at a time); a refused refresh ends the session. */
  refreshNow(): Promise<void> {
    const rt = this.tokens?.refreshToken;
    if (!rt) {
      this.end('expired');
      return Promise.reject(new Error('no refresh token'));
    }
    this.refreshing ??= refresh(rt)
      .then((t) => this.adopt(t))
      .catch((e) => {
        this.end('expired');
        throw e;
      })
      .finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  /**
   * Signs out: revokes the grant at the server, forgets the tokens. The user's own sign-out also
   * ends the server sign-in session (a page visit to the server and back); the idle sign-out
   * doesn't navigate away, and offers that as a link instead.
   */
  async signOut(reason: SignOutReason = 'user'): Promise<void> {
    const t = this.tokens;
    // While the token still works: let the app clean up (its live Subscription).
    for (const fn of this.cleanups) await fn().catch(() => undefined);
    this.end(reason);
    if (t) await revoke(t.refreshToken ?? t.accessToken);
    if (reason === 'user') location.assign(endSessionUrl(t?.idToken));
  }

  /** Runs `fn` (with a working token) before a sign-out by the user or the idle timeout. */
  beforeSignOut(fn: () => Promise<unknown>): void {
    this.cleanups.add(fn);
  }

  /** Marks the user active (key press, click, touch): postpones the idle sign-out. */
  touch(): void {
    this.lastActivity = performance.now();
    if (this.warned) {
      this.warned = false;
      this.dispatchEvent(new Event('idle-cleared'));
    }
  }

  /** Milliseconds until the idle sign-out. */
  get idleRemaining(): number {
    return Math.max(0, IDLE_TIMEOUT_MS - (performance.now() - this.lastActivity));
  }

  private startIdleWatch(): void {
    if (this.idleTimer) return;
    this.lastActivity = performance.now();
    this.idleTimer = setInterval(() => {
      const left = this.idleRemaining;
      if (left <= 0) void this.signOut('idle');
      else if (left <= IDLE_WARNING_MS && !this.warned) {
        this.warned = true;
        this.dispatchEvent(new Event('idle-warning'));
      }
    }, 1000);
  }

  private end(reason: SignOutReason): void {
    const was = this.tokens !== undefined;
    this.tokens = undefined;
    sessionStorage.removeItem(TOKENS_KEY);
    clearTimeout(this.refreshTimer);
    clearInterval(this.idleTimer);
    this.idleTimer = undefined;
    this.warned = false;
    if (was) this.dispatchEvent(new CustomEvent<SignOutReason>('signed-out', { detail: reason }));
  }
}

export const session = new Session();

for (const type of ['pointerdown', 'keydown', 'wheel', 'touchstart']) {
  addEventListener(type, () => session.touch(), { capture: true, passive: true });
}
