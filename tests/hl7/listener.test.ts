// The MLLP listener's connection handling over real sockets: idle connections are closed after
// the configured time, busy ones are not.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MllpClient, mkMessage, parseAck, startHl7Env, type Hl7Env } from './support.ts';

let env: Hl7Env;
const IDLE_MS = 400;

beforeAll(async () => {
  env = await startHl7Env({ idleTimeoutMs: IDLE_MS });
});
afterAll(async () => {
  await env?.close();
});

let seq = 0;
const a28 = () => {
  const id = `IDLE${Date.now().toString(36)}${seq++}`;
  return mkMessage([`MSH|^~\\&|IDLEAPP|IDLEFAC|WARDLINK|HOSP|20240301120000||ADT^A28^ADT_A05|${id}|P|2.5.1`, 'EVN|A28|20240301120000', `PID|1||${id}^^^&1.2.3.4&ISO^MR||Idle^Ida||19700101|F`]);
};

describe('MLLP idle timeout', () => {
  it('closes a connection that stays idle longer than the timeout', async () => {
    const client = await MllpClient.connect(env.hl7.port);
    const ack = parseAck((await client.request(a28())) as string);
    expect(ack.code).toBe('AA');
    const started = Date.now();
    await client.closed;
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(IDLE_MS - 50);
    expect(waited).toBeLessThan(IDLE_MS * 5);
  });

  it('keeps a connection open while messages keep coming, whatever its age', async () => {
    const client = await MllpClient.connect(env.hl7.port);
    let closed = false;
    void client.closed.then(() => (closed = true));
    const end = Date.now() + IDLE_MS * 3;
    let sent = 0;
    while (Date.now() < end) {
      const ack = parseAck((await client.request(a28())) as string);
      expect(ack.code).toBe('AA');
      sent++;
      await new Promise((r) => setTimeout(r, IDLE_MS / 4));
    }
    expect(closed).toBe(false);
    expect(sent).toBeGreaterThan(4);
    await client.closed; // and once quiet, it goes
    expect(closed).toBe(true);
  });
});
