// One consult or referral: the request (ServiceRequest) and its Task, the timeline of who did
// what when (the Task's Provenance records), the notes thread (with a form to add one through
// $add-note), and the attachments (view, download, upload with progress). Four searches in
// parallel after the first; live: reloads when the Task or its notes change.
import { LitElement, css, html, nothing, type PropertyValues, type TemplateResult } from 'lit';
import { byReference, fhir, matches, nameOf, operation, search, type Bundle, type Reference, type Resource } from '../api/fhir.ts';
import { attachToRequest, blobUrl } from '../api/binary.ts';
import { live, type ChangeDetail } from '../api/live.ts';
import { toConsult, slaLevel, type Consult } from '../board/model.ts';
import { dateTime, duration, i18nEvents, t, type MessageKey } from '../i18n/index.ts';
import { href } from '../router.ts';
import { base } from '../styles.ts';
import type { Profile } from '../user.ts';

const NOTE = 'http://wardlink.org/fhir/CodeSystem/workflow-communication|note';
const OPEN = new Set(['requested', 'received', 'accepted', 'in-progress']);

interface TimelineEntry {
  when: string;
  activity: string;
  who: string;
  reason?: string;
}
interface Note {
  id: string;
  sent: string;
  sender: string;
  text: string;
}
interface Attachment {
  id: string;
  title: string;
  contentType: string;
  url: string;
  size?: number;
  date?: string;
}

/**
 * The Task's Provenance records with their agents, in one batch round trip. (A search would be
 * one request too, but a staff token's organisation rule keeps Provenance without a patient
 * reference out of search results, while reading them one by one is allowed.)
 */
async function readProvenance(ids: string[]): Promise<Bundle> {
  const batch = (urls: string[]) =>
    fhir<Bundle>('', { method: 'POST', body: { resourceType: 'Bundle', type: 'batch', entry: urls.map((url) => ({ request: { method: 'GET', url } })) } });
  const provs = ((await batch(ids.slice(-100).map((id) => `Provenance/${id}`))).entry ?? []).map((e) => e.resource).filter((r): r is Resource => r?.resourceType === 'Provenance');
  const agents = [...new Set(provs.map((p) => (p.agent as { who?: Reference }[] | undefined)?.[0]?.who?.reference).filter((r): r is string => !!r && r.startsWith('Practitioner/')))];
  const people = agents.length ? await search('Practitioner', [['_id', agents.map((a) => a.split('/')[1]).join(',')]]) : { resourceType: 'Bundle', entry: [] };
  return { resourceType: 'Bundle', entry: [...provs.map((resource) => ({ resource, search: { mode: 'match' as const } })), ...(people.entry ?? []).map((e) => ({ ...e, search: { mode: 'include' as const } }))] };
}

export class WlConsultDetail extends LitElement {
  static override properties = {
    profile: { attribute: false },
    taskId: { attribute: false },
    consult: { state: true },
    request: { state: true },
    timeline: { state: true },
    notes: { state: true },
    attachments: { state: true },
    loading: { state: true },
    error: { state: true },
    noteError: { state: true },
    sending: { state: true },
    upload: { state: true },
    now: { state: true },
  };
  declare profile: Profile;
  declare taskId: string;
  declare consult: Consult | undefined;
  declare request: Resource | undefined;
  declare timeline: TimelineEntry[];
  declare notes: Note[];
  declare attachments: Attachment[];
  declare loading: boolean;
  declare error: string;
  declare noteError: string;
  declare sending: boolean;
  declare upload: { name: string; progress: number; error?: string } | undefined;
  declare now: number;
  private ticker: ReturnType<typeof setInterval> | undefined;

