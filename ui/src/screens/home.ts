// The start page: who is signed in, in which role and departments, and the places their role
// works with.
import { LitElement, css, html, type TemplateResult } from 'lit';
import { i18nEvents, t, type MessageKey } from '../i18n/index.ts';
import { href } from '../router.ts';
import { base } from '../styles.ts';
import type { Profile } from '../user.ts';
import { NAV, allowed } from '../nav.ts';

export class WlHome extends LitElement {
  static override properties = { profile: { attribute: false } };
  declare profile: Profile;
  static override styles = [base, css`ul.places { display: flex; flex-wrap: wrap; gap: 0.75rem; list-style: none; padding: 0; } ul.places a { display: block; padding: 1rem 1.25rem; background: var(--wl-card); border-radius: 8px; box-shadow: 0 1px 2px #0002; text-decoration: none; font-weight: 600; }`];

  private readonly rerender = () => this.requestUpdate();
  override connectedCallback(): void {
    super.connectedCallback();
    i18nEvents.addEventListener('language-changed', this.rerender);
  }
  override disconnectedCallback(): void {
    i18nEvents.removeEventListener('language-changed', this.rerender);
    super.disconnectedCallback();
  }

  override render(): TemplateResult {
    const p = this.profile;
    const places = NAV.filter((n) => n.path !== '/' && allowed(n.roles, p.role));
    return html`<h1>${t('home.hello', { name: p.name })}</h1>
      <p>${t('home.role', { role: t(`role.${p.role ?? 'unknown'}` as MessageKey) })}</p>
      ${p.fhirUser.startsWith('Practitioner/')
        ? html`<h2>${t('home.departments')}</h2>
            ${p.departments.length
              ? html`<ul>${p.departments.map((d) => html`<li><a href=${href(`/board/${d.ref.split('/')[1]}`)}>${d.name}</a> <span class="muted">(${d.membership})</span></li>`)}</ul>`
              : html`<p class="muted">${t('home.noDepartment')}</p>`}`
        : ''}
      ${places.length
        ? html`<h2>${t('home.start')}</h2>
            <ul class="places">${places.map((n) => html`<li><a href=${href(n.path)}>${t(n.label)}</a></li>`)}</ul>`
        : html`<p class="notice">${t('soon.body')}</p>`}`;
  }
}

customElements.define('wl-home', WlHome);
