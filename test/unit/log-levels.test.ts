import { describe, expect, it } from 'vitest';
import { type LevelledLog, logsAt, setLevel } from '../../core/log-levels.js';
import { isWorkerLogLevelMessage } from '../../worker/log-level-message.js';

/** A logger that keeps the lines its level lets through. */
function fakeLog(level: string): LevelledLog & { lines: string[] } {
  const log = {
    level,
    lines: [] as string[],
    info(fields: object, message: string) {
      if (logsAt(log.level as 'info', 'info')) log.lines.push(`${message} ${JSON.stringify(fields)}`);
    },
  };
  return log;
}

describe('setLevel', () => {
  it('says the change at the more verbose of the two levels, so the line shows either way', () => {
    const down = fakeLog('info');
    setLevel(down, 'warn', 'test');
    expect(down.level).toBe('warn');
    expect(down.lines).toEqual(['log level changed (test) {"from":"info","to":"warn"}']);
    const up = fakeLog('warn');
    setLevel(up, 'debug', 'test');
    expect(up.level).toBe('debug');
    expect(up.lines).toEqual(['log level changed (test) {"from":"warn","to":"debug"}']);
  });

  it('says nothing when the level stays', () => {
    const same = fakeLog('info');
    setLevel(same, 'info', 'test');
    expect(same.lines).toEqual([]);
  });
});

describe('isWorkerLogLevelMessage', () => {
  it("takes a pino level, and nothing else", () => {
    expect(isWorkerLogLevelMessage({ type: 'log-level', level: 'debug' })).toBe(true);
    expect(isWorkerLogLevelMessage({ type: 'log-level', level: 'loud' })).toBe(false);
    expect(isWorkerLogLevelMessage({ type: 'ready', level: 'debug' })).toBe(false);
    expect(isWorkerLogLevelMessage('log-level')).toBe(false);
    expect(isWorkerLogLevelMessage(null)).toBe(false);
  });
});
