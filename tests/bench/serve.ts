// Child process that hosts one server under test (`fhir` or `ceiling`), so the load generator in
// the parent never shares an event loop with it. Talks to the parent over the fork IPC channel:
//   child -> parent  { type: 'ready', url }            once listening
//   parent -> child  { type: 'stats' }                  -> { type: 'stats', queries, cpuMs, rssMb }
//   parent -> child  { type: 'stop' }                   stops the server, closes the pool, exits
// Every SQL statement the process sends is counted (pg.Client.prototype.query is wrapped before
// the server is loaded), so the parent can print SQL round trips per request.
import pg from 'pg';

type Msg = { type: 'stats' } | { type: 'stop' };

let queries = 0;
const proto = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
const originalQuery = proto.query;
proto.query = function (this: unknown, ...args: unknown[]) {
  queries++;
  return originalQuery.apply(this, args);
};

const kind = process.argv[2];
const databaseUrl = process.argv[3];
const poolSize = process.argv[4] ?? '10';
if (!process.send || !databaseUrl || (kind !== 'fhir' && kind !== 'fhir-noauth' && kind !== 'ceiling')) {
  console.error('usage (forked by run.ts): serve.ts fhir|fhir-noauth|ceiling <DATABASE_URL> [poolSize]');
  process.exit(2);
}

let stopServer: () => Promise<void>;
let url: string;
let token: string | undefined;
if (kind === 'fhir' || kind === 'fhir-noauth') {
  const { systemToken, TEST_CLIENT_ID, TEST_CLIENT_SECRET } = await import('../support/token.ts');
  const { loadConfig } = await import('../../server/config.ts');
  const { createLogger } = await import('../../server/logger.ts');
  const { startServer } = await import('../../server/server.ts');
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: databaseUrl,
    LOG_LEVEL: 'silent',
    DB_POOL_SIZE: poolSize,
    SEED_DEMO: 'false',
    HL7_ENABLED: 'false',
    BOOTSTRAP_CLIENT_ID: TEST_CLIENT_ID,
    BOOTSTRAP_CLIENT_SECRET: TEST_CLIENT_SECRET,
    // fhir-noauth: the test-only configuration the auth-overhead figure is compared with.
    AUTH_DISABLED: kind === 'fhir-noauth' ? 'true' : 'false',
    // The token-endpoint figure measures the endpoint, not its rate limiter.
    RATE_LIMIT_TOKEN_PER_CLIENT: '1000000',
    RATE_LIMIT_PER_IP: '1000000',
  });
  const server = await startServer(config, createLogger('silent'));
  url = server.url;
  token = await systemToken(server.url, TEST_CLIENT_ID, TEST_CLIENT_SECRET);
  stopServer = () => server.stop();
} else {
  const { startCeiling } = await import('./ceiling.ts');
  const ceiling = await startCeiling(databaseUrl, Number(poolSize));
  url = ceiling.url;
  stopServer = () => ceiling.stop();
}

let stopping = false;
async function stop(code: number) {
  if (stopping) return;
  stopping = true;
  const timer = setTimeout(() => process.exit(code), 5_000);
  timer.unref();
  try {
    await stopServer();
  } finally {
    process.exit(code);
  }
}

process.on('message', (msg: Msg) => {
  if (msg.type === 'stats') {
    const cpu = process.cpuUsage();
    process.send?.({
      type: 'stats',
      queries,
      cpuMs: (cpu.user + cpu.system) / 1000,
      rssMb: process.memoryUsage().rss / 1024 / 1024,
    });
  } else if (msg.type === 'stop') {
    void stop(0);
  }
});
// The parent went away (crash, Ctrl-C): do not linger holding connections to the database.
process.on('disconnect', () => void stop(0));
process.send({ type: 'ready', url, token });
