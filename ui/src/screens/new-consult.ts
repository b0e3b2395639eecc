// New consult or referral: patient typeahead (FHIR Patient search by name), department (consult)
// or provider (referral), priority, reason, and for a referral "keep as draft"; checked before
// sending, sent with ServiceRequest/$request. What was typed is kept in sessionStorage until it is
// sent, so an error, a reload or a token refresh loses nothing.
import { LitElement, css, html, nothing, type TemplateResult } from 'lit';
import { matches, nameOf, search, type Resource } from '../api/fhir.ts';
import { base64Of, postWithProgress } from '../api/binary.ts';
import { i18nEvents, t, type MessageKey } from '../i18n/index.ts';
import { navigate } from '../router.ts';
import { base } from '../styles.ts';
import { allDepartments, providers, type Department, type Profile } from '../user.ts';

const PRIORITIES = ['routine', 'urgent', 'asap', 'stat'] as const;

interface Draft {
  draft?: boolean;
  patient?: string;
  patientName?: string;
  department?: string;
  /** Shown while a search hides the chosen department from the list. */
  departmentName?: string;
  priority: string;
  reason: string;
}

export class WlNewConsult extends LitElement {
  static override properties = {
    profile: { attribute: false },
    workflow: { attribute: false },
    draft: { state: true },
    departments: { state: true },
    deptQuery: { state: true },
    results: { state: true },
    query: { state: true },
    searching: { state: true },
    active: { state: true },
    error: { state: true },
    sending: { state: true },
    files: { state: true },
    progress: { state: true },
  };
  declare profile: Profile;
  declare workflow: 'consult' | 'referral';
  declare draft: Draft;
  declare departments: Department[] | undefined;
  /** Narrows the department / provider list (name:contains search on the server). */
  declare deptQuery: string;
  private deptDebounce: ReturnType<typeof setTimeout> | undefined;
  private deptSeq = 0;
  declare results: Resource[] | undefined;
  declare query: string;
  declare searching: boolean;
  declare active: number;
  declare error: string;
  declare sending: boolean;
  /** Chosen attachments: kept in memory across errors (files cannot go to sessionStorage). */
  declare files: File[];
  declare progress: number | undefined;
  private debounce: ReturnType<typeof setTimeout> | undefined;
  private searchAbort: AbortController | undefined;

  static override styles = [
    base,
    css`
      form { background: var(--wl-card); padding: 1rem 1.25rem; border-radius: 10px; max-width: 40rem; display: flex; flex-direction: column; gap: 0.9rem; box-shadow: 0 1px 3px #0002; }
      .field { display: flex; flex-direction: column; gap: 0.25rem; position: relative; }
      ul[role='listbox'] { list-style: none; margin: 0; padding: 0; border: 1px solid var(--wl-line); border-radius: 6px; background: #fff; max-height: 14rem; overflow: auto; }
      li[role='option'] { padding: 0.4rem 0.6rem; cursor: pointer; }
      li[role='option'][aria-selected='true'] { background: #dbe9f7; }
      .chosen { display: flex; gap: 0.5rem; align-items: center; }
      textarea { min-height: 6rem; }
    `,
  ];

  constructor() {
    super();
    this.workflow = 'consult';
    this.draft = { priority: 'urgent', reason: '' };
    this.departments = undefined;
    this.results = undefined;
    this.query = '';
    this.searching = false;
    this.active = -1;
    this.error = '';
    this.sending = false;
    this.files = [];
    this.progress = undefined;
  }

  private readonly rerender = () => this.requestUpdate();
  private get draftKey(): string {
    return `wl.draft.${this.workflow}`;
  }

  override connectedCallback(): void {
    super.connectedCallback();
    i18nEvents.addEventListener('language-changed', this.rerender);
    this.draft = { priority: this.workflow === 'referral' ? 'routine' : 'urgent', reason: '', ...(JSON.parse(sessionStorage.getItem(this.draftKey) ?? '{}') as Partial<Draft>) };
    this.deptQuery = '';
    this.loadDepartments('');
  }

  /** Departments (consult) or providers (referral) matching q; only the latest answer is shown. */
  private loadDepartments(q: string): void {
    const seq = ++this.deptSeq;
    (this.workflow === 'referral' ? providers(this.profile, q) : allDepartments(q)).then(
      (d) => {
        if (seq === this.deptSeq) this.departments = d;
      },
      (e: Error) => {
        if (seq !== this.deptSeq) return;
        this.departments = [];
        this.error = e.message;
      },
    );
  }

