import { pino, type Logger } from 'pino';

/** JSON logs on stderr, so stdout carries only the ready line. Never log tensor data. */
export function createLogger(level: string, name: string): Logger {
  return pino({ level, name, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: false }));
}
