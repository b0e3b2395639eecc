// The consults the signed-in doctor asked for (or, for a patient, the consults and referrals about
// them), newest first, with their workflow status, who has them and the SLA countdown; live:
// status changes show as they happen.
import { LitElement, css, html, nothing, type TemplateResult } from 'lit';
import { repeat } from 'lit/directives/repeat.js';
import { search } from '../api/fhir.ts';
import { live, type ChangeDetail } from '../api/live.ts';
import { consultsOf, REQUEST_CATEGORY, slaLevel, type Consult } from '../board/model.ts';
import { dateTime, duration, i18nEvents, t, type MessageKey } from '../i18n/index.ts';
import { base, stackedTable } from '../styles.ts';
import { href } from '../router.ts';
import type { Profile } from '../user.ts';

const OPEN = new Set(['requested', 'received', 'accepted', 'in-progress']);

export class WlMyRequests extends LitElement {
  static override properties = { profile: { attribute: false }, mode: { attribute: false }, items: { state: true }, loading: { state: true }, error: { state: true }, now: { state: true }, liveStatus: { state: true } };
  declare profile: Profile;
  declare mode: 'requester' | 'patient';
  declare items: Map<string, Consult>;
  declare loading: boolean;
  declare error: string;
  declare now: number;
  declare liveStatus: string;
  private ticker: ReturnType<typeof setInterval> | undefined;

  static override styles = [
    base,
    css`
      table { border-collapse: collapse; width: 100%; background: var(--wl-card); border-radius: 8px; overflow: hidden; }
      th, td { text-align: left; padding: 0.5rem 0.6rem; border-bottom: 1px solid var(--wl-line); vertical-align: top; }
      th { background: #e8edf2; font-size: 0.9rem; }
      .sla.amber { color: var(--wl-amber); font-weight: 600; }
      .sla.red { color: var(--wl-red); font-weight: 600; }
      .status { font-weight: 600; }
    `,
    // Last, so its phone-width rules win over the table rules above.
    stackedTable,
  ];

  constructor() {
    super();
    this.mode = 'requester';
    this.items = new Map();
    this.loading = true;
    this.error = '';
    this.now = Date.now();
    this.liveStatus = live.status;
  }

  private readonly rerender = () => this.requestUpdate();
  private readonly onStatus = () => (this.liveStatus = live.status);
  private readonly onResync = () => void this.load();
  private readonly onChange = (e: Event) => {
    const d = (e as CustomEvent<ChangeDetail>).detail;
    if (d.type === 'Task') void this.load([d.id]);
  };

  override connectedCallback(): void {
    super.connectedCallback();
    i18nEvents.addEventListener('language-changed', this.rerender);
    live.addEventListener('change', this.onChange);
    live.addEventListener('resync', this.onResync);
    live.addEventListener('status', this.onStatus);
    this.ticker = setInterval(() => (this.now = Date.now()), 1000);
    live.start();
    void this.load();
  }

  override disconnectedCallback(): void {
    i18nEvents.removeEventListener('language-changed', this.rerender);
    live.removeEventListener('change', this.onChange);
    live.removeEventListener('resync', this.onResync);
    live.removeEventListener('status', this.onStatus);
    clearInterval(this.ticker);
    super.disconnectedCallback();
  }

  private async load(ids?: string[]): Promise<void> {
    try {
      const b = await search('Task', [
        ...(ids ? [['_id', ids.join(',')] as [string, string]] : []),
        ...(this.mode === 'patient'
          ? [['patient', this.profile.fhirUser] as [string, string], ['code', `${REQUEST_CATEGORY}|consult,${REQUEST_CATEGORY}|referral`] as [string, string], ['_include', 'Task:requester'] as [string, string]]
          : [['requester', this.profile.fhirUser] as [string, string], ['code', `${REQUEST_CATEGORY}|consult`] as [string, string]]),
        ['_include', 'Task:patient'],
        ['_include', 'Task:owner'],
        ['_sort', '-_lastUpdated'],
        ['_count', '100'],
      ]);
      const found = consultsOf(b);
      const next = ids ? new Map(this.items) : new Map<string, Consult>();
      for (const c of found) next.set(c.id, c);
      this.items = next;
      this.error = '';
    } catch (e) {
      this.error = (e as Error).message;
    } finally {
      this.loading = false;
    }
  }

  override render(): TemplateResult {
    const sent = new URLSearchParams(location.search).get('sent');
    const list = [...this.items.values()].sort((a, b) => (b.authoredOn ?? '').localeCompare(a.authoredOn ?? ''));
    const patient = this.mode === 'patient';
    return html`<h1>${t(patient ? 'nav.myCare' : 'requests.title')}</h1>
      ${sent ? html`<p class="notice" role="status">${t('consult.sent', { department: sent })}</p>` : nothing}
      ${this.error ? html`<p class="error" role="alert">${this.error} <button @click=${() => void this.load()}>${t('common.retry')}</button></p>` : nothing}
      ${this.loading
        ? html`<p role="status"><span class="spinner" aria-hidden="true"></span> ${t('app.loading')}</p>`
        : list.length
          ? html`<table data-testid="requests">
              <thead><tr><th>${t('card.patient')}</th><th>${t('consult.department')}</th><th>${t('consult.priority')}</th><th>${t('card.reason')}</th><th>${t('requests.status')}</th><th>${t('card.owner')}</th><th>SLA</th></tr></thead>
              <tbody>
                ${repeat(list, (c) => c.id, (c) => this.row(c))}
              </tbody>
            </table>`
          : html`<p class="notice">${t(patient ? 'requests.emptyPatient' : 'requests.empty')}</p>`}`;
  }

  private row(c: Consult): TemplateResult {
    const open = OPEN.has(c.status);
    const left = c.due !== undefined ? c.due - this.now : undefined;
    const level = open ? slaLevel(c, this.now) : 'ok';
    const owner = c.owner && c.owner !== c.department ? c.ownerName || c.owner : '—';
    return html`<tr data-task=${c.id}>
      <td data-label=${t('card.patient')}>${this.mode === 'patient' ? c.patientName : html`<a href=${href(`/consults/${c.id}`)}>${c.patientName}</a>`}<br /><span class="muted">${dateTime(c.authoredOn)}</span></td>
      <td data-label=${t('consult.department')}>${c.departmentName || c.department}</td>
      <td data-label=${t('consult.priority')}>${t(`priority.${c.priority}` as MessageKey)}</td>
      <td data-label=${t('card.reason')}>${c.reason}</td>
      <td data-label=${t('requests.status')} class="status" data-testid="status" data-seed=${c.seed}>${this.statusText(c)}</td>
      <td data-label=${t('card.owner')}>${owner}</td>
      <td data-label="SLA" class=${`sla ${level}`}>${open && left !== undefined ? (left > 0 ? t('card.left', { time: duration(left) }) : t('card.overdueBy', { time: duration(-left) })) : ''}</td>
    </tr>`;
  }

  private statusText(c: Consult): string {
    const key = `status.${c.seed}` as MessageKey;
    const s = t(key);
    return s === key ? c.seed : s;
  }
}

customElements.define('wl-my-requests', WlMyRequests);
