// Web UI benchmark (`npm run bench:ui`): the gzip size of what the browser loads first (index.html
// and the scripts / styles it references) against the 150 kB target, and the time to an
// interactive consult board with 500 open consults in headless chromium against the 1.5 s
// target: from navigation start until the board is rendered (mark wl-board-ready) and the frame
// after it is painted (wl-board-interactive), with a signed-in session. Prints the FHIR requests
// one board load makes (one Task search with _include: no per-card fetches).
// Uses DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres), a fresh database.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { UI_DIST } from '../../server/http/ui-static.ts';
import type { FhirContext } from '../../server/fhir/request.ts';
import { applyAction, createRequest } from '../../server/workflow/engine.ts';
import type { Patient } from '@medplum/fhirtypes';
import { buildUi } from '../../ui/build.ts';
import { hasChromium, launchChromium, newContext, signInAs, startUiWorld } from '../ui/world.ts';

const { values: args } = parseArgs({ options: { consults: { type: 'string', default: '500' }, runs: { type: 'string', default: '7' } } });
const CONSULTS = Number(args.consults);
const RUNS = Number(args.runs);
process.env.DATABASE_URL ??= 'postgres://postgres@127.0.0.1:5432/postgres';

const kb = (n: number) => `${(n / 1024).toFixed(1)} kB`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// ---------------------------------------------------------------- initial-load bundle
await buildUi({ ifStale: true });
const html = readFileSync(join(UI_DIST, 'index.html'));
const files = [...html.toString().matchAll(/(?:src|href)="\/app\/(assets\/[^"]+)"/g)].map((m) => m[1]);
let raw = html.length;
let gz = gzipSync(html, { level: 9 }).length;
console.log('Initial load (what index.html references):');
console.log(`  index.html  ${kb(html.length)} raw, ${kb(gzipSync(html, { level: 9 }).length)} gzip`);
for (const f of files) {
  const body = readFileSync(join(UI_DIST, f));
  const g = gzipSync(body, { level: 9 }).length;
  raw += body.length;
  gz += g;
  console.log(`  ${f}  ${kb(body.length)} raw, ${kb(g)} gzip`);
}
console.log(`  total       ${kb(raw)} raw, ${kb(gz)} gzip  (target < 150 kB gzip: ${gz < 150 * 1024 ? 'met' : 'NOT met'})\n`);

if (!hasChromium) {
  console.log('Board timing skipped: /usr/bin/chromium is missing (apt-get install -y --no-install-recommends chromium)');
  process.exit(0);
}

// ---------------------------------------------------------------- board with 500 open consults
const world = await startUiWorld();
const browser = await launchChromium();
try {
  const ctx: FhirContext = { repo: world.repo, fhirBase: world.server.fhirBase, defaultCount: 50, maxCount: 1000, maxBinaryBytes: 1 << 20 };
  const patients: string[] = [];
  for (let i = 0; i < 50; i++) {
    const p = await world.repo.create<Patient>({ resourceType: 'Patient', active: true, name: [{ given: [`Pat${i}`], family: `Bench${i}` }], managingOrganization: { reference: `Organization/${world.ids.hospital}` } });
    patients.push(`Patient/${p.id}`);
  }
  const seedStart = performance.now();
  const priorities = ['routine', 'urgent', 'stat', 'routine'] as const;
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < CONSULTS; i = next++) {
      const { task } = await createRequest(ctx, {
        workflow: 'consult',
        patient: patients[i % patients.length],
        performer: `Organization/${world.ids.cardiology}`,
        priority: priorities[i % priorities.length],
        requester: world.people.doctor.fhirUser,
        reason: `Bench consult ${i}: please assess`,
        authoredOn: new Date(Date.now() - (i % 25) * 60_000),
      });
      // A third assigned, a sixth of those started: every column has cards.
      if (i % 3 === 0) await applyAction(ctx, task.id as string, 'assign', { owner: world.people.cardDoc.fhirUser });
      if (i % 6 === 0) await applyAction(ctx, task.id as string, 'start', {});
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  console.log(`Seeded ${CONSULTS} open consults in Cardiology in ${((performance.now() - seedStart) / 1000).toFixed(1)} s`);

  const context = await newContext(browser);
  const page = await context.newPage();
  const url = `${world.app}/board/${world.ids.cardiology}`;
  const fhirRequests: string[] = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith('/fhir/')) fhirRequests.push(`${r.method()} ${u.pathname}${u.search ? '?' + decodeURIComponent(u.search.slice(1)).slice(0, 110) : ''}`);
  });
  const measure = async () => {
    await page.waitForFunction(() => performance.getEntriesByName('wl-board-interactive').length > 0, undefined, { timeout: 60_000 });
    return page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
      const ready = performance.getEntriesByName('wl-board-ready')[0] as PerformanceMark;
      const interactive = performance.getEntriesByName('wl-board-interactive')[0] as PerformanceMark;
      return { dcl: nav.domContentLoadedEventEnd, ready: ready.startTime, interactive: interactive.startTime, count: (ready.detail as { count: number }).count };
    });
  };
  await signInAs(page, world, 'head', `/board/${world.ids.cardiology}`);
  const first = await measure();
  console.log(`First load after sign-in: ${first.count} cards, interactive at ${first.interactive.toFixed(0)} ms (includes the sign-in redirect)`);
  const runs: { dcl: number; ready: number; interactive: number; count: number }[] = [];
  for (let i = 0; i < RUNS; i++) {
    fhirRequests.length = 0;
    await page.goto(url);
    runs.push(await measure());
  }
  console.log(`\nBoard load with a signed-in session, ${RUNS} runs (navigation start = 0):`);
  for (const r of runs) console.log(`  DOMContentLoaded ${r.dcl.toFixed(0)} ms, rendered ${r.ready.toFixed(0)} ms, interactive ${r.interactive.toFixed(0)} ms (${r.count} cards)`);
  const tti = median(runs.map((r) => r.interactive));
  console.log(`  median time to interactive: ${tti.toFixed(0)} ms  (target < 1500 ms: ${tti < 1500 ? 'met' : 'NOT met'})`);
  console.log(`\nFHIR requests of the last load (${fhirRequests.length}):`);
  for (const r of fhirRequests) console.log(`  ${r}`);
  await context.close();
} finally {
  await browser.close();
  await world.stop();
}
