// pino's log levels, the one list the gateway's and the worker's --log-level
// and Triton's log settings (gateway/log-settings.ts) read.

/** Most verbose first; 'silent' logs nothing. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(level: string): level is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(level);
}

/** Whether `level` logs what `least` does (it is `least` or more verbose). */
export function logsAt(level: LogLevel, least: LogLevel): boolean {
  return LOG_LEVELS.indexOf(level) <= LOG_LEVELS.indexOf(least);
}

/** What setLevel needs of a logger (pino's). */
export interface LevelledLog {
  level: string;
  info(fields: object, message: string): void;
}

/**
 * Sets `log`'s level to `to`, saying so (with `why`) at the more verbose of
 * the two levels, so that the line shows either way.
 */
export function setLevel(log: LevelledLog, to: LogLevel, why: string): void {
  const from = log.level;
  if (from === to) return;
  const say = (): void => log.info({ from, to }, `log level changed (${why})`);
  if (!isLogLevel(from) || logsAt(to, from)) {
    log.level = to;
    say();
  } else {
    say();
    log.level = to;
  }
}