  private onDeptQuery(value: string): void {
    this.deptQuery = value;
    clearTimeout(this.deptDebounce);
    this.deptDebounce = setTimeout(() => this.loadDepartments(value), 250);
  }
  override disconnectedCallback(): void {
    i18nEvents.removeEventListener('language-changed', this.rerender);
    clearTimeout(this.debounce);
    clearTimeout(this.deptDebounce);
    super.disconnectedCallback();
  }

  private save(patch: Partial<Draft>): void {
    this.draft = { ...this.draft, ...patch };
    sessionStorage.setItem(this.draftKey, JSON.stringify(this.draft));
  }

  private onQuery(value: string): void {
    this.query = value;
    clearTimeout(this.debounce);
    if (value.trim().length < 2) {
      this.results = undefined;
      return;
    }
    this.debounce = setTimeout(() => void this.find(value.trim()), 250);
  }

  private async find(q: string): Promise<void> {
    this.searchAbort?.abort();
    const abort = new AbortController();
    this.searchAbort = abort;
    this.searching = true;
    try {
      const b = await search('Patient', [['name', q], ['_count', '10']], abort.signal);
      this.results = matches(b, 'Patient');
      this.active = this.results.length ? 0 : -1;
    } catch (e) {
      if ((e as Error).name !== 'AbortError') this.error = (e as Error).message;
    } finally {
      if (!abort.signal.aborted) this.searching = false;
    }
  }

  private choose(p: Resource): void {
    this.save({ patient: `Patient/${p.id}`, patientName: nameOf(p) });
    this.results = undefined;
    this.query = '';
  }

  private onKey(e: KeyboardEvent): void {
    const list = this.results ?? [];
    if (!list.length) return;
    if (e.key === 'ArrowDown') this.active = (this.active + 1) % list.length;
    else if (e.key === 'ArrowUp') this.active = (this.active - 1 + list.length) % list.length;
    else if (e.key === 'Enter' && this.active >= 0) this.choose(list[this.active]);
    else if (e.key === 'Escape') this.results = undefined;
    else return;
    e.preventDefault();
  }

  private async submit(e: Event): Promise<void> {
    e.preventDefault();
    const d = this.draft;
    if (!d.patient || !d.department || !d.reason.trim()) {
      this.error = t('consult.required');
      return;
    }
    this.sending = true;
    this.error = '';
    try {
      const referral = this.workflow === 'referral';
      const parameter: object[] = [
        { name: 'workflow', valueCode: this.workflow },
        { name: 'patient', valueReference: { reference: d.patient } },
        { name: 'department', valueReference: { reference: d.department } },
        { name: 'priority', valueCode: d.priority },
        { name: 'reason', valueString: d.reason.trim() },
        ...(referral ? [{ name: 'draft', valueBoolean: d.draft === true }] : []),
      ];
      for (const f of this.files) {
        parameter.push({ name: 'attachment', valueAttachment: { contentType: f.type || 'application/octet-stream', title: f.name, size: f.size, data: await base64Of(f) } });
      }
      this.progress = this.files.length ? 0 : undefined;
      await postWithProgress('ServiceRequest/$request', { resourceType: 'Parameters', parameter }, 'application/fhir+json', (p) => (this.progress = p));
      this.files = [];
      sessionStorage.removeItem(this.draftKey);
      const dept = this.departments?.find((x) => x.ref === d.department)?.name ?? d.department;
      navigate(referral ? `/referrals?box=out&status=${d.draft ? 'draft' : 'open'}` : `/requests?sent=${encodeURIComponent(dept)}`);
    } catch (err) {
      this.error = (err as Error).message;
    } finally {
      this.sending = false;
      this.progress = undefined;
    }
  }

