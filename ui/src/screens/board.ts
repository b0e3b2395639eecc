// The consult board of one department: five columns (tabs at phone width) of cards with
// patient, urgency, reason, requester, owner and a live SLA countdown (amber, then red); the
// actions the workflow offers (assign, accept, start, add note, complete, follow-up) through
// the FHIR operations, the server's refusals shown in its words; live updates over the
// websocket subscription channel without reload.
import { LitElement, css, html, nothing, type PropertyValues, type TemplateResult } from 'lit';
import { repeat } from 'lit/directives/repeat.js';
import { FhirError, operation, type Resource } from '../api/fhir.ts';
import { live, type ChangeDetail } from '../api/live.ts';
import { i18nEvents, duration, t, time, type MessageKey } from '../i18n/index.ts';
import { href, navigate } from '../router.ts';
import { base } from '../styles.ts';
import { allDepartments, isHeadOf, isMemberOf, type Department, type Profile } from '../user.ts';
import { byUrgency, columnOf, COLUMNS, loadConsults, loadStaff, slaLevel, toConsult, type Column, type Consult, type Person } from '../board/model.ts';

type Act = 'assign' | 'accept' | 'start' | 'note' | 'complete' | 'followUp';
const OP: Record<Act, string> = { assign: '$assign', accept: '$accept', start: '$start', note: '$add-note', complete: '$complete', followUp: '$follow-up' };
const LABEL: Record<Act, MessageKey> = { assign: 'action.assign', accept: 'action.accept', start: 'action.start', note: 'action.note', complete: 'action.complete', followUp: 'action.followUp' };
const COLUMN_LABEL: Record<Column, MessageKey> = { incoming: 'board.col.incoming', assigned: 'board.col.assigned', inProgress: 'board.col.inProgress', overdue: 'board.col.overdue', followUp: 'board.col.followUp' };
const EMPTY: Record<Column, MessageKey> = { incoming: 'board.empty.incoming', assigned: 'board.empty.assigned', inProgress: 'board.empty.inProgress', overdue: 'board.empty.overdue', followUp: 'board.empty.followUp' };

interface CardState {
  open?: 'assign' | 'note';
  busy?: boolean;
  error?: string;
}

export class WlBoard extends LitElement {
  static override properties = {
    profile: { attribute: false },
    dept: { attribute: false },
    departments: { state: true },
    consults: { state: true },
    loading: { state: true },
    error: { state: true },
    now: { state: true },
    tab: { state: true },
    liveStatus: { state: true },
    staff: { state: true },
    announce: { state: true },
  };
  declare profile: Profile;
  declare dept: string | undefined;
  declare departments: Department[] | undefined;
  declare consults: Map<string, Consult>;
  declare loading: boolean;
  declare error: string;
  declare now: number;
  declare tab: Column;
  declare liveStatus: string;
  declare staff: Person[];
  declare announce: string;
  private cards = new Map<string, CardState>();
  private ticker: ReturnType<typeof setInterval> | undefined;
  private pending = new Set<string>();
  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  private abort: AbortController | undefined;

