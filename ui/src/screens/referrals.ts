// Referral inbox (referrals sent to the user's organisation or departments) and outbox (those the
// user sent), filtered by status and priority, twenty a page following the server's paging
// links; the actions each side has (accept, decline with a reason, start, complete; send a draft,
// cancel) through the Task operations; live: the page reloads when one of its referrals changes.
import { LitElement, css, html, nothing, type TemplateResult } from 'lit';
import { FhirError, fhir, operation, search, type Bundle } from '../api/fhir.ts';
import { live, type ChangeDetail } from '../api/live.ts';
import { consultsOf, REQUEST_CATEGORY, type Consult } from '../board/model.ts';
import { dateTime, i18nEvents, t, type MessageKey } from '../i18n/index.ts';
import { href, navigate } from '../router.ts';
import { base, stackedTable } from '../styles.ts';
import type { Profile } from '../user.ts';

type Box = 'in' | 'out';
type Act = 'accept' | 'decline' | 'start' | 'complete' | 'send' | 'cancel';
const OP: Record<Act, string> = { accept: '$accept', decline: '$decline', start: '$start', complete: '$complete', send: '$send', cancel: '$cancel' };
const STATUS_FILTERS = ['open', 'draft', 'requested', 'received', 'accepted', 'in-progress', 'completed', 'rejected', 'cancelled', 'all'] as const;
const OPEN = 'requested,received,accepted,in-progress';
const PAGE = 20;

export class WlReferrals extends LitElement {
  static override properties = {
    profile: { attribute: false },
    box: { state: true },
    status: { state: true },
    priority: { state: true },
    rows: { state: true },
    loading: { state: true },
    error: { state: true },
    next: { state: true },
    pages: { state: true },
    busy: { state: true },
    declining: { state: true },
    rowError: { state: true },
  };
  declare profile: Profile;
  declare box: Box;
  declare status: string;
  declare priority: string;
  declare rows: Consult[];
  declare loading: boolean;
  declare error: string;
  declare next: string | undefined;
  /** URLs of the pages before the current one, and the current one (for reloads). */
  declare pages: string[];
  declare busy: string;
  declare declining: string;
  declare rowError: Record<string, string>;
  private seq = 0;
  /**
   * The pages of the latest load asked for (set when it starts, unlike `pages`): a live reload
   * that fires while a page change is in flight reloads the page being opened, not the old one.
   */
  private wanted: string[] = [''];
  private reloadTimer: ReturnType<typeof setTimeout> | undefined;

  static override styles = [
    base,
    css`
      .filters { display: flex; flex-wrap: wrap; gap: 0.75rem; align-items: end; margin: 0.75rem 0; }
      .filters label { display: flex; flex-direction: column; gap: 0.2rem; }
      [role='tablist'] { display: flex; gap: 0.25rem; }
      [role='tab'][aria-selected='true'] { background: var(--wl-accent); color: #fff; }
      table { border-collapse: collapse; width: 100%; background: var(--wl-card); }
      th, td { text-align: left; padding: 0.5rem 0.6rem; border-bottom: 1px solid var(--wl-line); vertical-align: top; }
      th { background: #e8edf2; font-size: 0.9rem; }
      td .actions { display: flex; flex-wrap: wrap; gap: 0.3rem; }
      td button { font-size: 0.85rem; min-height: 2rem; padding: 0.15rem 0.55rem; }
      form.decline { display: flex; flex-wrap: wrap; gap: 0.3rem; margin-top: 0.3rem; }
      .pager { display: flex; gap: 0.5rem; align-items: center; margin-top: 0.75rem; }
      .error { font-size: 0.9rem; }
    `,
    // Last, so its phone-width rules win over the table rules above.
    stackedTable,
  ];

  constructor() {
    super();
    const q = new URLSearchParams(location.search);
    this.box = q.get('box') === 'out' ? 'out' : 'in';
    this.status = q.get('status') ?? 'open';
    this.priority = q.get('priority') ?? '';
    this.rows = [];
    this.loading = true;
    this.error = '';
    this.pages = [''];
    this.busy = '';
    this.declining = '';
    this.rowError = {};
  }

