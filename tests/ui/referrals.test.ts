// Referrals in headless chromium against a real server: a doctor writes a referral to a partner
// provider as a draft and sends it from the outbox; the partner's doctor finds it in the inbox,
// is told a decline needs a reason, declines with one; the inbox pages through 20 at a time.
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FhirContext } from '../../server/fhir/request.ts';
import { createRequest } from '../../server/workflow/engine.ts';
import { hasChromium, launchChromium, newContext, poll, shot, signIn, startUiWorld, type UiWorld } from './support.ts';

describe.skipIf(!hasChromium)('referrals in headless chromium', () => {
  let world: UiWorld;
  let browser: Browser;
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    [world, browser] = await Promise.all([startUiWorld(), launchChromium()]);
  });

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await world?.stop();
  });

  async function page(width = 1400): Promise<Page> {
    const ctx = await newContext(browser);
    contexts.push(ctx);
    const p = await ctx.newPage();
    await p.setViewportSize({ width, height: 900 });
    return p;
  }

  const row = (p: Page, text: string) => p.locator('[data-testid=referrals] tbody tr', { hasText: text });

  it('draft, send, receive in the inbox, decline with a reason; paging', async () => {
    const doctor = await page();
    await signIn(doctor, world, 'doctor', '/referrals/new');
    await poll(() => doctor.locator('wl-new-consult h1').textContent()).toBe('New referral');
    await doctor.locator('#patient-q').fill('Berg');
    await doctor.locator('li[role=option]', { hasText: 'Anna Berg' }).click();
    await doctor.locator('#department').selectOption({ label: 'Partner Rehab Clinic' });
    await doctor.locator('#reason').fill('Rehabilitation after stroke');
    await doctor.locator('#draft').check();
    await doctor.locator('form button[type=submit]').click();
    await poll(() => doctor.url()).toContain('/app/referrals?box=out&status=draft');
    await poll(() => row(doctor, 'Anna Berg').locator('[data-testid=status]').textContent()).toBe('Draft');
    await shot(doctor, 'referrals-outbox');
    await row(doctor, 'Anna Berg').locator('button[data-action=send]').click();
    await poll(() => row(doctor, 'Anna Berg').count()).toBe(0);
    await doctor.locator('#status-filter').selectOption('open');
    await poll(() => row(doctor, 'Anna Berg').locator('[data-testid=status]').textContent()).toBe('Sent');

    // The partner's doctor: the inbox shows it; declining needs a reason.
    const partner = await page();
    await signIn(partner, world, 'partnerDoc', '/referrals');
    const incoming = row(partner, 'Anna Berg');
    await poll(() => incoming.count()).toBe(1);
    expect(await incoming.textContent()).toContain('Nadia Neuro');
    await incoming.locator('button[data-action=decline]').click();
    await incoming.locator('form.decline button[type=submit]').click();
    await poll(() => incoming.locator('[role=alert]').textContent()).toBe('Say why the referral is declined.');
    await incoming.locator('form.decline input').fill('No capacity this month');
    await incoming.locator('form.decline button[type=submit]').click();
    await poll(() => incoming.count()).toBe(0);
    // The requester's outbox follows live.
    await poll(() => row(doctor, 'Anna Berg').count()).toBe(0);
    await doctor.locator('#status-filter').selectOption('rejected');
    await poll(() => row(doctor, 'Anna Berg').locator('[data-testid=status]').textContent()).toBe('Declined');

    // Paging: 23 open referrals to the partner, 20 a page.
    const ctx: FhirContext = { repo: world.repo, fhirBase: world.server.fhirBase, defaultCount: 50, maxCount: 1000, maxBinaryBytes: 1 << 20 };
    for (let i = 0; i < 23; i++) {
      await createRequest(ctx, { workflow: 'referral', patient: `Patient/${world.ids.patient}`, performer: `Organization/${world.ids.partner}`, priority: 'routine', requester: world.people.doctor.fhirUser, reason: `Referral ${i}` });
    }
    await partner.reload();
    await poll(() => partner.locator('[data-testid=referrals] tbody tr').count()).toBe(20);
    await partner.locator('button[data-page=next]').click();
    await poll(() => partner.locator('[data-testid=referrals] tbody tr').count()).toBe(3);
    expect(await partner.locator('button[data-page=next]').isDisabled()).toBe(true);
    await partner.locator('button[data-page=prev]').click();
    await poll(() => partner.locator('[data-testid=referrals] tbody tr').count()).toBe(20);
    await shot(partner, 'referrals-inbox');

    // Phone width: the table stacks, the navigation wraps, nothing overflows sideways.
    const phone = await page(390);
    await signIn(phone, world, 'partnerDoc', '/referrals');
    await poll(() => phone.locator('[data-testid=referrals] tbody tr').count()).toBe(20);
    expect(await phone.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    await shot(phone, 'referrals-phone');
  });
});
