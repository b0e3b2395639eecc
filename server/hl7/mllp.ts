// MLLP (Minimal Lower Layer Protocol) framing and a TCP listener: <VT> message <FS><CR>
// (0x0B ... 0x1C 0x0D). Frames on one connection are answered in order, one at a time; any
// number of connections run side by side. We frame ourselves rather than use node-hl7-server's
// Inbound: its 2.5.0 listener never clears its receive buffer (the third message on a connection
// is handled together with the first two again), cannot split two frames that arrive in one TCP
// chunk, and sends nothing back when parsing fails, which leaves the sender waiting.
import net from 'node:net';
import type { Logger } from '../logger.ts';

export const VT = 0x0b;
export const FS = 0x1c;
export const CR = 0x0d;

export function frame(text: string | Buffer): Buffer {
  const body = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  return Buffer.concat([Buffer.from([VT]), body, Buffer.from([FS, CR])]);
}

/** Incremental deframer: push chunks, get whole frames. Bytes outside a frame are dropped. */
export class MllpDecoder {
  private buffer: Buffer = Buffer.alloc(0);
  private readonly maxFrameBytes: number;
  /** Bytes dropped because they were outside any frame (for logging). */
  dropped = 0;

  constructor(maxFrameBytes = 16 * 1024 * 1024) {
    this.maxFrameBytes = maxFrameBytes;
  }

  push(chunk: Buffer): Buffer[] {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    const frames: Buffer[] = [];
    for (;;) {
      const start = this.buffer.indexOf(VT);
      if (start < 0) {
        this.dropped += this.buffer.length;
        this.buffer = Buffer.alloc(0);
        break;
      }
      if (start > 0) {
        this.dropped += start;
        this.buffer = this.buffer.subarray(start);
      }
      let end = -1;
      for (let i = this.buffer.indexOf(FS, 1); i >= 0; i = this.buffer.indexOf(FS, i + 1)) {
        if (i + 1 >= this.buffer.length) break; // FS is the last byte: wait for the CR
        if (this.buffer[i + 1] === CR) {
          end = i;
          break;
        }
      }
      if (end < 0) {
        if (this.buffer.length > this.maxFrameBytes) throw new Error(`MLLP frame larger than ${this.maxFrameBytes} bytes`);
        break;
      }
      frames.push(Buffer.from(this.buffer.subarray(1, end)));
      this.buffer = this.buffer.subarray(end + 2);
    }
    return frames;
  }
}

export interface MllpConnection {
  remoteAddress?: string;
  remotePort?: number;
}

/** Answers one frame; resolves to the response to frame back (or nothing to send). */
export type FrameHandler = (frame: Buffer, connection: MllpConnection) => Promise<{ response?: string; after?: Promise<unknown> }>;

export interface MllpServer {
  readonly port: number;
  /** Stops accepting, lets each connection finish the frame it is handling, then closes them. */
  close(): Promise<void>;
}

export interface MllpServerOptions {
  port: number;
  host: string;
  log: Logger;
  handler: FrameHandler;
  maxFrameBytes?: number;
  /**
   * A connection with no traffic for this long, and no message being handled, is closed
   * (senders reconnect when they next have something to send); 0 keeps idle connections open.
   */
  idleTimeoutMs?: number;
}

/** Default idle timeout: long enough for a quiet feed's keep-alive habits, short enough to free dead peers. */
export const DEFAULT_IDLE_TIMEOUT_MS = 10 * 60_000;

export async function startMllpServer(options: MllpServerOptions): Promise<MllpServer> {
  const { log, handler } = options;
  const sockets = new Set<net.Socket>();
  const inFlight = new Set<Promise<unknown>>();
  let closing = false;

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    const connection: MllpConnection = { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort };
    const decoder = new MllpDecoder(options.maxFrameBytes);
    let chain: Promise<unknown> = Promise.resolve();
    let handling = 0;
    const idleMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    if (idleMs > 0) {
      // 'timeout' fires after idleMs without reads or writes; a message still being processed
      // (a slow database) is not idleness: its ACK is still owed.
      socket.setTimeout(idleMs);
      socket.on('timeout', () => {
        if (handling > 0) return;
        log.info({ ...connection, idleMs }, 'MLLP connection idle: closed');
        socket.end();
      });
    }
    socket.on('data', (chunk: Buffer) => {
      let frames: Buffer[];
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        log.warn({ err, ...connection }, 'MLLP frame too large: connection closed');
        socket.destroy();
        return;
      }
      for (const f of frames) {
        // Frames of one connection are handled strictly in order: ACKs go back in order.
        handling++;
        const step = chain.then(async () => {
          if (socket.destroyed) return;
          try {
            const { response, after } = await handler(f, connection);
            if (response !== undefined && !socket.destroyed) socket.write(frame(response));
            if (after) await after.catch(() => {});
          } catch (err) {
            // The handler answers every message itself; reaching here means the store itself
            // failed (database down): no ACK, so the sender keeps the message and resends.
            log.error({ err, ...connection }, 'MLLP message could not be handled; closing the connection so the sender resends');
            socket.destroy();
          }
        });
        inFlight.add(step);
        step.finally(() => {
          handling--;
          inFlight.delete(step);
        });
        chain = step;
      }
    });
    socket.on('error', (err) => log.debug({ err, ...connection }, 'MLLP connection error'));
    socket.on('close', () => sockets.delete(socket));
    if (closing) socket.end();
  });
  server.on('error', (err) => log.error({ err }, 'MLLP listener error'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    async close() {
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.allSettled([...inFlight]);
      for (const s of sockets) s.end();
      const force = setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, 2000);
      await closed;
      clearTimeout(force);
    },
  };
}