  override render(): TemplateResult {
    const d = this.draft;
    const list = this.results;
    const referral = this.workflow === 'referral';
    return html`<h1>${t(referral ? 'referral.new' : 'consult.new')}</h1>
      <form @submit=${(e: Event) => void this.submit(e)} novalidate>
        <div class="field">
          <label for="patient-q">${t('consult.patient')}</label>
          ${d.patient
            ? html`<div class="chosen"><strong data-testid="chosen-patient">${d.patientName}</strong><button type="button" @click=${() => this.save({ patient: undefined, patientName: undefined })}>${t('common.cancel')}</button></div>`
            : html`<input id="patient-q" type="search" autocomplete="off" role="combobox" aria-expanded=${list ? 'true' : 'false'} aria-controls="patient-list" aria-autocomplete="list"
                  aria-activedescendant=${this.active >= 0 && list?.[this.active] ? `p-${list[this.active].id}` : ''}
                  placeholder=${t('consult.patientSearch')} .value=${this.query} @input=${(e: Event) => this.onQuery((e.target as HTMLInputElement).value)} @keydown=${(e: KeyboardEvent) => this.onKey(e)} />
                ${this.searching ? html`<span role="status" class="muted"><span class="spinner" aria-hidden="true"></span> ${t('app.loading')}</span>` : nothing}
                ${list
                  ? list.length
                    ? html`<ul role="listbox" id="patient-list" aria-label=${t('consult.patient')}>
                        ${list.map((p, i) => html`<li role="option" id=${`p-${p.id}`} aria-selected=${i === this.active ? 'true' : 'false'} @click=${() => this.choose(p)}>${nameOf(p)} <span class="muted">${String(p.birthDate ?? '')}</span></li>`)}
                      </ul>`
                    : html`<p class="muted" role="status">${t('consult.noMatch')}</p>`
                  : nothing}`}
        </div>
        <div class="field">
          <label for="department">${t(referral ? 'referral.provider' : 'consult.department')}</label>
          <input id="department-q" type="search" autocomplete="off" aria-controls="department" aria-label=${t('consult.departmentSearch')}
            placeholder=${t('consult.departmentSearch')} .value=${this.deptQuery} @input=${(e: Event) => this.onDeptQuery((e.target as HTMLInputElement).value)} />
          <select id="department" required @change=${(e: Event) => this.save({ department: (e.target as HTMLSelectElement).value, departmentName: (e.target as HTMLSelectElement).selectedOptions[0]?.text })}>
            <option value="">—</option>
            ${d.department && !(this.departments ?? []).some((x) => x.ref === d.department)
              ? html`<option value=${d.department} selected>${d.departmentName ?? d.department}</option>`
              : nothing}
            ${(this.departments ?? []).map((x) => html`<option value=${x.ref} ?selected=${x.ref === d.department}>${x.name}</option>`)}
          </select>
        </div>
        <div class="field">
          <label for="priority">${t('consult.priority')}</label>
          <select id="priority" @change=${(e: Event) => this.save({ priority: (e.target as HTMLSelectElement).value })}>
            ${PRIORITIES.map((p) => html`<option value=${p} ?selected=${p === d.priority}>${t(`priority.${p}` as MessageKey)}</option>`)}
          </select>
        </div>
        <div class="field">
          <label for="reason">${t(referral ? 'referral.reason' : 'consult.reason')}</label>
          <textarea id="reason" required .value=${d.reason} @input=${(e: Event) => this.save({ reason: (e.target as HTMLTextAreaElement).value })}></textarea>
        </div>
        <div class="field">
          <label for="files">${t('attach.add')}</label>
          <input id="files" type="file" multiple @change=${(e: Event) => {
            const input = e.target as HTMLInputElement;
            this.files = [...this.files, ...(input.files ?? [])];
            input.value = '';
          }} />
          ${this.files.length
            ? html`<ul data-testid="files">${this.files.map((f, i) => html`<li>${f.name} <span class="muted">(${Math.max(1, Math.round(f.size / 1024))} kB)</span> <button type="button" aria-label=${`${t('attach.remove')}: ${f.name}`} @click=${() => (this.files = this.files.filter((_, j) => j !== i))}>${t('attach.remove')}</button></li>`)}</ul>`
            : nothing}
          ${this.progress !== undefined ? html`<label>${t('attach.sending')} <progress max="1" .value=${this.progress}></progress></label>` : nothing}
        </div>
        ${referral
          ? html`<label><input type="checkbox" id="draft" .checked=${d.draft === true} @change=${(e: Event) => this.save({ draft: (e.target as HTMLInputElement).checked })} /> ${t('referral.draft')}</label>`
          : nothing}
        ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : nothing}
        <div><button class="primary" type="submit" ?disabled=${this.sending}>${this.sending ? html`<span class="spinner" aria-hidden="true"></span> ` : nothing}${t(referral ? (d.draft ? 'referral.saveDraft' : 'referral.submit') : 'consult.submit')}</button></div>
      </form>`;
  }
}

customElements.define('wl-new-consult', WlNewConsult);
