// The app shell <wl-app>: finishes the sign-in on /app/callback, shows the sign-in page when
// nobody is signed in, loads the profile, renders the header (role-aware navigation, language
// switch, sign-out) and the screen for the current route, and the idle-timeout warning.
import { LitElement, css, html, nothing, type TemplateResult } from 'lit';
import { IDLE_TIMEOUT_MS } from '../config.ts';
import { beginSignIn, completeSignIn, endSessionUrl, SignInError } from '../auth/smart.ts';
import { session, type Role, type SignOutReason } from '../auth/session.ts';
import { i18nEvents, LANGUAGES, language, setLanguage, t, type Language, type MessageKey } from '../i18n/index.ts';
import { currentPath, href, match, navigate, routerEvents } from '../router.ts';
import { loadProfile, type Profile } from '../user.ts';
import { live } from '../api/live.ts';
import { prefetchConsults } from '../board/model.ts';
import { base } from '../styles.ts';
import { NAV, REFERRERS, REQUESTERS, STAFF, allowed } from '../nav.ts';
import './idle-dialog.ts';
import './bell.ts';
import '../screens/home.ts';
import '../screens/board.ts';
import '../screens/new-consult.ts';
import '../screens/my-requests.ts';
import '../screens/consult-detail.ts';
import '../screens/referrals.ts';

type Phase = 'starting' | 'signed-out' | 'callback' | 'ready' | 'failed';

interface Route {
  pattern: string;
  roles: readonly Role[] | 'all';
  render: (p: Record<string, string>, profile: Profile) => TemplateResult;
}

const ROUTES: Route[] = [
  { pattern: '/', roles: 'all', render: (_p, profile) => html`<wl-home .profile=${profile}></wl-home>` },
  { pattern: '/board', roles: STAFF, render: (_p, profile) => html`<wl-board .profile=${profile}></wl-board>` },
  { pattern: '/board/:dept', roles: STAFF, render: (p, profile) => html`<wl-board .profile=${profile} .dept=${`Organization/${p.dept}`}></wl-board>` },
  { pattern: '/consults/new', roles: REQUESTERS, render: (_p, profile) => html`<wl-new-consult .profile=${profile}></wl-new-consult>` },
  { pattern: '/consults/:id', roles: REFERRERS, render: (p, profile) => html`<wl-consult-detail .profile=${profile} .taskId=${p.id}></wl-consult-detail>` },
  { pattern: '/referrals', roles: REFERRERS, render: (_p, profile) => html`<wl-referrals .profile=${profile}></wl-referrals>` },
  { pattern: '/referrals/new', roles: REQUESTERS, render: (_p, profile) => html`<wl-new-consult .profile=${profile} .workflow=${'referral'}></wl-new-consult>` },
  { pattern: '/my-care', roles: ['patient'], render: (_p, profile) => html`<wl-my-requests .profile=${profile} .mode=${'patient'}></wl-my-requests>` },
  { pattern: '/requests', roles: REQUESTERS, render: (_p, profile) => html`<wl-my-requests .profile=${profile}></wl-my-requests>` },
];

export class WlApp extends LitElement {
  static override properties = { phase: { state: true }, profile: { state: true }, message: { state: true }, path: { state: true }, serverSignedIn: { state: true } };
  declare phase: Phase;
  declare profile: Profile | undefined;
  declare message: string;
  /** Signed out of the app but maybe still signed in at the server (idle or expired): offer to end that too. */
  declare serverSignedIn: boolean;
  declare path: string;

