// The notification bell: the workflow's in-app notifications for the signed-in person
// (Communication, category notification, recipient = them), the unread count (status
// in-progress), a panel with the latest ones that opens the consult, and "mark read" (a JSON
// Patch of status + received, so nothing else on the Communication is overwritten). Live: the
// list reloads when a Communication event arrives over the websocket channel.
import { LitElement, css, html, nothing, type TemplateResult } from 'lit';
import { byReference, fhir, matches, nameOf, search, type Reference, type Resource } from '../api/fhir.ts';
import { live, type ChangeDetail } from '../api/live.ts';
import { dateTime, i18nEvents, t, type MessageKey } from '../i18n/index.ts';
import { navigate } from '../router.ts';
import { base } from '../styles.ts';

const COMM = 'http://wardlink.org/fhir/CodeSystem/workflow-communication';
const EVENT = 'http://wardlink.org/fhir/CodeSystem/workflow-event';

interface Item {
  id: string;
  unread: boolean;
  event: string;
  text: string;
  patient: string;
  sent: string;
  task?: string;
}

export class WlBell extends LitElement {
  static override properties = { me: { attribute: false }, items: { state: true }, unread: { state: true }, open: { state: true }, error: { state: true } };
  declare me: string;
  declare items: Item[];
  declare unread: number;
  declare open: boolean;
  declare error: string;
  private timer: ReturnType<typeof setTimeout> | undefined;

  static override styles = [
    base,
    css`
      :host { position: relative; display: inline-block; }
      button.bell { border-color: #fff; background: transparent; color: #fff; position: relative; display: inline-flex; align-items: center; }
      .badge { background: #d92a2a; color: #fff; border-radius: 999px; font-size: 0.75rem; font-weight: 700; padding: 0 0.4rem; margin-left: 0.3rem; }
      .panel { position: absolute; right: 0; top: calc(100% + 0.4rem); width: min(26rem, 92vw); max-height: 70vh; overflow: auto; background: #fff; color: var(--wl-fg); border-radius: 10px; box-shadow: 0 6px 24px #0004; z-index: 20; padding: 0.5rem; }
      .panel h2 { font-size: 1rem; margin: 0.25rem 0.5rem; display: flex; justify-content: space-between; align-items: center; }
      ul { list-style: none; margin: 0; padding: 0; }
      li { display: flex; gap: 0.5rem; align-items: flex-start; padding: 0.5rem; border-bottom: 1px solid var(--wl-line); }
      li.unread { background: #eef5fc; }
      li .what { flex: 1; text-align: left; border: none; background: none; color: var(--wl-fg); padding: 0; min-height: 0; }
      li .what strong { display: block; }
      .meta { color: var(--wl-muted); font-size: 0.85rem; }
      li button.read { font-size: 0.8rem; min-height: 1.8rem; padding: 0.1rem 0.5rem; }
      .empty { padding: 0.75rem; color: var(--wl-muted); }
    `,
  ];

  constructor() {
    super();
    this.items = [];
    this.unread = 0;
    this.open = false;
    this.error = '';
  }

