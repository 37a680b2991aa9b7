import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { MAX_EXECUTIONS_AHEAD_PER_INSTANCE } from '../../../core/pipelining.js';
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
      ortThreads: Math.min(64, availableParallelism()),
      inlineRunUs: 300,
      registry: undefined,
      queuedPerInstance: MAX_EXECUTIONS_AHEAD_PER_INSTANCE,
      localGateways: 1,
      tls: undefined,
      tlsPollSecs: 10,
      trace: undefined,
    });
  });

  it('takes --trace-config as fabriek serve does, and refuses a bad one', () => {
    const args = parseWorkerArgs(['--listen', 'x:1', '--trace-config', 'mode=opentelemetry', '--trace-config', 'opentelemetry,url=http://c:4318/v1/traces']);
    expect(args.trace?.url).toBe('http://c:4318/v1/traces');
    expect(() => parseWorkerArgs(['--listen', 'x:1', '--trace-config', 'mode=zipkin'])).toThrow(/--trace-config: mode 'zipkin'/);
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
      '--inline-run-us=0',
      '--tls-poll-secs',
      '0',
    ]);
    expect(args).toEqual({
      listen: '127.0.0.1:0',
      device: { kind: 'gpu', deviceId: 3 },
      workerId: 'w1',
      logLevel: 'debug',
      maxMessageBytes: 1048576,
      shutdownTimeoutMs: 500,
      cores: 4,
      ortThreads: 4,
      inlineRunUs: 0,
      registry: undefined,
      queuedPerInstance: MAX_EXECUTIONS_AHEAD_PER_INSTANCE,
      localGateways: 1,
      tls: undefined,
      tlsPollSecs: 0,
    });
    expect(parseWorkerArgs(['--listen', 'x:1', '--device', 'gpu']).device).toEqual({ kind: 'gpu', deviceId: 0 });
  });

  it('sizes the ORT thread pool to the device: the cores on CPU, at most 4 on a GPU, or --ort-threads', () => {
    expect(parseWorkerArgs(['--listen', 'x:1', '--cores', '16']).ortThreads).toBe(16);
    expect(parseWorkerArgs(['--listen', 'x:1', '--cores', '16', '--device', 'gpu:0']).ortThreads).toBe(4);
    expect(parseWorkerArgs(['--listen', 'x:1', '--cores', '1', '--device', 'gpu:0']).ortThreads).toBe(1);
    expect(parseWorkerArgs(['--listen', 'x:1', '--cores', '128']).ortThreads).toBe(64);
    expect(parseWorkerArgs(['--listen', 'x:1', '--ort-threads', '3']).ortThreads).toBe(3);
    expect(() => parseWorkerArgs(['--listen', 'x:1', '--ort-threads', '65'])).toThrow('--ort-threads "65" is not an integer in 1..64');
  });

  it('takes --inline-run-us from 0 (never) up', () => {
    expect(parseWorkerArgs(['--listen', 'x:1', '--inline-run-us', '200']).inlineRunUs).toBe(200);
    expect(() => parseWorkerArgs(['--listen', 'x:1', '--inline-run-us', '-1'])).toThrow('--inline-run-us "-1" is not an integer in 0..1000000');
    expect(() => parseWorkerArgs(['--listen', 'x:1', '--inline-run-us', 'fast'])).toThrow('--inline-run-us "fast" is not an integer in 0..1000000');
  });

  it('says what is wrong', () => {
    expect(() => parseWorkerArgs([])).toThrow('--listen is required');
    expect(() => parseWorkerArgs(['--listen'])).toThrow('--listen needs a value');
    expect(() => parseWorkerArgs(['--listen', 'x:1', '--port', '1'])).toThrow('unknown argument "--port"');
    expect(() => parseWorkerArgs(['--listen', 'x:1', '--device', 'tpu'])).toThrow('--device "tpu" is not cpu, gpu or gpu:N');
    expect(() => parseWorkerArgs(['--listen', 'x:1', '--max-message-bytes', '0'])).toThrow(/not an integer in 1\.\./);
  });

  it('standalone: --registry needs --model-repository, listens on 0.0.0.0:8010 and queues deeper', () => {
    const args = parseWorkerArgs(['--registry', 'redis://r:6379', '--model-repository', '/m', '--gpu', '2'], 7, 'node3');
    expect(args).toMatchObject({
      listen: '0.0.0.0:8010',
      device: { kind: 'gpu', deviceId: 2 },
      workerId: 'node3-7',
      queuedPerInstance: 16,
      localGateways: 1,
      registry: { url: 'redis://r:6379', namespace: 'fabriek', modelRepository: '/m', advertiseAddress: undefined, ttlMs: 10_000, drainGraceMs: 2_000 },
    });
    const tuned = parseWorkerArgs([
      '--registry=redis://r:1/2',
      '--model-repository=/m',
      '--advertise-address',
      'gpu07.hpc:8011',
      '--registry-ttl-secs',
      '1.5',
      '--drain-grace-secs',
      '0',
      '--registry-namespace',
      'prod',
    ]);
    expect(tuned.registry).toMatchObject({ advertiseAddress: 'gpu07.hpc:8011', ttlMs: 1500, drainGraceMs: 0, namespace: 'prod' });
  });

  it('standalone: says what is wrong', () => {
    expect(() => parseWorkerArgs(['--registry', 'redis://r:1'])).toThrow('--registry needs --model-repository');
    expect(() => parseWorkerArgs(['--registry', 'http://r:1', '--model-repository', '/m'])).toThrow("--registry: expected a redis://, rediss://, redis-sentinel:// or redis-cluster:// URL, got 'http://r:1'");
    expect(() => parseWorkerArgs(['--listen', 'x:1', '--model-repository', '/m'])).toThrow('--model-repository needs --registry');
    expect(() => parseWorkerArgs(['--registry', 'redis://r:1', '--model-repository', '/m', '--listen', 'unix:/s'])).toThrow(
      '--listen must be HOST:PORT with --registry',
    );
    expect(() => parseWorkerArgs(['--registry', 'redis://r:1', '--model-repository', '/m', '--advertise-address', 'nohost'])).toThrow(
      '--advertise-address "nohost" is not HOST:PORT',
    );
    expect(() => parseWorkerArgs(['--registry', 'redis://r:1', '--model-repository', '/m', '--registry-ttl-secs', '0'])).toThrow(
      '--registry-ttl-secs "0"',
    );
    expect(() => parseWorkerArgs(['--listen', 'x:1', '--gpu', '1', '--device', 'cpu'])).toThrow('give --gpu or --device, not both');
    expect(() => parseWorkerArgs(['--listen', 'x:1', '--worker-tls-cert', 'c.pem'])).toThrow('missing --worker-tls-key, --worker-tls-ca');
  });
});
