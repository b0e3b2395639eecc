// A real server for the auth tests: the FHIR app from createApp with the authorization
// server's routes mounted before the FHIR routes (where server/http/app.ts mounts them), on a
// fresh database; plus a small browser (cookie jar, manual redirects, form posts) to walk the
// sign-in pages the way a person would.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Patient, Practitioner } from '@medplum/fhirtypes';
import { loadConfig, type Config } from '../../server/config.ts';
import { migrate } from '../../server/db/migrate.ts';
import { createDb, type Db } from '../../server/db/pool.ts';
import { loadDefinitions } from '../../server/fhir/definitions.ts';
import { Repository } from '../../server/fhir/repository.ts';
import { createApp } from '../../server/http/app.ts';
import { createLogger } from '../../server/logger.ts';
import { startAuth, type AuthServer } from '../../server/auth/index.ts';
import type { Role } from '../../server/auth/context.ts';
import { createUser } from '../../server/auth/users.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';

export interface AuthTestServer {
  baseUrl: string;
  fhirBase: string;
  db: Db;
  config: Config;
  auth: AuthServer;
  repo: Repository;
  /** PGlite: one connection, so no second process may connect while the server runs. */
  embedded: boolean;
  connectionString: string;
  stop(): Promise<void>;
}

export async function startAuthTestServer(env: Record<string, string> = {}): Promise<AuthTestServer> {
  loadDefinitions();
  const database: TestDatabase = await createTestDatabase();
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: database.connectionString,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    SEED_DEMO: 'false',
    // The rate-limit tests pose as clients behind a proxy (X-Forwarded-For).
    TRUST_PROXY: 'true',
    ...env,
  });
  await migrate(database.connectionString);
  const db = createDb(database.connectionString, database.embedded ? 1 : 5, { namedStatements: !database.embedded });
  const log = createLogger(config.logLevel);
  const auth = await startAuth({ config, db, log });
  const app = createApp({ config, db, log, isReady: () => true, authRoutes: auth.routes(), verifyAccessToken: auth.verifyAccessToken });
  const server: Server = createServer(app.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  config.baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    baseUrl: config.baseUrl,
    fhirBase: `${config.baseUrl}/fhir`,
    db,
    config,
    auth,
    repo: new Repository(db, { baseUrl: `${config.baseUrl}/fhir` }, db),
    embedded: database.embedded,
    connectionString: database.connectionString,
    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await db.close();
      await database.drop();
    },
  };
}

let seq = 0;

/** A user of the given role, linked to a new Practitioner (staff) or Patient resource. */
export async function makeUser(
  srv: AuthTestServer,
  role: Role,
  options: { totpSecret?: string; organization?: string } = {},
): Promise<{ username: string; password: string; id: string; fhirUser: string; resourceId: string }> {
  const name = [{ given: ['Test'], family: `${role}-${++seq}` }];
  const person =
    role === 'patient'
      ? await srv.repo.create<Patient>({ resourceType: 'Patient', name, birthDate: '1970-05-05' })
      : await srv.repo.create<Practitioner>({ resourceType: 'Practitioner', name });
  const username = `${role}${seq}-${Math.random().toString(36).slice(2, 7)}`;
  const password = `pw-${Math.random().toString(36).slice(2)}-long`;
  const fhirUser = `${person.resourceType}/${person.id}`;
  const user = await createUser(srv.db, { username, password, fhirUser, role, organization: options.organization, totpSecret: options.totpSecret });
  return { username, password, id: user.id, fhirUser, resourceId: person.id as string };
}

export interface Page {
  status: number;
  url: string;
  location?: string;
  html: string;
  headers: Headers;
}

/** Fields of the form whose action is `action` (hidden and pre-filled inputs). */
export function formFields(html: string, action: string): Record<string, string> {
  const post = html.indexOf(`method="post" action="${action}"`);
  const start = post >= 0 ? post : html.indexOf(`action="${action}"`);
  if (start < 0) throw new Error(`no form posting to ${action} in:\n${html}`);
  const end = html.indexOf('</form>', start);
  const form = html.slice(start, end);
  const out: Record<string, string> = {};
  for (const m of form.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) out[m[1]] = unescape(m[2]);
  return out;
}

function unescape(s: string): string {
  return s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/** A browser: keeps cookies, follows redirects on its own server, stops at any other address. */
export class Browser {
  readonly cookies = new Map<string, string>();
  readonly origin: string;
  extraHeaders: Record<string, string> = {};

  constructor(origin: string) {
    this.origin = origin;
  }

  private store(headers: Headers): void {
    for (const c of headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => /max-age=0/i.test(a) || /expires=thu, 01 jan 1970/i.test(a.trim()));
      if (!value || expired) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  async request(method: string, url: string, form?: Record<string, string>): Promise<Page> {
    const headers: Record<string, string> = { ...this.extraHeaders };
    if (this.cookies.size) headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    let body: string | undefined;
    if (form) {
      body = new URLSearchParams(form).toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    }
    const res = await fetch(url, { method, headers, body, redirect: 'manual' });
    this.store(res.headers);
    const location = res.headers.get('location') ?? undefined;
    return { status: res.status, url, location: location ? new URL(location, url).toString() : undefined, html: await res.text(), headers: res.headers };
  }

  /** Follows redirects within the sign-in pages; returns the last page or the first redirect elsewhere (the app). */
  async follow(page: Page): Promise<Page> {
    let p = page;
    for (let i = 0; i < 10 && p.location && p.location.startsWith(this.origin + '/oauth2/'); i++) p = await this.request('GET', p.location);
    return p;
  }

  async get(url: string): Promise<Page> {
    return this.follow(await this.request('GET', url));
  }

  async submit(page: Page, action: string, fields: Record<string, string>): Promise<Page> {
    return this.follow(await this.request('POST', new URL(action, this.origin).toString(), { ...formFields(page.html, action), ...fields }));
  }

  /** From an authorize URL to the app's redirect: signs in, picks the patient, consents. */
  async authorize(authorizeUrl: string, user: { username: string; password: string; otp?: string }, choices: { patient?: string; consent?: 'allow' | 'deny' } = {}): Promise<Page> {
    let p = await this.get(authorizeUrl);
    for (let i = 0; i < 5; i++) {
      if (p.location) return p;
      if (p.html.includes('action="/oauth2/signin"') && p.status === 200) {
        p = await this.submit(p, '/oauth2/signin', { username: user.username, password: user.password, otp: user.otp ?? '' });
      } else if (p.html.includes('action="/oauth2/pick-patient"') && p.html.includes('method="post"') && choices.patient) {
        p = await this.submit(p, '/oauth2/pick-patient', { patient: choices.patient });
      } else if (p.html.includes('action="/oauth2/consent"')) {
        p = await this.submit(p, '/oauth2/consent', { decision: choices.consent ?? 'allow' });
      } else {
        return p;
      }
    }
    return p;
  }
}

/** A POST with form parameters (token, introspection, revocation). */
export async function postForm(url: string, form: Record<string, string>, headers: Record<string, string> = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(form).toString() });
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body, headers: res.headers };
}

export function basic(id: string, secret: string): string {
  return 'Basic ' + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64');
}
