import { describe, expect, it } from 'vitest';
import { parseServeOptions } from '../../../gateway/options.js';

// `fabriek serve --registry URL` with no --model-repository: the gateway
// serves what the registered workers loaded, so nothing that needs a
// repository of its own may be asked for.

describe('serve without --model-repository', () => {
  it('is refused without a registry, saying what to give', () => {
    expect(() => parseServeOptions([])).toThrow('--model-repository is required (or --registry: serve the models the registered workers loaded)');
    expect(() => parseServeOptions(['--model-repository', ''])).toThrow('--model-repository: expected a directory');
  });

  it('with --registry: no repository and no local workers', () => {
    const options = parseServeOptions(['--registry', 'redis://127.0.0.1:6379']);
    expect(options.modelRepository).toBeUndefined();
    expect(options.workers).toBe(0);
    expect(parseServeOptions(['--registry', 'redis://r:1', '--workers', '0']).workers).toBe(0);
  });

  it('refuses local workers and control modes, which load from a repository', () => {
    expect(() => parseServeOptions(['--registry', 'redis://r:1', '--workers', '2'])).toThrow('--workers needs --model-repository');
    for (const mode of ['explicit', 'poll', 'on-demand']) {
      expect(() => parseServeOptions(['--registry', 'redis://r:1', '--model-control-mode', mode])).toThrow(`--model-control-mode ${mode} needs --model-repository`);
    }
    expect(parseServeOptions(['--registry', 'redis://r:1', '--model-control-mode', 'none']).modelControl.mode).toBe('none');
  });

  it('keeps the repository when given, with or without a registry', () => {
    expect(parseServeOptions(['--model-repository', 'm']).modelRepository).toBe('m');
    expect(parseServeOptions(['--model-repository', 'm', '--registry', 'redis://r:1']).workers).toBeUndefined();
  });
});
