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
    expect(usage('--model-control-mode', 'sometimes')).toBe("--model-control-mode: expected none, explicit or poll, got 'sometimes'");
    expect(usage('--load-model', 'a')).toMatch(/^--load-model is used only with --model-control-mode explicit \(the mode is none/);
    expect(usage('--model-control-mode', 'poll', '--load-model', 'a')).toMatch(/^--load-model is used only with --model-control-mode explicit/);
    expect(usage('--repository-poll-secs', '5')).toMatch(/^--repository-poll-secs is used only with --model-control-mode poll/);
    expect(usage('--model-control-mode', 'poll', '--repository-poll-secs', '0')).toBe("--repository-poll-secs: expected an integer from 1 to 86400, got '0'");
    expect(usage('--model-control-mode', 'poll', '--repository-poll-secs', '1.5')).toMatch(/got '1.5'/);
    expect(usage('--model-control-mode', 'explicit', '--load-model', '')).toBe("--load-model: expected a model name or '*', got ''");
  });
});
