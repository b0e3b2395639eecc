// One pino logger for the process; request loggers are children carrying the request id.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'wardlink' } });
}
