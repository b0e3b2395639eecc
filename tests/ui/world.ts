// The web UI's test world (browser tests and tests/bench/ui.ts): a real Wardlink server started
// in this process on a fresh database (so users and the UI client can be added at this server's
// address), a small hospital (two departments with PractitionerRoles, people per role, a
// patient), the UI built into ui/dist when stale, and headless Debian chromium (playwright-core).
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Organization, Patient, Practitioner, PractitionerRole } from '@medplum/fhirtypes';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { buildUi } from '../../ui/build.ts';
import type { Role } from '../../server/auth/context.ts';
import { registerUiClient } from '../../server/auth/ui-client.ts';
import { createUser } from '../../server/auth/users.ts';
import { loadConfig } from '../../server/config.ts';
import { Repository } from '../../server/fhir/repository.ts';
import { createLogger } from '../../server/logger.ts';
import { startServer, type RunningServer } from '../../server/server.ts';
import { EXT_DEPARTMENT_SLA } from '../../server/workflow/model.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

export const CHROMIUM = '/usr/bin/chromium';
export const hasChromium = existsSync(CHROMIUM);
export const ARTIFACTS = join(repoRoot, 'tests', 'artifacts', 'ui');

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

/** Headless Debian chromium (a fresh temporary profile per launch). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

export interface Person {
  key: string;
  username: string;
  password: string;
  fhirUser: string;
  name: string;
}

export interface UiWorld {
  server: RunningServer;
  database: TestDatabase;
  repo: Repository;
  app: string;
  people: Record<string, Person>;
  ids: Record<string, string>;
  stop(): Promise<void>;
}

/** Starts the server with the UI client registered, and seeds the hospital the tests use. */
export async function startUiWorld(env: Record<string, string> = {}): Promise<UiWorld> {
  await buildUi({ ifStale: true });
  const database = await createTestDatabase();
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: database.connectionString,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    DB_POOL_SIZE: database.embedded ? '1' : '6',
    SEED_DEMO: 'false',
    HL7_ENABLED: 'false',
    HL7_PORT: '0',
    ...env,
  });
  const server = await startServer(config, createLogger(config.logLevel));
  await registerUiClient(server.auth.services, [`${server.url}/app/callback`]);
  const repo = new Repository(server.db, { baseUrl: server.fhirBase }, server.db);
  const ids: Record<string, string> = {};
  const people: Record<string, Person> = {};
  const hospital = await repo.create<Organization>({ resourceType: 'Organization', name: 'UI Test Hospital', active: true });
  ids.hospital = hospital.id as string;
  const hospitalRef = `Organization/${hospital.id}`;

  const partner = await repo.create<Organization>({ resourceType: 'Organization', name: 'Partner Rehab Clinic', active: true });
  ids.partner = partner.id as string;
  const person = async (key: string, role: Role, given: string, family: string, organization = hospitalRef) => {
    const username = `${key}-${Math.random().toString(36).slice(2, 7)}`;
    const password = `pw-${Math.random().toString(36).slice(2)}-Long1`;
    const resource =
      role === 'patient'
        ? await repo.create<Patient>({ resourceType: 'Patient', active: true, name: [{ given: [given], family }], managingOrganization: { reference: hospitalRef } })
        : await repo.create<Practitioner>({ resourceType: 'Practitioner', active: true, name: [{ given: [given], family }] });
    const fhirUser = `${resource.resourceType}/${resource.id}`;
    await createUser(server.db, { username, password, fhirUser, role, organization });
    people[key] = { key, username, password, fhirUser, name: `${given} ${family}` };
  };
  await person('doctor', 'clinician', 'Nadia', 'Neuro');
  await person('head', 'department-head', 'Hugo', 'Heart');
  await person('cardDoc', 'clinician', 'Carla', 'Cardio');
  await person('nurse', 'nurse', 'Nina', 'Nurse');
  await person('reception', 'receptionist', 'Remy', 'Desk');
  await person('partnerDoc', 'clinician', 'Paul', 'Partner', `Organization/${partner.id}`);
  await person('patientUser', 'patient', 'Pia', 'Patient');

  const dept = async (key: string, name: string, sla?: Record<string, number>) => {
    const org = await repo.create<Organization>({
      resourceType: 'Organization',
      active: true,
      type: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/organization-type', code: 'dept' }] }],
      name,
      partOf: { reference: hospitalRef },
      extension: sla
        ? [
            {
              url: EXT_DEPARTMENT_SLA,
              extension: [
                ...Object.entries(sla).map(([url, v]) => ({ url, valueInteger: v })),
                { url: 'head', valueReference: { reference: people.head.fhirUser } },
              ],
            },
          ]
        : [],
    });
    ids[key] = org.id as string;
  };
  await dept('cardiology', 'Cardiology', { stat: 30, asap: 120, urgent: 120, routine: 1380, 'second-tier-delay': 60 });
  await dept('neurology', 'Neurology');
  const member = (who: string, key: string, code: string) =>
    repo.create<PractitionerRole>({
      resourceType: 'PractitionerRole',
      active: true,
      practitioner: { reference: people[who].fhirUser },
      organization: { reference: `Organization/${ids[key]}` },
      code: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/practitioner-role', code: code === 'nurse' ? 'nurse' : 'doctor' }], text: code }],
    });
  await member('head', 'cardiology', 'head');
  await member('cardDoc', 'cardiology', 'doctor');
  await member('nurse', 'cardiology', 'nurse');
  await member('doctor', 'neurology', 'doctor');
  ids.patient = (await repo.create<Patient>({ resourceType: 'Patient', active: true, name: [{ given: ['Anna'], family: 'Berg' }], birthDate: '1950-03-04', managingOrganization: { reference: hospitalRef } })).id as string;
  mkdirSync(ARTIFACTS, { recursive: true });
  return {
    server,
    database,
    repo,
    app: `${server.url}/app`,
    people,
    ids,
    async stop() {
      await server.stop();
      await database.drop();
    },
  };
}

export async function newContext(browser: Browser, options: { width?: number; bypassCSP?: boolean } = {}): Promise<BrowserContext> {
  return browser.newContext({ viewport: { width: options.width ?? 1400, height: 900 }, locale: 'en-GB', timezoneId: 'UTC', bypassCSP: options.bypassCSP });
}

export function shot(page: Page, name: string): Promise<Buffer> {
  return page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Signs in through the server's sign-in page, the way a person does; waits for the app shell. */
export async function signInAs(page: Page, world: UiWorld, who: string, path = '/'): Promise<void> {
  const p = world.people[who];
  await page.goto(`${world.app}${path}`);
  await page.locator('#sign-in').click();
  await page.waitForURL(/\/oauth2\/signin/);
  await page.fill('#username', p.username);
  await page.fill('#password', p.password);
  await page.click('button[type=submit]');
  await page.waitForURL((u) => u.pathname.startsWith('/app') && !u.pathname.startsWith('/app/callback'));
  await page.locator('[data-testid=who]', { hasText: p.name }).waitFor({ timeout: 15_000 });
}