  static override styles = [
    base,
    css`
      :host { display: block; }
      .top { display: flex; flex-wrap: wrap; gap: 0.75rem 1.5rem; align-items: center; margin-bottom: 0.75rem; }
      h1 { margin: 0; font-size: 1.5rem; }
      .live { font-size: 0.85rem; padding: 0.15rem 0.5rem; border-radius: 999px; border: 1px solid var(--wl-line); }
      .live.on { color: var(--wl-ok); border-color: var(--wl-ok); }
      .tabs { display: none; gap: 0.25rem; flex-wrap: wrap; margin-bottom: 0.5rem; }
      .tabs button[aria-selected='true'] { background: var(--wl-accent); color: #fff; }
      .columns { display: grid; grid-template-columns: repeat(5, minmax(14rem, 1fr)); gap: 0.75rem; align-items: start; }
      section.column { background: #e8edf2; border-radius: 8px; padding: 0.5rem; min-height: 8rem; }
      section.column h2 { font-size: 1rem; margin: 0.25rem 0.25rem 0.5rem; display: flex; justify-content: space-between; }
      section.column.overdue h2 { color: var(--wl-red); }
      .count { font-weight: 400; color: var(--wl-muted); }
      ul.cards { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: 0.5rem; }
      /* Off-screen cards are not laid out or painted until scrolled to (500-card boards). */
      ul.cards > li { content-visibility: auto; contain-intrinsic-size: auto 10rem; }
      article { background: var(--wl-card); border-radius: 8px; padding: 0.6rem 0.7rem; border-left: 6px solid var(--wl-ok); box-shadow: 0 1px 2px #0002; }
      article.amber { border-left-color: #d08a00; }
      article.red { border-left-color: var(--wl-red); }
      article h3 a { color: var(--wl-fg); }
      article h3 { font-size: 1rem; margin: 0; display: flex; gap: 0.5rem; justify-content: space-between; align-items: baseline; }
      .prio { font-size: 0.75rem; font-weight: 700; padding: 0.05rem 0.4rem; border-radius: 4px; background: #e6e9ed; color: var(--wl-fg); white-space: nowrap; }
      .prio.stat, .prio.asap { background: var(--wl-red); color: #fff; }
      .prio.urgent { background: var(--wl-amber-bg); color: var(--wl-amber); border: 1px solid var(--wl-amber); }
      dl { margin: 0.35rem 0; display: grid; grid-template-columns: auto 1fr; gap: 0.1rem 0.5rem; font-size: 0.875rem; }
      dt { color: var(--wl-muted); }
      dd { margin: 0; overflow-wrap: anywhere; }
      .sla { font-weight: 600; font-size: 0.9rem; margin: 0.25rem 0; }
      .sla.amber { color: var(--wl-amber); }
      .sla.red { color: var(--wl-red); }
      .actions { display: flex; flex-wrap: wrap; gap: 0.35rem; margin-top: 0.4rem; }
      .actions button { padding: 0.2rem 0.6rem; min-height: 2rem; font-size: 0.875rem; }
      form.inline { display: flex; flex-direction: column; gap: 0.35rem; margin-top: 0.4rem; }
      form.inline .row { display: flex; gap: 0.35rem; flex-wrap: wrap; }
      .error { font-size: 0.875rem; margin-top: 0.4rem; }
      .empty { color: var(--wl-muted); font-size: 0.9rem; padding: 0.5rem; }
      .esc { color: var(--wl-red); font-size: 0.8rem; font-weight: 700; }
      @media (max-width: 900px) {
        .tabs { display: flex; }
        .columns { grid-template-columns: 1fr; }
        section.column:not(.selected) { display: none; }
      }
    `,
  ];

  constructor() {
    super();
    this.consults = new Map();
    this.loading = false;
    this.error = '';
    this.now = Date.now();
    this.tab = 'incoming';
    this.liveStatus = live.status;
    this.staff = [];
    this.announce = '';
  }

  override connectedCallback(): void {
    super.connectedCallback();
    this.ticker = setInterval(() => (this.now = Date.now()), 1000);
    live.addEventListener('change', this.onChange);
    live.addEventListener('resync', this.onResync);
    live.addEventListener('status', this.onLiveStatus);
    i18nEvents.addEventListener('language-changed', this.rerender);
    live.start();
  }

  override disconnectedCallback(): void {
    clearInterval(this.ticker);
    clearTimeout(this.flushTimer);
    this.abort?.abort();
    live.removeEventListener('change', this.onChange);
    live.removeEventListener('resync', this.onResync);
    live.removeEventListener('status', this.onLiveStatus);
    i18nEvents.removeEventListener('language-changed', this.rerender);
    super.disconnectedCallback();
  }

  private readonly rerender = () => this.requestUpdate();
  private readonly onLiveStatus = () => (this.liveStatus = live.status);
  private readonly onResync = () => void this.reload();

  /** A Task changed: fetch the changed ones together (one search) shortly after. */
  private readonly onChange = (e: Event) => {
    const d = (e as CustomEvent<ChangeDetail>).detail;
    if (d.type !== 'Task' || !this.dept) return;
    this.pending.add(d.id);
    clearTimeout(this.flushTimer);
    this.flushTimer = setTimeout(() => void this.flush(), 100);
  };

  private async flush(): Promise<void> {
    const ids = [...this.pending];
    this.pending.clear();
    const dept = this.dept;
    if (!ids.length || !dept) return;
    try {
      const found = await loadConsults(dept, ids);
      if (dept !== this.dept) return;
      const next = new Map(this.consults);
      for (const id of ids) next.delete(id);
      for (const c of found) next.set(c.id, c);
      this.consults = next;
    } catch {
      // The next event or a resync brings the board up to date.
    }
  }