  static override styles = [
    base,
    css`
      :host { display: block; min-height: 100vh; background: var(--wl-bg); }
      .skip { position: absolute; left: -999px; top: 0; background: #fff; padding: 0.5rem; z-index: 10; }
      .skip:focus { left: 0.5rem; }
      header { background: #0d2b45; color: #fff; display: flex; flex-wrap: wrap; align-items: center; gap: 0.5rem 1.25rem; padding: 0.5rem 1rem; }
      header .brand { font-weight: 700; font-size: 1.15rem; color: #fff; text-decoration: none; }
      nav ul { list-style: none; display: flex; flex-wrap: wrap; gap: 0.25rem; margin: 0; padding: 0; }
      nav a { color: #fff; text-decoration: none; padding: 0.4rem 0.6rem; border-radius: 6px; display: inline-block; }
      nav a[aria-current='page'] { background: #24557f; font-weight: 600; }
      nav a:hover { background: #1d4567; }
      .tools { margin-left: auto; display: flex; align-items: center; gap: 0.75rem; flex-wrap: wrap; }
      .tools select { min-height: 2rem; padding: 0.2rem 0.4rem; }
      .who { font-size: 0.9rem; }
      .tools button { border-color: #fff; background: transparent; color: #fff; }
      main { padding: 1rem; max-width: 110rem; margin: 0 auto; }
      main:focus { outline: none; }
      .center { max-width: 32rem; margin: 12vh auto; background: var(--wl-card); padding: 2rem; border-radius: 10px; box-shadow: 0 1px 4px #0002; }
      .center h1 { margin-top: 0; }
      @media (max-width: 640px) {
        header { padding: 0.5rem; }
        .tools { margin-left: 0; width: 100%; justify-content: space-between; }
        main { padding: 0.5rem; }
      }
    `,
  ];

  constructor() {
    super();
    this.phase = 'starting';
    this.profile = undefined;
    this.message = '';
    this.serverSignedIn = false;
    this.path = currentPath();
  }

  override connectedCallback(): void {
    super.connectedCallback();
    routerEvents.addEventListener('route', this.onRoute);
    i18nEvents.addEventListener('language-changed', this.rerender);
    session.addEventListener('signed-out', this.onSignedOut);
    session.beforeSignOut(() => live.stop({ forget: true }));
    void this.start();
  }

  override disconnectedCallback(): void {
    routerEvents.removeEventListener('route', this.onRoute);
    i18nEvents.removeEventListener('language-changed', this.rerender);
    session.removeEventListener('signed-out', this.onSignedOut);
    super.disconnectedCallback();
  }

  private readonly rerender = () => this.requestUpdate();

  private readonly onRoute = () => {
    this.path = currentPath();
    // Move focus to the new screen's heading for screen-reader and keyboard users.
    void this.updateComplete.then(() => (this.renderRoot.querySelector('main') as HTMLElement | null)?.focus({ preventScroll: true }));
  };

  private readonly onSignedOut = (e: Event) => {
    const reason = (e as CustomEvent<SignOutReason>).detail;
    void live.stop({ forget: false });
    this.profile = undefined;
    this.serverSignedIn = reason !== 'user';
    this.message = reason === 'idle' ? t('auth.signedOutIdle', { minutes: Math.round(IDLE_TIMEOUT_MS / 60_000) }) : reason === 'expired' ? t('auth.signedOutExpired') : t('auth.signedOut');
    this.phase = 'signed-out';
  };

  private async start(): Promise<void> {
    if (match('/callback')) {
      this.phase = 'callback';
      try {
        const { tokens, returnTo } = await completeSignIn(location.search);
        session.adopt(tokens);
        navigate(returnTo || '/', { replace: true });
      } catch (e) {
        const reason = e instanceof SignInError && e.message === 'state' ? t('auth.stateMismatch') : (e as Error).message;
        this.message = t('auth.failed', { reason });
        this.phase = 'failed';
        history.replaceState(null, '', href('/'));
        return;
      }
    }
    if (!session.signedIn) {
      // Back from the server's sign-out (SIGNED_OUT_URI).
      if (new URLSearchParams(location.search).has('signed-out')) {
        this.message = t('auth.signedOut');
        history.replaceState(null, '', href('/'));
      }
      this.phase = 'signed-out';
      return;
    }
    // The board names its department in the URL: fetch it alongside the profile.
    const board = match('/board/:dept');
    if (board) prefetchConsults(`Organization/${board.params.dept}`);
    try {
      this.profile = await loadProfile();
      this.phase = 'ready';
    } catch (e) {
      if (!session.signedIn) return;
      this.message = (e as Error).message;
      this.phase = 'failed';
    }
  }

