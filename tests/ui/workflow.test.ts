// Consults and referrals in browser contexts against one real server. The consult flow, live over
// the websocket subscription channel: a doctor signs in and requests a consult of Cardiology through the form;
// the head of Cardiology sees it appear on the board without reloading and assigns it to a
// doctor; the requesting doctor sees the status change live; a stale action is refused by the
// server and its words are shown; the SLA countdown turns amber, then the card moves to
// Overdue when the (browser) clock passes the due time. Referrals: a doctor writes one to a
// partner provider as a draft and sends it from the outbox; the partner's doctor finds it in the
// inbox, is told a decline needs a reason, declines with one; the inbox pages 20 at a time; the
// table stacks at phone width.
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FhirContext } from '../../server/fhir/request.ts';
import { createRequest } from '../../server/workflow/engine.ts';
import { hasChromium, launchChromium, newContext, poll, shot, signIn, startUiWorld, type UiWorld } from './support.ts';

describe.skipIf(!hasChromium)('consults and referrals in headless chromium', () => {
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
    const ctx = await newContext(browser, { width });
    contexts.push(ctx);
    return ctx.newPage();
  }

  const card = (p: Page, column: string, text: string) => p.locator(`section[data-column=${column}] article`, { hasText: text });

  it('doctor requests, head sees it live and assigns, doctor sees the change live; refusals in words; SLA amber then overdue', async () => {
    // The head of Cardiology opens the board first (browser clock installed to move it later).
    const head = await page();
    await head.clock.install();
    await signIn(head, world, 'head', '/board');
    await poll(() => head.url()).toContain(`/app/board/${world.ids.cardiology}`);
    await poll(() => head.locator('[data-testid=live]').getAttribute('data-status')).toBe('live');
    await poll(() => head.locator('section[data-column=incoming] .empty').textContent()).toContain('No new consults');
    await shot(head, 'board-empty');

    // The doctor (Neurology) requests a consult through the form: typeahead, department, priority, reason.
    const doctor = await page();
    await signIn(doctor, world, 'doctor', '/consults/new');
    await doctor.locator('#reason').fill('Chest pain, troponin up');
    await doctor.locator('#patient-q').fill('Ber');
    await poll(() => doctor.locator('li[role=option]').allTextContents()).toEqual([expect.stringContaining('Anna Berg')]);
    await doctor.keyboard.press('Enter');
    await poll(() => doctor.locator('[data-testid=chosen-patient]').textContent()).toBe('Anna Berg');
    // Department search: typing narrows the list (a name:contains search on the server).
    await poll(() => doctor.locator('#department option').allTextContents()).toEqual(expect.arrayContaining(['Cardiology', 'Neurology']));
    await doctor.locator('#department-q').fill('cardio');
    await poll(() => doctor.locator('#department option').allTextContents()).toEqual(['—', 'Cardiology']);
    await doctor.locator('#department').selectOption(`Organization/${world.ids.cardiology}`);
    await doctor.locator('#priority').selectOption('urgent');
    await doctor.locator('#files').setInputFiles({ name: 'letter.txt', mimeType: 'text/plain', buffer: Buffer.from('Dear colleague') });
    await poll(() => doctor.locator('[data-testid=files] li').count()).toBe(1);
    await shot(doctor, 'new-consult');
    await doctor.locator('form button[type=submit]').click();
    await poll(() => doctor.url()).toContain('/app/requests');
    await poll(() => doctor.locator('[data-testid=status]').allTextContents()).toEqual(['Pending']);
    // The draft is gone once sent.
    expect(await doctor.evaluate(() => sessionStorage.getItem('wl.draft.consult'))).toBeNull();

    // It appears on the head's board, live, with the patient, urgency, reason, requester and time left.
    const incoming = card(head, 'incoming', 'Anna Berg');
    await poll(() => incoming.count()).toBe(1);
    const text = await incoming.textContent();
    for (const part of ['Urgent', 'Chest pain, troponin up', 'Nadia Neuro']) expect(text).toContain(part);
    expect(await incoming.locator('[data-testid=sla]').textContent()).toMatch(/^(1\s?hr 5\d\s?min|2\s?hr) left$/);
    expect(await incoming.getAttribute('data-sla')).toBe('ok');
    // The head of department is notified too.
    await poll(() => head.locator('[data-testid=unread]').textContent()).toBe('1');
    await shot(head, 'board-incoming');

    // A second tab of the head, with live events held back: it will act on a stale card.
    const stale = await page();
    let hold = false;
    await stale.routeWebSocket(/\/fhir\/ws$/, (ws) => {
      const server = ws.connectToServer();
      server.onMessage((m) => {
        if (!hold || !String(m).includes('event-notification')) ws.send(m);
      });
    });
    await signIn(stale, world, 'head', `/board/${world.ids.cardiology}`);
    await poll(() => card(stale, 'incoming', 'Anna Berg').count()).toBe(1);
    await poll(() => stale.locator('[data-testid=live]').getAttribute('data-status')).toBe('live');
    hold = true;

    // The head assigns it to Carla Cardio; the card moves to Assigned.
    await incoming.locator('button[data-action=assign]').click();
    await incoming.locator('select').selectOption({ label: 'Carla Cardio' });
    await incoming.locator('form button[type=submit]').click();
    const assigned = card(head, 'assigned', 'Anna Berg');
    await poll(() => assigned.count()).toBe(1);
    await poll(() => assigned.locator('[data-testid=owner]').textContent()).toBe('Carla Cardio');
    expect(await card(head, 'incoming', 'Anna Berg').count()).toBe(0);

    // The doctor's list changes without a reload, and the bell counts the notification.
    await poll(() => doctor.locator('[data-testid=status]').allTextContents()).toEqual(['Assigned']);
    await shot(doctor, 'my-requests');
    await poll(() => doctor.locator('[data-testid=unread]').textContent()).toBe('1');
    await doctor.locator('[data-testid=bell]').click();
    await poll(() => doctor.locator('[data-notification]').allTextContents()).toEqual([expect.stringContaining('Assigned — Anna Berg')]);
    await shot(doctor, 'notifications');
    // Opening it goes to the consult and marks it read.
    await doctor.locator('[data-notification] button.what').click();
    await poll(() => doctor.url()).toMatch(/\/app\/consults\/[\w-]+$/);
    await poll(() => doctor.locator('[data-testid=unread]').count()).toBe(0);

    // The stale tab still shows it as incoming; accepting it now is refused by the server, in its words.
    const staleCard = card(stale, 'incoming', 'Anna Berg');
    await staleCard.locator('button[data-action=accept]').click();
    await poll(() => stale.locator('[role=alert]').first().textContent()).toMatch(/^Accept failed: Cannot accept a consult in status accepted/);
    // ...and the refused card is brought up to date: it moves to Assigned, the message with it.
    await poll(() => card(stale, 'assigned', 'Anna Berg').locator('[role=alert]').count()).toBe(1);
    await shot(stale, 'board-refused');

    // The detail view: request, timeline from Provenance, notes thread, attachments.
    await assigned.locator('h3 a').click();
    await poll(() => head.url()).toMatch(/\/app\/consults\/[\w-]+$/);
    await poll(() => head.locator('[data-testid=timeline] li strong').allTextContents()).toEqual(['Requested', 'Assigned']);
    expect(await head.locator('[data-testid=timeline] li').nth(1).textContent()).toContain('Hugo Heart');
    await head.locator('#note-text').fill('ECG reviewed: sinus rhythm. Echo booked.');
    await head.locator('form button[type=submit]').click();
    await poll(() => head.locator('[data-testid=notes] li').allTextContents()).toEqual([expect.stringContaining('ECG reviewed: sinus rhythm. Echo booked.')]);
    await poll(() => head.locator('[data-testid=detail-status]').textContent()).toBe('In progress');
    await head.locator('#file').setInputFiles({ name: 'ecg-report.txt', mimeType: 'text/plain', buffer: Buffer.from('ECG 12-lead: normal') });
    await poll(() => head.locator('[data-testid=attachments] .name').allTextContents()).toEqual([expect.stringContaining('letter.txt'), expect.stringContaining('ecg-report.txt')]);
    const [download] = await Promise.all([head.waitForEvent('download'), head.locator('[data-testid=attachments] li', { hasText: 'ecg-report.txt' }).locator('button', { hasText: 'Download' }).click()]);
    expect(download.suggestedFilename()).toBe('ecg-report.txt');
    const { readFile } = await import('node:fs/promises');
    expect(await readFile((await download.path()) as string, 'utf8')).toBe('ECG 12-lead: normal');
    await shot(head, 'consult-detail');
    // The requesting doctor, on the same consult, sees the note arrive (and its notification).
    await poll(() => doctor.locator('[data-testid=notes] li').count()).toBe(1);
    await poll(() => doctor.locator('[data-testid=unread]').textContent()).toBe('1');
    await head.goBack();
    const active = card(head, 'inProgress', 'Anna Berg');
    await poll(() => active.count()).toBe(1);

    // SLA: 120 minutes for urgent in Cardiology. 100 minutes on: amber. 121 minutes on: overdue.
    const due = Date.now() + 120 * 60_000;
    await head.clock.setSystemTime(due - 20 * 60_000);
    await poll(() => active.getAttribute('data-sla')).toBe('amber');
    await head.clock.setSystemTime(due + 60_000);
    const overdue = card(head, 'overdue', 'Anna Berg');
    await poll(() => overdue.count()).toBe(1);
    expect(await overdue.getAttribute('data-sla')).toBe('red');
    expect(await overdue.locator('[data-testid=sla]').textContent()).toMatch(/^Overdue by \d+\s?min$/);
    await shot(head, 'board-overdue');
  });

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