  protected override willUpdate(changed: PropertyValues): void {
    if (changed.has('profile') && this.departments === undefined) void this.pickDepartments();
    if (changed.has('dept')) void this.reload();
  }

  private async pickDepartments(): Promise<void> {
    const own = this.profile.departments;
    try {
      this.departments = own.length && this.profile.role !== 'admin' ? own : await allDepartments();
    } catch (e) {
      this.departments = own;
      this.error = (e as Error).message;
    }
    if (!this.dept && this.departments.length) navigate(`/board/${this.departments[0].ref.split('/')[1]}`, { replace: true });
  }

  private async reload(): Promise<void> {
    const dept = this.dept;
    if (!dept) return;
    this.abort?.abort();
    const abort = new AbortController();
    this.abort = abort;
    this.loading = this.consults.size === 0 || [...this.consults.values()][0]?.department !== dept;
    if (this.loading) this.consults = new Map();
    this.error = '';
    try {
      const [list] = await Promise.all([loadConsults(dept, undefined, abort.signal), isHeadOf(this.profile, dept) ? this.loadStaff(dept) : undefined]);
      if (abort.signal.aborted) return;
      this.consults = new Map(list.map((c) => [c.id, c]));
      this.loading = false;
      // For tests/bench/ui.ts: when the loaded board is on screen and usable.
      // Rendered; then, after the frame is laid out and painted, the main thread is free again.
      void this.updateComplete.then(() => {
        performance.mark('wl-board-ready', { detail: { count: list.length } });
        requestAnimationFrame(() => setTimeout(() => performance.mark('wl-board-interactive', { detail: { count: list.length } })));
      });
    } catch (e) {
      if ((e as Error).name === 'AbortError') return;
      this.error = (e as Error).message;
    } finally {
      if (!abort.signal.aborted) this.loading = false;
    }
  }

  private async loadStaff(dept: string): Promise<void> {
    this.staff = await loadStaff(dept).catch(() => []);
  }

  private card(id: string): CardState {
    let s = this.cards.get(id);
    if (!s) this.cards.set(id, (s = {}));
    return s;
  }

  private async act(c: Consult, act: Act, inputs: Record<string, string | undefined> = {}): Promise<void> {
    const s = this.card(c.id);
    s.busy = true;
    s.error = undefined;
    this.requestUpdate();
    try {
      const out = await operation<Resource>(`Task/${c.id}/${OP[act]}`, inputs);
      s.open = undefined;
      if (out.resourceType === 'Task') {
        const updated = toConsult(out, new Map());
        const prev = this.consults.get(c.id);
        // Keep the names already known; the live event refreshes them if they changed.
        const merged = { ...updated, patientName: prev?.patientName ?? '', requesterName: prev?.requesterName ?? '', ownerName: updated.owner === prev?.owner ? prev.ownerName : (this.staff.find((p) => p.ref === updated.owner)?.name ?? updated.ownerName) };
        const next = new Map(this.consults);
        if (['requested', 'received', 'accepted', 'in-progress'].includes(merged.status)) next.set(c.id, merged);
        else next.delete(c.id);
        this.consults = next;
      } else {
        this.pending.add(c.id);
        void this.flush();
      }
      this.announce = t('action.done', { action: t(LABEL[act]) });
    } catch (e) {
      const message = e instanceof FhirError ? e.message : String(e);
      s.error = t('action.failed', { action: t(LABEL[act]), message });
      // Refused because the card was out of date: bring it up to date (the error stays on it).
      if (e instanceof FhirError && (e.status === 409 || e.status === 412)) {
        this.pending.add(c.id);
        void this.flush();
      }
    } finally {
      s.busy = false;
      this.requestUpdate();
    }
  }

  private actionsFor(c: Consult): Act[] {
    const head = isHeadOf(this.profile, this.dept ?? '');
    const member = isMemberOf(this.profile, this.dept ?? '') && this.profile.role !== 'nurse';
    if (!head && !member) return [];
    const mine = c.owner === this.profile.fhirUser;
    const out: Act[] = [];
    if (c.status === 'requested' || c.status === 'received') {
      if (head) out.push('assign');
      out.push('accept');
    } else if (c.status === 'accepted') {
      if (mine || head) out.push('start', 'note', 'complete');
      if (head) out.push('assign');
    } else if (c.status === 'in-progress') {
      if (mine || head) out.push('note', 'complete');
      if ((mine || head) && c.seed !== 'FOLLOW_UP') out.push('followUp');
    }
    return out;
  }

