// The message a gateway sends the local workers it forked, over their IPC
// channel, when LogSettings change its log level: the workers then log at
// it too (a worker restarted later starts at it with --log-level). Importing
// this file has no side effects.
import { isLogLevel, type LogLevel } from '../core/log-levels.js';

export interface WorkerLogLevelMessage {
  readonly type: 'log-level';
  readonly level: LogLevel;
}

export function isWorkerLogLevelMessage(message: unknown): message is WorkerLogLevelMessage {
  if (typeof message !== 'object' || message === null) return false;
  const m = message as Record<string, unknown>;
  return m['type'] === 'log-level' && typeof m['level'] === 'string' && isLogLevel(m['level']);
}
