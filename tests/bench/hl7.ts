// HL7 v2 benchmark: ADT^A01 messages per second and ACK latency (p50 / p99) over 1 and 5 MLLP
// connections against real PostgreSQL (DATABASE_URL, default the local server), each message a
// new patient + encounter written through the FHIR engine. `npm run bench:hl7`.
//   HL7_BENCH_MESSAGES  messages per run (default 2000)   HL7_BENCH_POOL  pg pool size (default 10)
import { migrate } from '../../server/db/migrate.ts';
import { createDb } from '../../server/db/pool.ts';
import { loadDefinitions } from '../../server/fhir/definitions.ts';
import { startHl7 } from '../../server/hl7/index.ts';
import { createLogger } from '../../server/logger.ts';
import { MllpClient } from '../hl7/support.ts';
import { createTestDatabase } from '../support/db.ts';

process.env.DATABASE_URL ??= 'postgres://postgres@127.0.0.1:5432/postgres';
const TOTAL = Number(process.env.HL7_BENCH_MESSAGES ?? 2000);
const POOL = Number(process.env.HL7_BENCH_POOL ?? 10);

let counter = 0;
function a01(): string {
  const n = ++counter;
  const id = `B${Date.now().toString(36)}${n}`;
  return [
    `MSH|^~\\&|BENCH|FAC|WARDLINK|HOSP|20240301120000+0000||ADT^A01^ADT_A01|${id}|P|2.5.1`,
    'EVN|A01|20240301120000+0000',
    `PID|1||${id}^^^&1.2.3.4&ISO^MR||Bench^Patient${n}^A||19800101|F|||1 Main St^^Springfield^IL^62701^USA^H||^PRN^PH^^1^217^5551234`,
    `PV1|1|I|4E^401^B^HOSP|E|||1234^Attend^Alice|||||||||||||V${id}^^^&1.2.3.5&ISO^VN|||||||||||||||||||||||||20240301110000+0000`,
  ].join('\r');
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

async function run(port: number, connections: number, total: number): Promise<{ rate: number; p50: number; p99: number; errors: number }> {
  const clients = await Promise.all(Array.from({ length: connections }, () => MllpClient.connect(port)));
  const latencies: number[] = [];
  let errors = 0;
  let sent = 0;
  const start = performance.now();
  await Promise.all(
    clients.map(async (c) => {
      while (sent < total) {
        sent++;
        const t0 = performance.now();
        const ack = await c.request(a01(), 30_000);
        latencies.push(performance.now() - t0);
        if (!ack?.includes('MSA|AA|')) errors++;
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  for (const c of clients) c.close();
  latencies.sort((a, b) => a - b);
  return { rate: total / seconds, p50: pct(latencies, 50), p99: pct(latencies, 99), errors };
}

loadDefinitions();
const database = await createTestDatabase();
await migrate(database.connectionString);
const db = createDb(database.connectionString, POOL);
const hl7 = await startHl7({ db, log: createLogger('silent'), fhirBase: 'http://bench/fhir', port: 0, host: '127.0.0.1' });
try {
  await run(hl7.port, 5, 200); // warm-up: prepared statements, JIT
  for (const connections of [1, 5]) {
    const r = await run(hl7.port, connections, TOTAL);
    console.log(
      `ADT^A01 over ${connections} MLLP connection${connections > 1 ? 's' : ''}: ${r.rate.toFixed(0)} messages/s, ACK p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms` +
        (r.errors ? `, ${r.errors} not AA` : ''),
    );
  }
} finally {
  await hl7.stop();
  await db.close();
  await database.drop();
}