  private readonly rerender = () => this.requestUpdate();
  private readonly onChange = (e: Event) => {
    if ((e as CustomEvent<ChangeDetail>).detail.type !== 'Communication') return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.load(), 150);
  };
  private readonly onResync = () => void this.load();
  private readonly onDocClick = (e: MouseEvent) => {
    if (this.open && !e.composedPath().includes(this)) this.open = false;
  };

  override connectedCallback(): void {
    super.connectedCallback();
    i18nEvents.addEventListener('language-changed', this.rerender);
    live.addEventListener('change', this.onChange);
    live.addEventListener('resync', this.onResync);
    document.addEventListener('click', this.onDocClick);
    live.start();
    void this.load();
  }

  override disconnectedCallback(): void {
    i18nEvents.removeEventListener('language-changed', this.rerender);
    live.removeEventListener('change', this.onChange);
    live.removeEventListener('resync', this.onResync);
    document.removeEventListener('click', this.onDocClick);
    clearTimeout(this.timer);
    super.disconnectedCallback();
  }

  private async load(): Promise<void> {
    try {
      const base: [string, string][] = [['recipient', this.me], ['category', `${COMM}|notification`]];
      const [list, unread] = await Promise.all([
        search('Communication', [...base, ['_sort', '-sent'], ['_count', '20'], ['_include', 'Communication:subject']]),
        search('Communication', [...base, ['status', 'in-progress'], ['_summary', 'count']]),
      ]);
      const refs = byReference(list);
      this.items = matches(list, 'Communication').map((c) => {
        const cats = (c.category as { coding?: { system?: string; code?: string }[] }[] | undefined) ?? [];
        const event = cats.flatMap((x) => x.coding ?? []).find((x) => x.system === EVENT)?.code ?? '';
        const about = (c.about as Reference[] | undefined)?.[0]?.reference ?? '';
        return {
          id: c.id as string,
          unread: c.status === 'in-progress',
          event,
          text: String((c.payload as { contentString?: string }[] | undefined)?.[0]?.contentString ?? ''),
          patient: nameOf(refs.get((c.subject as Reference | undefined)?.reference ?? '')),
          sent: String(c.sent ?? ''),
          task: about.startsWith('Task/') ? about.slice(5) : undefined,
        };
      });
      this.unread = unread.total ?? this.items.filter((i) => i.unread).length;
      this.error = '';
    } catch (e) {
      this.error = (e as Error).message;
    }
  }

  private async markRead(ids: string[]): Promise<void> {
    const patch = [
      { op: 'replace', path: '/status', value: 'completed' },
      { op: 'add', path: '/received', value: new Date().toISOString() },
    ];
    try {
      await Promise.all(ids.map((id) => fhir<Resource>(`Communication/${id}`, { method: 'PATCH', body: patch, headers: { 'content-type': 'application/json-patch+json' } })));
    } catch (e) {
      this.error = (e as Error).message;
    }
    await this.load();
  }

  private openItem(i: Item): void {
    this.open = false;
    if (i.unread) void this.markRead([i.id]);
    if (i.task) navigate(`/consults/${i.task}`);
  }

  override render(): TemplateResult {
    const label = this.unread ? t('bell.labelUnread', { count: this.unread }) : t('bell.label');
    const unreadIds = this.items.filter((i) => i.unread).map((i) => i.id);
    return html`<button class="bell" aria-haspopup="true" aria-expanded=${this.open ? 'true' : 'false'} aria-label=${label} data-testid="bell" @click=${() => (this.open = !this.open)} @keydown=${(e: KeyboardEvent) => e.key === 'Escape' && (this.open = false)}>
        <svg aria-hidden="true" width="18" height="18" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9"></path><path d="M13.7 21a2 2 0 0 1-3.4 0"></path></svg>${this.unread ? html`<span class="badge" data-testid="unread" aria-hidden="true">${this.unread}</span>` : nothing}
      </button>
      ${this.open
        ? html`<div class="panel" role="region" aria-label=${t('bell.title')} @keydown=${(e: KeyboardEvent) => {
            if (e.key === 'Escape') {
              this.open = false;
              (this.renderRoot.querySelector('button.bell') as HTMLElement).focus();
            }
          }}>
            <h2>${t('bell.title')} ${unreadIds.length ? html`<button class="read" @click=${() => void this.markRead(unreadIds)}>${t('bell.markAll')}</button>` : nothing}</h2>
            ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : nothing}
            ${this.items.length
              ? html`<ul>
                  ${this.items.map((i) => {
                    const key = `event.${i.event}` as MessageKey;
                    return html`<li class=${i.unread ? 'unread' : ''} data-notification=${i.id}>
                      <button class="what" @click=${() => this.openItem(i)}>
                        <strong>${t(key) === key ? i.event : t(key)}${i.patient ? ` — ${i.patient}` : ''}</strong>
                        <span class="meta">${dateTime(i.sent)}</span>
                        ${i.unread ? html`<span class="visually-hidden">${t('bell.unread')}</span>` : nothing}
                      </button>
                      ${i.unread ? html`<button class="read" @click=${() => void this.markRead([i.id])} aria-label=${`${t('bell.markRead')}: ${t(key) === key ? i.event : t(key)}`}>${t('bell.markRead')}</button>` : nothing}
                    </li>`;
                  })}
                </ul>`
              : html`<p class="empty">${t('bell.empty')}</p>`}
          </div>`
        : nothing}`;
  }
}

customElements.define('wl-bell', WlBell);
