// The MLLP listener: each frame is one message (or an FHS/BHS batch), stored and answered
// through the inbound pipeline. Nothing a sender sends can stop the listener: unreadable input
// is answered AR with an ERR, and it is stored like everything else.
import { buildAck } from './ack.ts';
import { ErrorCode, splitBatch } from './message.ts';
import { receive, decode, type InboundDeps, type InboundResult } from './inbound/process.ts';
import { startMllpServer, type MllpServer } from './mllp.ts';
import { nowDtm } from './datetime.ts';

export async function startListener(deps: InboundDeps, options: { port: number; host: string; idleTimeoutMs?: number }): Promise<MllpServer> {
  return startMllpServer({
    port: options.port,
    host: options.host,
    idleTimeoutMs: options.idleTimeoutMs,
    log: deps.log.child({ component: 'hl7-mllp' }),
    handler: async (raw) => handleFrame(deps, raw),
  });
}

export async function handleFrame(deps: InboundDeps, raw: Buffer): Promise<{ response?: string; after?: Promise<unknown> }> {
  const text = decode(raw);
  const batch = splitBatch(text);
  if (!batch.batch) {
    const result = await receive(deps, raw, 'mllp');
    return { response: result.ack, after: result.processing };
  }
  // A batch: each message is stored and processed on its own; the answer is a batch of ACKs.
  const acks: string[] = [];
  const pending: Promise<unknown>[] = [];
  for (const message of batch.messages) {
    const result: InboundResult = await receive(deps, Buffer.from(message, 'utf8'), 'mllp');
    if (result.ack) acks.push(result.ack);
    if (result.processing) pending.push(result.processing);
  }
  if (batch.messages.length === 0) {
    acks.push(buildAck({}, 'AR', [{ code: ErrorCode.segmentSequence, text: 'The batch contains no message (no MSH segment)' }]));
  }
  const response = [`BHS|^~\\&|WARDLINK|WARDLINK|||${nowDtm()}`, ...acks, `BTS|${acks.length}`].join('\r');
  return { response, after: Promise.allSettled(pending) };
}
