import { describe, expect, it } from 'vitest';
import { parseServeOptions, UsageError } from '../../../gateway/options.js';
import { DEFAULT_POLL_SECS, loadsAtStart } from '../../../gateway/repository/control-mode.js';

const parse = (...flags: string[]) => parseServeOptions(['--model-repository', 'm', ...flags]).modelControl;
const usage = (...flags: string[]): string => {
  try {
    parse(...flags);
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as Error).message;
  }
  throw new Error('expected a usage error');
};

describe('--model-control-mode', () => {
  it('defaults to none, which loads every model', () => {
    const control = parse();
    expect(control).toEqual({ mode: 'none' });
    expect(loadsAtStart(control, 'any')).toBe(true);
  });

  it('explicit loads only the --load-model names, or all with *', () => {
    const some = parse('--model-control-mode', 'explicit', '--load-model', 'a', '--load-model', 'b');
    expect(['a', 'b', 'c'].map((m) => loadsAtStart(some, m))).toEqual([true, true, false]);
    expect(loadsAtStart(parse('--model-control-mode', 'explicit'), 'a')).toBe(false);
    expect(loadsAtStart(parse('--model-control-mode', 'explicit', '--load-model', '*'), 'z')).toBe(true);
  });

  it('poll takes --repository-poll-secs, 15 by default as in Triton', () => {
    expect(parse('--model-control-mode', 'poll')).toEqual({ mode: 'poll', pollSecs: DEFAULT_POLL_SECS });
    expect(parse('--model-control-mode', 'poll', '--repository-poll-secs', '2')).toEqual({ mode: 'poll', pollSecs: 2 });
  });

  it('refuses what does not fit, naming the flag and the value', () => {
    expect(usage('--model-control-mode', 'sometimes')).toBe("--model-control-mode: expected none, explicit, poll or on-demand, got 'sometimes'");
    expect(usage('--load-model', 'a')).toMatch(/^--load-model is used only with --model-control-mode explicit \(the mode is none/);
    expect(usage('--model-control-mode', 'poll', '--load-model', 'a')).toMatch(/^--load-model is used only with --model-control-mode explicit/);
    expect(usage('--repository-poll-secs', '5')).toMatch(/^--repository-poll-secs is used only with --model-control-mode poll/);
    expect(usage('--model-control-mode', 'poll', '--repository-poll-secs', '0')).toBe("--repository-poll-secs: expected an integer from 1 to 86400, got '0'");
    expect(usage('--model-control-mode', 'poll', '--repository-poll-secs', '1.5')).toMatch(/got '1.5'/);
    expect(usage('--model-control-mode', 'explicit', '--load-model', '')).toBe("--load-model: expected a model name or '*', got ''");
  });

  it('on-demand loads nothing at start and takes --model-memory-budget (default: set at start from the host)', () => {
    const control = parse('--model-control-mode', 'on-demand');
    expect(control).toEqual({ mode: 'on-demand', budget: undefined });
    expect(loadsAtStart(control, 'a')).toBe(false);
    expect(parse('--model-control-mode', 'on-demand', '--model-memory-budget', '4GiB')).toEqual({ mode: 'on-demand', budget: { unit: 'bytes', limit: 4 * 2 ** 30 } });
    expect(parse('--model-control-mode', 'on-demand', '--model-memory-budget', '100models')).toEqual({ mode: 'on-demand', budget: { unit: 'models', limit: 100 } });
  });

  it('refuses a bare budget, and a budget outside on-demand', () => {
    expect(usage('--model-control-mode', 'on-demand', '--model-memory-budget', '100')).toMatch(/^--model-memory-budget: expected a size with a unit .*a bare number has no unit/);
    expect(usage('--model-memory-budget', '4GiB')).toBe('--model-memory-budget is used only with --model-control-mode on-demand (the mode is none)');
  });
});