  static override styles = [
    base,
    css`
      .head { display: flex; flex-wrap: wrap; gap: 0.5rem 1rem; align-items: baseline; }
      h1 { margin: 0.25rem 0; font-size: 1.5rem; }
      .grid { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1rem; margin-top: 1rem; }
      section { background: var(--wl-card); border-radius: 10px; padding: 0.75rem 1rem; box-shadow: 0 1px 3px #0002; }
      h2 { font-size: 1.1rem; margin: 0.25rem 0 0.5rem; }
      dl { display: grid; grid-template-columns: auto 1fr; gap: 0.25rem 0.75rem; margin: 0; }
      dt { color: var(--wl-muted); }
      dd { margin: 0; overflow-wrap: anywhere; }
      ol.timeline { list-style: none; padding: 0; margin: 0; border-left: 3px solid var(--wl-line); }
      ol.timeline li { padding: 0 0 0.6rem 0.8rem; position: relative; }
      ol.timeline li::before { content: ''; position: absolute; left: -0.45rem; top: 0.35rem; width: 0.6rem; height: 0.6rem; border-radius: 50%; background: var(--wl-accent); }
      ul.notes { list-style: none; padding: 0; margin: 0 0 0.75rem; display: flex; flex-direction: column; gap: 0.5rem; }
      ul.notes li { background: #eef3f8; border-radius: 8px; padding: 0.5rem 0.7rem; }
      .meta { font-size: 0.85rem; color: var(--wl-muted); }
      textarea { width: 100%; min-height: 4.5rem; }
      ul.files { list-style: none; padding: 0; margin: 0 0 0.75rem; }
      ul.files li { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; padding: 0.3rem 0; border-bottom: 1px solid var(--wl-line); }
      ul.files .name { flex: 1; min-width: 10rem; overflow-wrap: anywhere; }
      .sla.amber { color: var(--wl-amber); }
      .sla.red { color: var(--wl-red); }
      .sla { font-weight: 600; }
      progress { width: 100%; }
      @media (max-width: 800px) { .grid { grid-template-columns: 1fr; } }
    `,
  ];

  constructor() {
    super();
    this.timeline = [];
    this.notes = [];
    this.attachments = [];
    this.loading = true;
    this.error = '';
    this.noteError = '';
    this.sending = false;
    this.now = Date.now();
  }

  private readonly rerender = () => this.requestUpdate();
  private readonly onChange = (e: Event) => {
    const d = (e as CustomEvent<ChangeDetail>).detail;
    if ((d.type === 'Task' && d.id === this.taskId) || d.type === 'Communication') void this.load();
  };

  override connectedCallback(): void {
    super.connectedCallback();
    i18nEvents.addEventListener('language-changed', this.rerender);
    live.addEventListener('change', this.onChange);
    live.addEventListener('resync', this.rerender);
    this.ticker = setInterval(() => (this.now = Date.now()), 1000);
    live.start();
  }

  override disconnectedCallback(): void {
    i18nEvents.removeEventListener('language-changed', this.rerender);
    live.removeEventListener('change', this.onChange);
    live.removeEventListener('resync', this.rerender);
    clearInterval(this.ticker);
    super.disconnectedCallback();
  }

  protected override willUpdate(changed: PropertyValues): void {
    if (changed.has('taskId')) {
      this.loading = true;
      void this.load();
    }
  }

  private async load(): Promise<void> {
    try {
      const b = await search('Task', [['_id', this.taskId], ['_include', 'Task:focus'], ['_include', 'Task:patient'], ['_include', 'Task:requester'], ['_include', 'Task:owner']]);
      const task = matches(b, 'Task')[0];
      if (!task) {
        this.error = t('error.404');
        return;
      }
      const refs = byReference(b);
      const srRef = (task.focus as Reference | undefined)?.reference ?? '';
      const sr = refs.get(srRef);
      this.consult = toConsult(task, refs);
      this.request = sr;
      const history = ((task.relevantHistory as Reference[] | undefined) ?? []).map((r) => r.reference?.split('/')[1]).filter(Boolean) as string[];
      const docIds = ((sr?.supportingInfo as Reference[] | undefined) ?? []).map((r) => r.reference ?? '').filter((r) => r.startsWith('DocumentReference/')).map((r) => r.split('/')[1]);
      const empty: Bundle = { resourceType: 'Bundle' };
      const [prov, notes, related, supporting] = await Promise.all([
        history.length ? readProvenance(history) : empty,
        srRef ? search('Communication', [['based-on', srRef], ['category', NOTE], ['_include', 'Communication:sender'], ['_count', '200']]) : empty,
        srRef ? search('DocumentReference', [['related', srRef], ['_count', '100']]) : empty,
        docIds.length ? search('DocumentReference', [['_id', docIds.join(',')]]) : empty,
      ]);
      const provRefs = byReference(prov);
      this.timeline = matches(prov, 'Provenance')
        .map((p) => {
          const agent = (p.agent as { who?: Reference }[] | undefined)?.[0]?.who;
          const activity = (p.activity as { coding?: { code?: string; display?: string }[] } | undefined)?.coding?.[0];
          return {
            when: String(p.recorded ?? ''),
            activity: activity?.code ?? '',
            who: nameOf(provRefs.get(agent?.reference ?? '')) || agent?.display || (agent ? agent.reference ?? '' : t('timeline.system')),
            reason: (p.reason as { text?: string }[] | undefined)?.[0]?.text,
          };
        })
        .sort((a, b) => a.when.localeCompare(b.when));
      const noteRefs = byReference(notes);
      this.notes = matches(notes, 'Communication')
        .map((c) => ({
          id: c.id as string,
          sent: String(c.sent ?? ''),
          sender: nameOf(noteRefs.get((c.sender as Reference | undefined)?.reference ?? '')) || t('common.unknown'),
          text: String((c.payload as { contentString?: string }[] | undefined)?.[0]?.contentString ?? ''),
        }))
        .sort((a, b) => a.sent.localeCompare(b.sent));
      const docs = new Map<string, Resource>();
      for (const d of [...matches(related, 'DocumentReference'), ...matches(supporting, 'DocumentReference')]) docs.set(d.id as string, d);
      this.attachments = [...docs.values()].map((d) => {
        const a = (d.content as { attachment: { title?: string; contentType?: string; url?: string; size?: number } }[])[0]?.attachment ?? {};
        return { id: d.id as string, title: a.title || String(d.description ?? '') || (a.url ?? ''), contentType: a.contentType ?? 'application/octet-stream', url: a.url ?? '', size: a.size, date: d.date as string | undefined };
      }).sort((a, b) => (a.date ?? '').localeCompare(b.date ?? ''));
      this.error = '';
    } catch (e) {
      this.error = (e as Error).message;
    } finally {
      this.loading = false;
    }
  }

