import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ServingError } from '../../core/errors.js';
import { levelAfter, logControl, settingsOfLevel } from '../../gateway/log-settings.js';

const changes = (o: Record<string, unknown>): Map<string, unknown> => new Map(Object.entries(o));

/** The INVALID_ARGUMENT message levelAfter throws. */
function refusal(level: string, o: Record<string, unknown>): string {
  try {
    levelAfter(level, changes(o));
  } catch (error) {
    expect(error).toBeInstanceOf(ServingError);
    expect((error as ServingError).code).toBe(3);
    return (error as ServingError).message;
  }
  throw new Error('not refused');
}

describe('settingsOfLevel', () => {
  it('says each pino level in Triton\'s switches', () => {
    const row = (level: string): unknown[] => {
      const s = settingsOfLevel(level);
      return [s.log_error, s.log_warning, s.log_info, s.log_verbose_level];
    };
    expect(row('trace')).toEqual([true, true, true, 2]);
    expect(row('debug')).toEqual([true, true, true, 1]);
    expect(row('info')).toEqual([true, true, true, 0]);
    expect(row('warn')).toEqual([true, true, false, 0]);
    expect(row('error')).toEqual([true, false, false, 0]);
    expect(row('silent')).toEqual([false, false, false, 0]);
    expect(settingsOfLevel('info')).toMatchObject({ log_file: '', log_format: 'json' });
  });
});

describe('levelAfter', () => {
  it('changes the threshold from the settings in force', () => {
    expect(levelAfter('info', changes({}))).toBe('info');
    expect(levelAfter('info', changes({ log_verbose_level: 1 }))).toBe('debug');
    expect(levelAfter('info', changes({ log_verbose_level: 7 }))).toBe('trace');
    expect(levelAfter('debug', changes({ log_verbose_level: 0 }))).toBe('info');
    expect(levelAfter('info', changes({ log_info: false }))).toBe('warn');
    expect(levelAfter('warn', changes({ log_info: true }))).toBe('info');
    expect(levelAfter('info', changes({ log_info: false, log_warning: false }))).toBe('error');
    expect(levelAfter('info', changes({ log_info: false, log_warning: false, log_error: false }))).toBe('silent');
    expect(levelAfter('silent', changes({ log_error: true, log_warning: true, log_info: true, log_verbose_level: 1 }))).toBe('debug');
    // Saying what is already so, and Fabriek's own file and format, changes nothing.
    expect(levelAfter('info', changes({ log_info: true, log_file: '', log_format: 'json' }))).toBe('info');
  });

  it('refuses switches that are not a threshold, saying what each needs', () => {
    expect(refusal('info', { log_warning: false })).toBe(
      "log settings: log_info true needs log_warning true: Fabriek's log level is a threshold, each level including those above it",
    );
    expect(refusal('info', { log_error: false })).toMatch(/^log settings: log_warning true needs log_error true/);
    expect(refusal('warn', { log_verbose_level: 1 })).toMatch(/^log settings: log_verbose_level > 0 needs log_info true/);
  });

  it('refuses unknown names, wrong types, a log file and another format, naming the setting', () => {
    expect(refusal('info', { log_level: 'debug' })).toBe(
      "unknown log setting 'log_level': expected one of log_file, log_info, log_warning, log_error, log_verbose_level, log_format",
    );
    expect(refusal('info', { log_info: 'yes' })).toBe('log setting \'log_info\': expected a boolean, got "yes"');
    expect(refusal('info', { log_verbose_level: true })).toBe("log setting 'log_verbose_level': expected an unsigned integer, got true");
    expect(refusal('info', { log_verbose_level: -1 })).toBe("log setting 'log_verbose_level': expected an unsigned integer, got -1");
    expect(refusal('info', { log_verbose_level: 1.5 })).toBe("log setting 'log_verbose_level': expected an unsigned integer, got 1.5");
    expect(refusal('info', { log_info: null })).toBe("log setting 'log_info': expected a boolean, got null");
    expect(refusal('info', { log_file: '/var/log/fabriek.log' })).toMatch(/^log setting 'log_file': Fabriek logs to stderr \(JSON lines\), not to a file/);
    expect(refusal('info', { log_format: 'ISO8601' })).toBe('log setting \'log_format\': Fabriek logs JSON lines (\'json\'); got "ISO8601"');
    // A name that is a property of every object is still unknown.
    expect(refusal('info', { toString: true })).toMatch(/^unknown log setting 'toString'/);
  });
});

describe('logControl', () => {
  const logger = (level: string): { log: pino.Logger; lines: { msg: string; from?: string; to?: string }[] } => {
    const lines: { msg: string; from?: string; to?: string }[] = [];
    return { log: pino({ level }, { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string }) }), lines };
  };

  it('sets the logger\'s level, says so at the louder of the two levels, and tells the other processes', async () => {
    const { log, lines } = logger('warn');
    const told: string[] = [];
    const control = logControl(log, async (level) => {
      told.push(level);
    });
    expect(control.settings()).toMatchObject({ log_info: false, log_verbose_level: 0 });
    expect(await control.update(changes({ log_info: true, log_verbose_level: 1 }))).toMatchObject({ log_info: true, log_verbose_level: 1 });
    expect(log.level).toBe('debug');
    expect(told).toEqual(['debug']);
    expect(lines.at(-1)).toMatchObject({ msg: 'log level changed (LogSettings)', from: 'warn', to: 'debug' });
    // Quieter: said before the level drops.
    await control.update(changes({ log_verbose_level: 0, log_info: false }));
    expect(log.level).toBe('warn');
    expect(lines.at(-1)).toMatchObject({ from: 'debug', to: 'warn' });
    expect(told).toEqual(['debug', 'warn']);
  });

  it('a change to what is in force tells no one; a refused one changes nothing', async () => {
    const { log } = logger('info');
    const told: string[] = [];
    const control = logControl(log, async (level) => {
      told.push(level);
    });
    await control.update(changes({ log_info: true }));
    await expect(control.update(changes({ log_error: false }))).rejects.toThrow(/needs log_error true/);
    expect(log.level).toBe('info');
    expect(told).toEqual([]);
  });
});
