// `npm start`: reads the config, starts the server, prints where it is, and shuts down
// gracefully on SIGTERM / SIGINT (in-flight requests finish, pools close).
import { ConfigError, loadConfig, type Config } from './config.ts';
import { createLogger } from './logger.ts';
import { startServer } from './server.ts';

let config: Config;
try {
  config = loadConfig();
} catch (e) {
  if (e instanceof ConfigError) {
    console.error(`Configuration error: ${e.message}`);
    process.exit(1);
  }
  throw e;
}

const log = createLogger(config.logLevel);
const server = await startServer(config, log);
log.info({ url: server.url, fhir: server.fhirBase, mode: config.databaseUrl ? 'production' : 'embedded' }, 'Wardlink started');
console.log(`\nWardlink is running.\n  FHIR base: ${server.fhirBase}\n  Metadata:  ${server.fhirBase}/metadata\n`);

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => process.exit(1), 25_000);
    force.unref();
    server.stop().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  });
}
