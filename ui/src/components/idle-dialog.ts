// The idle-timeout warning: a modal dialog (focus inside it, Escape = stay) counting down the
// seconds to the automatic sign-out; any key press or click on "Stay signed in" keeps the session.
import { LitElement, css, html, type PropertyValues, type TemplateResult } from 'lit';
import { session } from '../auth/session.ts';
import { i18nEvents, t } from '../i18n/index.ts';
import { base } from '../styles.ts';

export class WlIdleDialog extends LitElement {
  static override properties = { open: { state: true }, seconds: { state: true } };
  declare open: boolean;
  declare seconds: number;
  private timer: ReturnType<typeof setInterval> | undefined;

  static override styles = [
    base,
    css`
      dialog { border: none; border-radius: 10px; padding: 1.5rem; max-width: 26rem; box-shadow: 0 4px 24px #0004; }
      dialog::backdrop { background: #0008; }
      h2 { margin-top: 0; }
      .buttons { display: flex; gap: 0.5rem; flex-wrap: wrap; margin-top: 1rem; }
    `,
  ];

  constructor() {
    super();
    this.open = false;
    this.seconds = 0;
  }

  override connectedCallback(): void {
    super.connectedCallback();
    session.addEventListener('idle-warning', this.onWarn);
    session.addEventListener('idle-cleared', this.onClear);
    i18nEvents.addEventListener('language-changed', this.rerender);
  }

  override disconnectedCallback(): void {
    session.removeEventListener('idle-warning', this.onWarn);
    session.removeEventListener('idle-cleared', this.onClear);
    i18nEvents.removeEventListener('language-changed', this.rerender);
    clearInterval(this.timer);
    super.disconnectedCallback();
  }

  private readonly rerender = () => this.requestUpdate();

  private readonly onWarn = () => {
    this.open = true;
    this.seconds = Math.ceil(session.idleRemaining / 1000);
    clearInterval(this.timer);
    this.timer = setInterval(() => (this.seconds = Math.ceil(session.idleRemaining / 1000)), 1000);
  };

  private readonly onClear = () => {
    this.open = false;
    clearInterval(this.timer);
  };

  protected override updated(changed: PropertyValues): void {
    if (!changed.has('open')) return;
    const dialog = this.renderRoot.querySelector('dialog') as HTMLDialogElement;
    if (this.open && !dialog.open) dialog.showModal();
    if (!this.open && dialog.open) dialog.close();
  }

  override render(): TemplateResult {
    return html`<dialog aria-labelledby="idle-title" aria-describedby="idle-body" @cancel=${(e: Event) => {
        e.preventDefault();
        session.touch();
      }}>
      <h2 id="idle-title">${t('idle.title')}</h2>
      <p id="idle-body" role="timer">${t('idle.body', { seconds: this.seconds })}</p>
      <div class="buttons">
        <button class="primary" autofocus @click=${() => session.touch()}>${t('idle.stay')}</button>
        <button @click=${() => void session.signOut('user')}>${t('idle.signOut')}</button>
      </div>
    </dialog>`;
  }
}

customElements.define('wl-idle-dialog', WlIdleDialog);
