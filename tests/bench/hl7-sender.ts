// bench:hl7's sender, on a thread of its own (worker_threads), as a feeding system would be its
// own process: its framing, writes and ACK parsing do not queue behind the server's work on the
// event loop. Connects `connections` MLLP connections and posts 'ready'; on 'go', sends ADT^A01
// messages over them, each connection waiting for its ACK before its next, until `total` were
// sent; posts back each ACK's latency and how many were not AA.
import { parentPort, workerData } from 'node:worker_threads';
import { MllpClient } from '../hl7/support.ts';

interface Job {
  port: number;
  connections: number;
  total: number;
}

let counter = 0;
function a01(): string {
  const n = ++counter;
  const id = `B${Date.now().toString(36)}${n}`;
  return [
    `MSH|^~\\&|BENCH|FAC|WARDLINK|HOSP|20240301120000+0000||ADT^A01^ADT_A01|${id}|P|2.5.1`,
    'EVN|A01|20240301120000+0000',
    `PID|1||${id}^^^&1.2.3.4&ISO^MR||Bench^Patient${n}^A||19800101|F|||1 Main St^^Springfield^IL^62701^USA^H||^PRN^PH^^1^217^5551234`,
    `PV1|1|I|4E^401^B^HOSP|E|||1234^Attend^Alice||||||||||||V${id}^^^&1.2.3.5&ISO^VN|||||||||||||||||||||||||20240301110000+0000`,
  ].join('\r');
}

const job = workerData as Job;
const clients = await Promise.all(Array.from({ length: job.connections }, () => MllpClient.connect(job.port)));
parentPort?.once('message', async () => {
  const latencies: number[] = [];
  let errors = 0;
  let sent = 0;
  const start = performance.now();
  await Promise.all(
    clients.map(async (c) => {
      while (sent < job.total) {
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
  parentPort?.postMessage({ latencies, errors, seconds });
});
parentPort?.postMessage('ready');
