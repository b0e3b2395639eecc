// Starts and stops the whole server: config -> database (embedded or real) -> migrations ->
// HTTP. main.ts calls this for `npm start`; tests call it to run a real server in-process.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from './config.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './db/embedded.ts';
import { migrate } from './db/migrate.ts';
import { createDb, isPGlite, type Db } from './db/pool.ts';
import { loadDefinitions } from './fhir/definitions.ts';
import { AuditLog } from './audit/audit-log.ts';
import { startAuth, type AuthServer, type DemoAccount } from './auth/index.ts';
import { Repository } from './fhir/repository.ts';
import { createHl7Router, startHl7 } from './hl7/index.ts';
import { findMatches } from './fhir/search/search.ts';
import { startSubscriptions } from './subscriptions/index.ts';
import { seedWorkflowDemo, startWorkflow } from './workflow/index.ts';
import { createApp } from './http/app.ts';
import type { OutboxRelay } from './jobs/outbox-relay.ts';
import type { JobQueue } from './jobs/queue.ts';
import { startJobs } from './jobs/runtime.ts';
import type { Logger } from './logger.ts';

export interface RunningServer {
  url: string;
  fhirBase: string;
  db: Db;
  config: Config;
  /** The job queue: BullMQ with REDIS_URL, in-process otherwise (server/jobs/queue.ts). */
  jobs: JobQueue;
  /** Hands outbox events to listeners: outbox.onResourceEvent(listener). */
  outbox: OutboxRelay;
  /** The SMART authorization server (tokens, users, clients). */
  auth: AuthServer;
  /** Demo accounts seeded at start (embedded default), empty otherwise. */
  demo: DemoAccount[];
  /** The MLLP port actually listened on (0 when HL7_ENABLED=false). */
  hl7Port: number;
  stop(): Promise<void>;
}

export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  loadDefinitions();
  let embedded: EmbeddedPostgres | undefined;
  let connectionString = config.databaseUrl;
  if (!connectionString) {
    embedded = await startEmbeddedPostgres(config.dataDir);
    connectionString = embedded.connectionString;
    log.info({ dataDir: config.dataDir }, 'embedded PostgreSQL (PGlite) started');
  }
  await migrate(connectionString);
  // PGlite (ours, or one a test points DATABASE_URL at) has one backend session shared by all
  // its connections: one pooled connection keeps transactions from interleaving, and no
  // named statements (they would collide across reconnects).
  const single = embedded !== undefined || (await isPGlite(connectionString));
  const db = createDb(connectionString, single ? 1 : config.dbPoolSize, { namedStatements: !single });
  const jobsRuntime = startJobs({ config, db, log, embeddedDatabase: single, startRelay: false });

  // The audit trail writes through the repository's bulk path, stamped with the public base.
  const audit = new AuditLog(new Repository(db, { baseUrl: `${config.baseUrl}/fhir` }, db), log, { serverName: 'Wardlink' });

  const auth = await startAuth({ config, db, log, audit });
  if (config.authDisabled) log.warn('AUTH_DISABLED is set: the FHIR API answers without tokens (test-only configuration)');

  let ready = false;
  const app = createApp({
    config,
    db,
    log,
    isReady: () => ready,
    audit,
    verifyAccessToken: config.authDisabled ? undefined : auth.verifyAccessToken,
    authRoutes: auth.routes(),
    hl7Routes: createHl7Router(
      { db, log, fhirBase: `${config.baseUrl}/fhir`, audit },
      { db, jobs: jobsRuntime.jobs, log, fhirBase: `${config.baseUrl}/fhir` },
    ).routes(),
  });
  const server: Server = createServer(app.callback());
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  // With PORT=0 (tests) the real port is only known now.
  if (config.port === 0) {
    const displayHost = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
    config.baseUrl = `http://${displayHost}:${port}`;
  }
  const demo = config.seedDemo ? await auth.seedDemo({ print: true }) : [];
  // HL7 v2: MLLP listener and outbound feed (it registers outbox listeners, so the relay
  // starts after it).
  const hl7 = await startHl7({
    db,
    log,
    fhirBase: `${config.baseUrl}/fhir`,
    port: config.hl7Port,
    host: config.host,
    idleTimeoutMs: config.hl7IdleTimeoutMs,
    groupConcurrency: config.hl7GroupConcurrency,
    listen: config.hl7Enabled,
    jobs: jobsRuntime.jobs,
    outbox: jobsRuntime.outbox,
    audit,
  });
  // Workflow (consults, referrals, SLA timers) and Subscriptions register outbox listeners and
  // job handlers before the relay starts, so no event goes to nobody.
  if (config.seedDemo) {
    const [hospital] = await findMatches(db, 'Organization', [['identifier', 'urn:wardlink:demo|demo-hospital']], 1);
    await seedWorkflowDemo({
      db,
      fhirBase: `${config.baseUrl}/fhir`,
      hospital: hospital ? `Organization/${hospital.id}` : undefined,
      administrator: demo.find((a) => a.role === 'admin')?.fhirUser,
      staff: {
        head: demo.find((a) => a.role === 'department-head')?.fhirUser,
        clinician: demo.find((a) => a.role === 'clinician')?.fhirUser,
        nurse: demo.find((a) => a.role === 'nurse')?.fhirUser,
      },
    });
  }
  const workflow = await startWorkflow({ db, log, jobs: jobsRuntime.jobs, fhirBase: `${config.baseUrl}/fhir`, outbox: jobsRuntime.outbox });
  const subscriptions = await startSubscriptions({ config, db, log, jobs: jobsRuntime.jobs, outbox: jobsRuntime.outbox });
  // The websocket channel (/fhir/ws) shares the HTTP port.
  const detachWebsocket = subscriptions.attach(server);
  jobsRuntime.outbox.start();
  ready = true;

  return {
    url: config.baseUrl,
    fhirBase: `${config.baseUrl}/fhir`,
    db,
    config,
    jobs: jobsRuntime.jobs,
    outbox: jobsRuntime.outbox,
    auth,
    demo,
    hl7Port: hl7.port,
    async stop() {
      ready = false;
      // Stop accepting connections; in-flight requests finish before close() resolves.
      // Keep-alive connections are closed as soon as they go idle (their response is sent);
      // after 20 s, whatever is left is cut.
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        const sweep = setInterval(() => server.closeIdleConnections(), 50);
        const deadline = setTimeout(() => server.closeAllConnections(), 20_000);
        server.once('close', () => {
          clearInterval(sweep);
          clearTimeout(deadline);
        });
      });
      detachWebsocket();
      await subscriptions.stop();
      await workflow.stop();
      await hl7.stop();
      // Running job handlers and the outbox batch being delivered finish before the pool closes.
      await jobsRuntime.stop();
      await audit.stop();
      await db.close();
      await embedded?.stop();
    },
  };
}
