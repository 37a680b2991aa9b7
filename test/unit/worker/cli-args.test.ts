import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { parseWorkerArgs } from '../../../worker/cli-args.js';

describe('parseWorkerArgs', () => {
  it('fills in defaults', () => {
    expect(parseWorkerArgs(['--listen', 'unix:/tmp/w.sock'], 42)).toEqual({
      listen: 'unix:/tmp/w.sock',
      device: { kind: 'cpu' },
      workerId: 'worker-42',
      logLevel: 'info',
      maxMessageBytes: 1024 ** 3,
      shutdownTimeoutMs: 30_000,
      cores: availableParallelism(),
    });
  });

  it('parses every flag, with = or a separate value', () => {
    const args = parseWorkerArgs([
      '--listen=127.0.0.1:0',
      '--device',
      'gpu:3',
      '--worker-id=w1',
      '--log-level',
      'debug',
      '--max-message-bytes',
      '1048576',
      '--shutdown-timeout-ms=500',
      '--cores',
      '4',
    ]);
    expect(args).toEqual({
      listen: '127.0.0.1:0',
      device: { kind: 'gpu', deviceId: 3 },
      workerId: 'w1',
      logLevel: 'debug',
      maxMessageBytes: 1048576,
      shutdownTimeoutMs: 500,
      cores: 4,
    });
    expect(parseWorkerArgs(['--listen', 'x:1', '--device', 'gpu']).device).toEqual({ kind: 'gpu', deviceId: 0 });
  });

  it('says what is wrong', () => {
    expect(() => parseWorkerArgs([])).toThrow('--listen is required');
    expect(() => parseWorkerArgs(['--listen'])).toThrow('--listen needs a value');
    expect(() => parseWorkerArgs(['--listen', 'x:1', '--port', '1'])).toThrow('unknown argument "--port"');
    expect(() => parseWorkerArgs(['--listen', 'x:1', '--device', 'tpu'])).toThrow('--device "tpu" is not cpu, gpu or gpu:N');
    expect(() => parseWorkerArgs(['--listen', 'x:1', '--max-message-bytes', '0'])).toThrow(/not an integer in 1\.\./);
  });
});