  private async addNote(e: Event): Promise<void> {
    e.preventDefault();
    const area = this.renderRoot.querySelector('#note-text') as HTMLTextAreaElement;
    const text = area.value.trim();
    if (!text) {
      this.noteError = t('action.noteRequired');
      area.focus();
      return;
    }
    this.sending = true;
    this.noteError = '';
    try {
      await operation(`Task/${this.taskId}/$add-note`, { text });
      area.value = '';
      await this.load();
    } catch (err) {
      this.noteError = t('action.failed', { action: t('action.note'), message: (err as Error).message });
    } finally {
      this.sending = false;
    }
  }

  private async uploadFiles(input: HTMLInputElement): Promise<void> {
    const c = this.consult;
    const sr = this.request;
    if (!c || !sr || !input.files?.length) return;
    for (const file of input.files) {
      this.upload = { name: file.name, progress: 0 };
      try {
        await attachToRequest(file, c.patient, `ServiceRequest/${sr.id}`, this.profile.fhirUser, (p) => (this.upload = { name: file.name, progress: p }));
        this.upload = undefined;
      } catch (err) {
        this.upload = { name: file.name, progress: 0, error: t('attach.failed', { name: file.name, message: (err as Error).message }) };
        break;
      }
    }
    input.value = '';
    await this.load();
  }