  private readonly rerender = () => this.requestUpdate();
  private readonly onChange = (e: Event) => {
    const d = (e as CustomEvent<ChangeDetail>).detail;
    // A change to a listed referral reloads this page; anything else may be new: reload page one
    // (not a later page, which would shift under the reader). Bursts of events reload once.
    if (d.type !== 'Task' || (!this.rows.some((r) => r.id === d.id) && this.wanted.length > 1)) return;
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => void this.load(this.wanted), 150);
  };

  override connectedCallback(): void {
    super.connectedCallback();
    i18nEvents.addEventListener('language-changed', this.rerender);
    live.addEventListener('change', this.onChange);
    live.addEventListener('resync', this.rerender);
    live.start();
    void this.load();
  }

  override disconnectedCallback(): void {
    i18nEvents.removeEventListener('language-changed', this.rerender);
    live.removeEventListener('change', this.onChange);
    live.removeEventListener('resync', this.rerender);
    clearTimeout(this.reloadTimer);
    super.disconnectedCallback();
  }

  private query(): [string, string][] {
    const p: [string, string][] = [];
    if (this.box === 'in') {
      const orgs = [this.profile.organization, ...this.profile.departments.map((d) => d.ref)].filter((x): x is string => !!x);
      p.push(['focus:ServiceRequest.performer', orgs.join(',')]);
    } else {
      p.push(['requester', this.profile.fhirUser]);
    }
    p.push(['code', `${REQUEST_CATEGORY}|referral`]);
    if (this.status === 'open') p.push(['status', OPEN]);
    else if (this.status !== 'all') p.push(['status', this.status]);
    if (this.priority) p.push(['priority', this.priority]);
    p.push(['_include', 'Task:patient'], ['_include', 'Task:requester'], ['_sort', '-_lastUpdated'], ['_count', String(PAGE)]);
    return p;
  }

  /**
   * Loads the page at the end of `pages` ('' = the first page, else a paging link of the server).
   * Only the latest load is shown: a live reload still in flight cannot undo a page change.
   */
  private async load(pages: string[] = ['']): Promise<void> {
    const seq = ++this.seq;
    this.wanted = pages;
    const url = pages[pages.length - 1];
    this.loading = this.rows.length === 0;
    try {
      const b = url ? await fhir<Bundle>(url) : await search('Task', this.query());
      if (seq !== this.seq) return;
      this.rows = consultsOf(b);
      this.next = b.link?.find((l) => l.relation === 'next')?.url;
      this.pages = pages;
      this.error = '';
    } catch (e) {
      if (seq === this.seq) this.error = (e as Error).message;
    } finally {
      if (seq === this.seq) this.loading = false;
    }
  }

  private setFilter(patch: { box?: Box; status?: string; priority?: string }): void {
    Object.assign(this, patch);
    const q = new URLSearchParams({ box: this.box, status: this.status, ...(this.priority ? { priority: this.priority } : {}) });
    navigate(`/referrals?${q}`, { replace: true });
    this.rows = [];
    void this.load();
  }

  private async page(dir: 1 | -1): Promise<void> {
    if (dir === 1 && this.next) await this.load([...this.pages, this.next]);
    else if (dir === -1 && this.pages.length > 1) await this.load(this.pages.slice(0, -1));
  }

  private async act(r: Consult, act: Act, reason?: string): Promise<void> {
    this.busy = r.id;
    this.rowError = { ...this.rowError, [r.id]: '' };
    try {
      await operation(`Task/${r.id}/${OP[act]}`, reason ? { reason } : {});
      this.declining = '';
      await this.load(this.wanted);
    } catch (e) {
      const message = e instanceof FhirError ? e.message : String(e);
      this.rowError = { ...this.rowError, [r.id]: t('action.failed', { action: t(`referrals.${act}` as MessageKey), message }) };
    } finally {
      this.busy = '';
    }
  }

  private actionsFor(r: Consult): Act[] {
    if (this.box === 'out') {
      if (r.status === 'draft') return ['send', 'cancel'];
      return ['requested', 'received', 'accepted', 'in-progress'].includes(r.status) ? ['cancel'] : [];
    }
    if (r.status === 'requested' || r.status === 'received') return ['accept', 'decline'];
    if (r.status === 'accepted') return ['start', 'complete'];
    if (r.status === 'in-progress') return ['complete'];
    return [];
  }

  private renderActions(r: Consult): TemplateResult {
    const acts = this.actionsFor(r);
    return html`<div class="actions">
        ${acts.map((a) =>
          html`<button ?disabled=${this.busy === r.id} data-action=${a} aria-label=${`${t(`referrals.${a}` as MessageKey)}: ${r.patientName}`}
            @click=${() => (a === 'decline' ? (this.declining = this.declining === r.id ? '' : r.id) : void this.act(r, a))}>${t(`referrals.${a}` as MessageKey)}</button>`,
        )}
      </div>
      ${this.declining === r.id
        ? html`<form class="decline" @submit=${(e: Event) => {
            e.preventDefault();
            const input = (e.target as HTMLFormElement).querySelector('input') as HTMLInputElement;
            if (!input.value.trim()) {
              this.rowError = { ...this.rowError, [r.id]: t('referrals.reasonRequired') };
              input.focus();
              return;
            }
            void this.act(r, 'decline', input.value.trim());
          }}>
            <label class="visually-hidden" for=${`why-${r.id}`}>${t('referrals.reason')}</label>
            <input id=${`why-${r.id}`} placeholder=${t('referrals.reason')} />
            <button class="primary" type="submit">${t('referrals.decline')}</button>
          </form>`
        : nothing}
      ${this.rowError[r.id] ? html`<p class="error" role="alert">${this.rowError[r.id]}</p>` : nothing}`;
  }

  override render(): TemplateResult {
    const statusKey = (s: string) => `status.${s}` as MessageKey;
    return html`<h1>${t('referrals.title')}</h1>
      <div class="filters">
        <div role="tablist" aria-label=${t('referrals.title')}>
          ${(['in', 'out'] as Box[]).map((b) => html`<button role="tab" aria-selected=${this.box === b ? 'true' : 'false'} data-box=${b} @click=${() => this.setFilter({ box: b })}>${t(b === 'in' ? 'referrals.inbox' : 'referrals.outbox')}</button>`)}
        </div>
        <label>${t('requests.status')}
          <select id="status-filter" @change=${(e: Event) => this.setFilter({ status: (e.target as HTMLSelectElement).value })}>
            ${STATUS_FILTERS.map((s) => html`<option value=${s} ?selected=${s === this.status}>${t(`referrals.filter.${s}` as MessageKey)}</option>`)}
          </select>
        </label>
        <label>${t('consult.priority')}
          <select id="priority-filter" @change=${(e: Event) => this.setFilter({ priority: (e.target as HTMLSelectElement).value })}>
            <option value="">${t('referrals.filter.all')}</option>
            ${['routine', 'urgent', 'asap', 'stat'].map((p) => html`<option value=${p} ?selected=${p === this.priority}>${t(`priority.${p}` as MessageKey)}</option>`)}
          </select>
        </label>
        ${this.box === 'out' ? html`<a href=${href('/referrals/new')}>${t('referrals.new')}</a>` : nothing}
      </div>
      ${this.error ? html`<p class="error" role="alert">${this.error} <button @click=${() => void this.load()}>${t('common.retry')}</button></p>` : nothing}
      ${this.loading
        ? html`<p role="status"><span class="spinner" aria-hidden="true"></span> ${t('app.loading')}</p>`
        : this.rows.length
          ? html`<table data-testid="referrals">
              <thead><tr><th>${t('card.patient')}</th><th>${this.box === 'in' ? t('card.requester') : t('referrals.to')}</th><th>${t('consult.priority')}</th><th>${t('card.reason')}</th><th>${t('requests.status')}</th><th>${t('referrals.actions')}</th></tr></thead>
              <tbody>
                ${this.rows.map(
                  (r) => html`<tr data-task=${r.id}>
                    <td data-label=${t('card.patient')}><a href=${href(`/consults/${r.id}`)}>${r.patientName || t('common.unknown')}</a><br /><span class="muted">${dateTime(r.authoredOn)}</span></td>
                    <td data-label=${this.box === 'in' ? t('card.requester') : t('referrals.to')}>${this.box === 'in' ? r.requesterName : r.departmentName || r.department}</td>
                    <td data-label=${t('consult.priority')}>${t(`priority.${r.priority}` as MessageKey)}</td>
                    <td data-label=${t('card.reason')}>${r.reason}</td>
                    <td data-label=${t('requests.status')} data-testid="status">${t(statusKey(r.seed)) === statusKey(r.seed) ? r.seed : t(statusKey(r.seed))}</td>
                    <td data-label=${t('referrals.actions')}>${this.renderActions(r)}</td>
                  </tr>`,
                )}
              </tbody>
            </table>`
          : html`<p class="notice">${t(this.box === 'in' ? 'referrals.emptyIn' : 'referrals.emptyOut')}</p>`}
      <nav class="pager" aria-label=${t('referrals.paging')}>
        <button ?disabled=${this.pages.length <= 1} @click=${() => void this.page(-1)} data-page="prev">${t('referrals.prev')}</button>
        <span class="muted">${t('referrals.page', { page: Math.max(1, this.pages.length) })}</span>
        <button ?disabled=${!this.next} @click=${() => void this.page(1)} data-page="next">${t('referrals.next')}</button>
      </nav>`;
  }
}

customElements.define('wl-referrals', WlReferrals);
