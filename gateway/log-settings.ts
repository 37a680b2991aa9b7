// Triton's logging extension (LogSettings over gRPC, GET/POST /v2/logging):
// an operator turns request logging on for a while and off again without a
// restart. Triton's settings are switches per severity and a verbose level;
// Fabriek's log (pino) has one threshold, each level including those above
// it. So a change is read against the settings in force, and the result must
// be a threshold: verbose logs need info, info needs warnings, warnings need
// errors. Other combinations are refused with the reason, as are a log file
// (the log goes to stderr, as JSON lines) and another format. levelAfter is
// pure; logControl sets the logger's level and hands it to the other gateway
// processes.
import { type Logger } from 'pino';
import { invalidArgument } from '../core/errors.js';
import { isLogLevel, type LogLevel, logsAt, setLevel } from '../core/log-levels.js';

/** A setting's value as both protocols carry it (LogSettingsRequest.SettingValue's oneof; JSON). */
export type LogSettingValue = boolean | number | string;

/** The settings as Triton names them. */
export interface LogSettings {
  readonly log_file: string;
  readonly log_info: boolean;
  readonly log_warning: boolean;
  readonly log_error: boolean;
  readonly log_verbose_level: number;
  readonly log_format: string;
}

/** The log's format: JSON lines (pino), whatever Triton's clients ask. */
export const LOG_FORMAT = 'json';

/** At `least` or more verbose; a level pino does not know (a custom one) logs nothing of these. */
const at = (level: string, least: LogLevel): boolean => isLogLevel(level) && logsAt(level, least);

/** The settings a pino level amounts to. */
export function settingsOfLevel(level: string): LogSettings {
  return {
    log_file: '',
    log_info: at(level, 'info'),
    log_warning: at(level, 'warn'),
    log_error: at(level, 'error'),
    log_verbose_level: at(level, 'trace') ? 2 : at(level, 'debug') ? 1 : 0,
    log_format: LOG_FORMAT,
  };
}

const KINDS: Readonly<Record<keyof LogSettings, 'boolean' | 'number' | 'string'>> = {
  log_file: 'string',
  log_info: 'boolean',
  log_warning: 'boolean',
  log_error: 'boolean',
  log_verbose_level: 'number',
  log_format: 'string',
};

const isSettingName = (name: string): name is keyof LogSettings => Object.hasOwn(KINDS, name);

/**
 * The level that `changes` make of `level`; throws INVALID_ARGUMENT naming
 * the setting for an unknown name, a value of the wrong type, a log file or
 * format Fabriek does not write, or switches that are not a threshold.
 */
export function levelAfter(level: string, changes: ReadonlyMap<string, unknown>): LogLevel {
  const next: { -readonly [K in keyof LogSettings]: LogSettings[K] } = { ...settingsOfLevel(level) };
  for (const [name, value] of changes) {
    if (!isSettingName(name)) throw invalidArgument(`unknown log setting '${name}': expected one of ${Object.keys(KINDS).join(', ')}`);
    const kind = KINDS[name];
    if (typeof value !== kind) throw invalidArgument(`log setting '${name}': expected ${kind === 'number' ? 'an unsigned integer' : `a ${kind}`}, got ${JSON.stringify(value)}`);
    if (name === 'log_file' && value !== '') {
      throw invalidArgument(`log setting 'log_file': Fabriek logs to stderr (JSON lines), not to a file; got ${JSON.stringify(value)} (redirect stderr instead)`);
    }
    if (name === 'log_format' && value !== LOG_FORMAT) {
      throw invalidArgument(`log setting 'log_format': Fabriek logs JSON lines ('${LOG_FORMAT}'); got ${JSON.stringify(value)}`);
    }
    if (name === 'log_verbose_level' && !(Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 0xffff_ffff)) {
      throw invalidArgument(`log setting 'log_verbose_level': expected an unsigned integer, got ${JSON.stringify(value)}`);
    }
    (next as Record<string, unknown>)[name] = value;
  }
  const verbose = next.log_verbose_level > 0;
  const needs = (wanted: boolean, what: string, needed: boolean, neededName: string): void => {
    if (wanted && !needed) {
      throw invalidArgument(`log settings: ${what} needs ${neededName} true: Fabriek's log level is a threshold, each level including those above it`);
    }
  };
  needs(verbose, 'log_verbose_level > 0', next.log_info, 'log_info');
  needs(next.log_info, 'log_info true', next.log_warning, 'log_warning');
  needs(next.log_warning, 'log_warning true', next.log_error, 'log_error');
  if (next.log_verbose_level >= 2) return 'trace';
  if (verbose) return 'debug';
  if (next.log_info) return 'info';
  if (next.log_warning) return 'warn';
  return next.log_error ? 'error' : 'silent';
}

/** What the protocols ask: the settings in force, and a change (in force in every gateway process once it resolves). */
export interface LogControl {
  settings(): LogSettings;
  /** Values as the client sent them (JSON or the proto's oneof): checked here. */
  update(changes: ReadonlyMap<string, unknown>): Promise<LogSettings>;
}

/** The level of `log` read and set; `others` takes a new level to the other gateway processes (--gateway-processes). */
export function logControl(log: Logger, others?: (level: LogLevel) => Promise<void>): LogControl {
  return {
    settings: () => settingsOfLevel(log.level),
    update: async (changes) => {
      const from = log.level;
      const to = levelAfter(from, changes);
      if (to !== from) {
        setLevel(log, to, 'LogSettings');
        await others?.(to);
      }
      return settingsOfLevel(to);
    },
  };
}