  private renderActions(c: Consult): TemplateResult | typeof nothing {
    const acts = this.actionsFor(c);
    const s = this.card(c.id);
    if (!acts.length && !s.error) return nothing;
    const label = `${c.patientName}`;
    return html`<div class="actions">
        ${acts.map((a) =>
          a === 'assign' || a === 'note'
            ? html`<button ?disabled=${s.busy} aria-expanded=${s.open === a ? 'true' : 'false'} data-action=${a} aria-label=${`${t(LABEL[a])}: ${label}`} @click=${() => {
                s.open = s.open === a ? undefined : a;
                s.error = undefined;
                this.requestUpdate();
              }}>${t(LABEL[a])}</button>`
            : html`<button ?disabled=${s.busy} data-action=${a} aria-label=${`${t(LABEL[a])}: ${label}`} @click=${() => void this.act(c, a)}>${t(LABEL[a])}</button>`,
        )}
      </div>
      ${s.open === 'assign' ? this.renderAssign(c, s) : nothing} ${s.open === 'note' ? this.renderNote(c, s) : nothing}
      ${s.error ? html`<p class="error" role="alert">${s.error}</p>` : nothing}`;
  }

  private renderAssign(c: Consult, s: CardState): TemplateResult {
    const doctors = this.staff.filter((p) => p.membership !== 'nurse');
    return html`<form class="inline" @submit=${(e: Event) => {
      e.preventDefault();
      const owner = (e.target as HTMLFormElement).querySelector('select')?.value;
      if (owner) void this.act(c, 'assign', { owner });
    }}>
      <label for=${`assign-${c.id}`}>${t('action.assignTo')}</label>
      <div class="row">
        <select id=${`assign-${c.id}`} name="owner" required>
          <option value="">${t('action.pickDoctor')}</option>
          ${doctors.map((p) => html`<option value=${p.ref} ?selected=${p.ref === c.owner}>${p.name}</option>`)}
        </select>
        <button class="primary" type="submit" ?disabled=${s.busy}>${t('action.assign')}</button>
      </div>
    </form>`;
  }

  private renderNote(c: Consult, s: CardState): TemplateResult {
    return html`<form class="inline" @submit=${(e: Event) => {
      e.preventDefault();
      const text = (e.target as HTMLFormElement).querySelector('textarea')?.value.trim();
      if (!text) {
        s.error = t('action.noteRequired');
        this.requestUpdate();
        return;
      }
      void this.act(c, 'note', { text });
    }}>
      <label for=${`note-${c.id}`}>${t('action.noteLabel')}</label>
      <textarea id=${`note-${c.id}`} rows="3" placeholder=${t('action.notePlaceholder')}></textarea>
      <div class="row"><button class="primary" type="submit" ?disabled=${s.busy}>${t('common.save')}</button></div>
    </form>`;
  }

  private renderCard(c: Consult): TemplateResult {
    const level = slaLevel(c, this.now);
    const left = c.due !== undefined ? c.due - this.now : undefined;
    const sla = left === undefined ? '' : left > 0 ? t('card.left', { time: duration(left) }) : t('card.overdueBy', { time: duration(-left) });
    const assigned = c.owner && c.owner !== this.dept && c.owner !== c.department;
    return html`<li>
      <article class=${level} aria-labelledby=${`c-${c.id}`} data-task=${c.id} data-sla=${level}>
        <h3><a id=${`c-${c.id}`} href=${href(`/consults/${c.id}`)}>${c.patientName || t('common.unknown')}</a><span class=${`prio ${c.priority}`}>${t(`priority.${c.priority}` as MessageKey)}</span></h3>
        ${c.seed === 'ESCALATED' ? html`<span class="esc">${t('card.escalated')}</span>` : nothing}
        <p class=${`sla ${level}`} data-testid="sla" title=${c.due ? t('card.due', { time: time(new Date(c.due).toISOString()) }) : ''}>${sla}</p>
        <dl>
          <dt>${t('card.reason')}</dt>
          <dd>${c.reason || t('card.noReason')}</dd>
          <dt>${t('card.requester')}</dt>
          <dd>${c.requesterName || t('common.unknown')}</dd>
          ${assigned ? html`<dt>${t('card.owner')}</dt><dd data-testid="owner">${c.ownerName || c.owner}</dd>` : nothing}
        </dl>
        ${this.renderActions(c)}
      </article>
    </li>`;
  }