  private async open(a: Attachment, download: boolean): Promise<void> {
    try {
      const url = await blobUrl(a.url, a.contentType);
      const link = document.createElement('a');
      link.href = url;
      if (download) link.download = a.title || 'attachment';
      else link.target = '_blank';
      link.rel = 'noopener';
      link.click();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (err) {
      this.upload = { name: a.title, progress: 0, error: (err as Error).message };
    }
  }

  override render(): TemplateResult {
    if (this.loading && !this.consult) return html`<p role="status"><span class="spinner" aria-hidden="true"></span> ${t('app.loading')}</p>`;
    if (!this.consult) return html`<h1>${t('detail.title')}</h1><p class="error" role="alert">${this.error}</p>`;
    const c = this.consult;
    const sr = this.request;
    const open = OPEN.has(c.status);
    const left = c.due !== undefined ? c.due - this.now : undefined;
    const level = slaLevel(c, this.now);
    const statusKey = `status.${c.seed}` as MessageKey;
    const srNotes = (sr?.note as { text?: string }[] | undefined)?.map((n) => n.text).filter(Boolean) ?? [];
    return html`
      <p>${c.workflow === 'referral' ? html`<a href=${href('/referrals')}>← ${t('referrals.back')}</a>` : html`<a href=${href(c.department ? `/board/${c.department.split('/')[1]}` : '/')}>← ${t('detail.back')}</a>`}</p>
      <div class="head">
        <h1>${c.patientName || t('common.unknown')}</h1>
        <span class="muted">${t(`priority.${c.priority}` as MessageKey)} · <strong data-testid="detail-status">${t(statusKey) === statusKey ? c.seed : t(statusKey)}</strong></span>
        ${open && left !== undefined ? html`<span class=${`sla ${level}`}>${left > 0 ? t('card.left', { time: duration(left) }) : t('card.overdueBy', { time: duration(-left) })}</span>` : nothing}
      </div>
      ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : nothing}
      <div class="grid">
        <section aria-labelledby="req-h">
          <h2 id="req-h">${t('detail.request')}</h2>
          <dl>
            <dt>${t('card.reason')}</dt><dd>${c.reason || t('card.noReason')}</dd>
            <dt>${t('consult.department')}</dt><dd>${c.departmentName || c.department}</dd>
            <dt>${t('card.requester')}</dt><dd>${c.requesterName}</dd>
            <dt>${t('detail.requested')}</dt><dd>${dateTime(c.authoredOn)}</dd>
            ${c.due ? html`<dt>${t('detail.due')}</dt><dd>${dateTime(new Date(c.due).toISOString())}</dd>` : nothing}
            ${c.owner && c.owner !== c.department ? html`<dt>${t('card.owner')}</dt><dd>${c.ownerName || c.owner}</dd>` : nothing}
            ${srNotes.map((n) => html`<dt>${t('detail.note')}</dt><dd>${n}</dd>`)}
          </dl>
        </section>
        <section aria-labelledby="tl-h">
          <h2 id="tl-h">${t('detail.timeline')}</h2>
          ${this.timeline.length
            ? html`<ol class="timeline" data-testid="timeline">
                ${this.timeline.map((e) => {
                  const key = `event.${e.activity}` as MessageKey;
                  return html`<li><strong>${t(key) === key ? e.activity : t(key)}</strong> — ${e.who}<br /><span class="meta">${dateTime(e.when)}</span>${e.reason ? html`<br /><span>${e.reason}</span>` : nothing}</li>`;
                })}
              </ol>`
            : html`<p class="muted">${t('detail.noHistory')}</p>`}
        </section>
        <section aria-labelledby="notes-h">
          <h2 id="notes-h">${t('detail.notes')}</h2>
          ${this.notes.length
            ? html`<ul class="notes" data-testid="notes">${this.notes.map((n) => html`<li><div class="meta">${n.sender} · ${dateTime(n.sent)}</div><div>${n.text}</div></li>`)}</ul>`
            : html`<p class="muted">${t('detail.noNotes')}</p>`}
          ${open
            ? html`<form @submit=${(e: Event) => void this.addNote(e)}>
                <label for="note-text">${t('action.noteLabel')}</label>
                <textarea id="note-text" placeholder=${t('action.notePlaceholder')}></textarea>
                ${this.noteError ? html`<p class="error" role="alert">${this.noteError}</p>` : nothing}
                <button class="primary" type="submit" ?disabled=${this.sending}>${t('action.note')}</button>
              </form>`
            : nothing}
        </section>
        <section aria-labelledby="files-h">
          <h2 id="files-h">${t('detail.attachments')}</h2>
          ${this.attachments.length
            ? html`<ul class="files" data-testid="attachments">
                ${this.attachments.map(
                  (a) => html`<li>
                    <span class="name">${a.title}${a.size ? html` <span class="meta">(${Math.max(1, Math.round(a.size / 1024))} kB)</span>` : nothing}</span>
                    <button @click=${() => void this.open(a, false)} aria-label=${`${t('attach.view')}: ${a.title}`}>${t('attach.view')}</button>
                    <button @click=${() => void this.open(a, true)} aria-label=${`${t('attach.download')}: ${a.title}`}>${t('attach.download')}</button>
                  </li>`,
                )}
              </ul>`
            : html`<p class="muted">${t('detail.noAttachments')}</p>`}
          ${this.upload
            ? html`<div role="status">
                ${this.upload.error
                  ? html`<p class="error" role="alert">${this.upload.error}</p>`
                  : html`<label>${t('attach.uploading', { name: this.upload.name })} <progress max="1" .value=${this.upload.progress}></progress></label>`}
              </div>`
            : nothing}
          ${sr ? html`<label for="file">${t('attach.add')}</label> <input id="file" type="file" multiple @change=${(e: Event) => void this.uploadFiles(e.target as HTMLInputElement)} />` : nothing}
        </section>
      </div>
    `;
  }
}

customElements.define('wl-consult-detail', WlConsultDetail);
