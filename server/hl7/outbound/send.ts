// Sends one v2 message over MLLP with node-hl7-client and waits for its ACK (MSA-2 = our
// MSH-10). AA / CA is success; AE / AR / CE / CR, no ACK in time, or no connection is a failure
// the outbound queue retries.
import { Client, Message } from 'node-hl7-client';
import { ackCodeOf } from '../ack.ts';

export interface MllpEndpoint {
  host: string;
  port: number;
}

export class SendError extends Error {
  readonly ack?: string;
  constructor(message: string, ack?: string) {
    super(message);
    this.ack = ack;
  }
}

/** "mllp://host:port" (Endpoint.address) -> host and port. */
export function parseEndpoint(address: string): MllpEndpoint {
  const m = /^(?:mllp|tcp):\/\/([^:/]+):(\d{1,5})\/?$/.exec(address.trim());
  if (!m) throw new Error(`Not an MLLP endpoint address (mllp://host:port): ${address}`);
  return { host: m[1], port: Number(m[2]) };
}

export async function sendMessage(endpoint: MllpEndpoint, text: string, controlId: string, timeoutMs = 10_000): Promise<string> {
  const client = new Client({ host: endpoint.host });
  let settle: (ack: string) => void = () => {};
  const acked = new Promise<string>((resolve) => {
    settle = resolve;
  });
  const connection = client.createConnection({ port: endpoint.port, maxConnectionAttempts: 1, retryLow: 100, retryHigh: 200 } as never, async (res) => {
    const ack = res.getMessage().toString();
    if (ack.includes(`|${controlId}`)) settle(ack);
  });
  const failed = new Promise<never>((_, reject) => {
    connection.on('client.error', (err: unknown) => reject(new SendError(`MLLP connection to ${endpoint.host}:${endpoint.port} failed: ${String(err)}`)));
    setTimeout(() => reject(new SendError(`No ACK from ${endpoint.host}:${endpoint.port} within ${timeoutMs} ms`)), timeoutMs).unref();
  });
  try {
    const ack = await Promise.race([
      (async () => {
        await connection.sendMessage(new Message({ text }));
        return acked;
      })(),
      failed,
    ]);
    const code = ackCodeOf(ack);
    if (code !== 'AA' && code !== 'CA') throw new SendError(`The receiver answered ${code ?? 'without MSA'}`, ack);
    return ack;
  } finally {
    failed.catch(() => {});
    await Promise.race([connection.close().catch(() => {}), new Promise((r) => setTimeout(r, 500).unref())]);
  }
}