  override render(): TemplateResult {
    const depts = this.departments;
    if (depts === undefined) return html`<h1>${t('board.title')}</h1><p role="status"><span class="spinner" aria-hidden="true"></span> ${t('app.loading')}</p>`;
    if (!depts.length) return html`<h1>${t('board.title')}</h1><p class="notice">${t('board.noDepartments')}</p>`;
    const byColumn = new Map<Column, Consult[]>(COLUMNS.map((c) => [c, []]));
    for (const c of this.consults.values()) {
      const col = columnOf(c, this.now);
      if (col) byColumn.get(col)?.push(c);
    }
    for (const list of byColumn.values()) list.sort(byUrgency);
    const deptName = depts.find((d) => d.ref === this.dept)?.name ?? '';
    return html`
      <div class="top">
        <h1>${t('board.title')}${deptName ? html` — ${deptName}` : nothing}</h1>
        <label>${t('board.department')}
          <select @change=${(e: Event) => navigate(`/board/${(e.target as HTMLSelectElement).value.split('/')[1]}`)}>
            ${!this.dept ? html`<option value="">${t('board.pickDepartment')}</option>` : nothing}
            ${depts.map((d) => html`<option value=${d.ref} ?selected=${d.ref === this.dept}>${d.name}</option>`)}
          </select>
        </label>
        <span class=${`live ${this.liveStatus === 'live' ? 'on' : ''}`} data-testid="live" data-status=${this.liveStatus}>${this.liveStatus === 'live' ? t('board.live') : t('board.offline')}</span>
        <span class="muted" data-testid="count">${t('board.count', { count: this.consults.size })}</span>
      </div>
      <p class="visually-hidden" role="status" aria-live="polite">${this.announce}</p>
      ${this.error ? html`<p class="error" role="alert">${this.error} <button @click=${() => void this.reload()}>${t('common.retry')}</button></p>` : nothing}
      ${!this.dept ? html`<p class="notice">${t('board.pickDepartment')}</p>` : this.loading ? html`<p role="status" data-testid="board-loading"><span class="spinner" aria-hidden="true"></span> ${t('board.loading')}</p>` : this.renderColumns(byColumn)}
    `;
  }

  /** Arrow keys, Home and End move between the column tabs (WAI-ARIA tabs pattern). */
  private tabKey(e: KeyboardEvent, i: number): void {
    const n = COLUMNS.length;
    const to = e.key === 'ArrowRight' ? (i + 1) % n : e.key === 'ArrowLeft' ? (i - 1 + n) % n : e.key === 'Home' ? 0 : e.key === 'End' ? n - 1 : -1;
    if (to < 0) return;
    e.preventDefault();
    this.tab = COLUMNS[to];
    void this.updateComplete.then(() => (this.renderRoot.querySelector(`#tab-${COLUMNS[to]}`) as HTMLElement | null)?.focus());
  }

  private renderColumns(byColumn: Map<Column, Consult[]>): TemplateResult {
    return html`<div class="tabs" role="tablist" aria-label=${t('board.title')}>
        ${COLUMNS.map(
          (col, i) =>
            html`<button role="tab" id=${`tab-${col}`} aria-selected=${this.tab === col ? 'true' : 'false'} aria-controls=${`col-${col}`} tabindex=${this.tab === col ? '0' : '-1'}
              @click=${() => (this.tab = col)} @keydown=${(e: KeyboardEvent) => this.tabKey(e, i)}>${t(COLUMN_LABEL[col])} (${byColumn.get(col)?.length ?? 0})</button>`,
        )}
      </div>
      <div class="columns" data-testid="board">
        ${COLUMNS.map((col) => {
          const list = byColumn.get(col) ?? [];
          return html`<section class=${`column ${col} ${this.tab === col ? 'selected' : ''}`} id=${`col-${col}`} aria-labelledby=${`h-${col}`} data-column=${col}>
            <h2 id=${`h-${col}`}>${t(COLUMN_LABEL[col])} <span class="count">${list.length}</span></h2>
            ${list.length ? html`<ul class="cards">${repeat(list, (c) => c.id, (c) => this.renderCard(c))}</ul>` : html`<p class="empty">${t(EMPTY[col])}</p>`}
          </section>`;
        })}
      </div>`;
  }
}

customElements.define('wl-board', WlBoard);