  private signIn(): void {
    this.phase = 'callback';
    const path = currentPath();
    void beginSignIn(path === '/callback' ? '/' : path + location.search);
  }

  private async signOut(): Promise<void> {
    await session.signOut('user');
  }

  private languageSwitch(): TemplateResult {
    return html`<label class="lang"
      ><span class="visually-hidden">${t('app.language')}</span>
      <select aria-label=${t('app.language')} @change=${(e: Event) => setLanguage((e.target as HTMLSelectElement).value as Language)}>
        ${Object.entries(LANGUAGES).map(([code, name]) => html`<option value=${code} ?selected=${code === language()} lang=${code}>${name}</option>`)}
      </select></label
    >`;
  }

  override render(): TemplateResult {
    switch (this.phase) {
      case 'starting':
      case 'callback':
        return html`<div class="center" role="status"><span class="spinner" aria-hidden="true"></span> ${this.phase === 'callback' ? t('auth.signingIn') : t('app.loading')}</div>`;
      case 'signed-out':
        return html`<main class="center" id="main" tabindex="-1">
          <h1>${t('app.name')}</h1>
          <p>${t('auth.welcome')}</p>
          ${this.message ? html`<p class="notice" role="status">${this.message}</p>` : nothing}
          <p><button class="primary" id="sign-in" @click=${() => this.signIn()}>${t('auth.signIn')}</button></p>
          ${this.serverSignedIn ? html`<p><a href=${endSessionUrl(undefined)}>${t('auth.endServerSession')}</a></p>` : nothing}
          <p>${this.languageSwitch()}</p>
        </main>`;
      case 'failed':
        return html`<main class="center" id="main" tabindex="-1">
          <h1>${t('app.name')}</h1>
          <p class="error" role="alert">${this.message}</p>
          <p><button class="primary" @click=${() => this.signIn()}>${t('auth.tryAgain')}</button></p>
        </main>`;
      case 'ready':
        return this.renderReady(this.profile as Profile);
    }
  }

  private renderReady(profile: Profile): TemplateResult {
    const nav = NAV.filter((n) => allowed(n.roles, profile.role));
    const here = this.path;
    let screen: TemplateResult | undefined;
    for (const r of ROUTES) {
      const m = match(r.pattern, here);
      if (!m) continue;
      screen = allowed(r.roles, profile.role) ? r.render(m.params, profile) : html`<h1>${t('nav.home')}</h1><p class="notice">${t('forbidden.body')}</p>`;
      break;
    }
    screen ??= html`<h1>${t('notFound.title')}</h1>
      <p>${t('notFound.body')}</p>
      <p><a href=${href('/')}>${t('notFound.back')}</a></p>`;
    const current = (path: string) => (path === '/' ? here === '/' : here === path || here.startsWith(path + '/'));
    return html`<a class="skip" href="#main" @click=${(e: Event) => {
        e.preventDefault();
        (this.renderRoot.querySelector('main') as HTMLElement).focus();
      }}>${t('app.skip')}</a>
      <header>
        <a class="brand" href=${href('/')}>${t('app.name')}</a>
        <nav aria-label=${t('nav.main')}>
          <ul>
            ${nav.map((n) => html`<li><a href=${href(n.path)} aria-current=${current(n.path) ? 'page' : 'false'}>${t(n.label)}</a></li>`)}
          </ul>
        </nav>
        <div class="tools">
          ${profile.fhirUser.startsWith('Practitioner/') ? html`<wl-bell .me=${profile.fhirUser}></wl-bell>` : nothing}
          <span class="who" data-testid="who">${profile.name} · ${t(`role.${profile.role ?? 'unknown'}` as MessageKey)}</span>
          ${this.languageSwitch()}
          <button id="sign-out" @click=${() => this.signOut()}>${t('auth.signOut')}</button>
        </div>
      </header>
      <main id="main" tabindex="-1">${screen}</main>
      <wl-idle-dialog></wl-idle-dialog>`;
  }
}

customElements.define('wl-app', WlApp);
