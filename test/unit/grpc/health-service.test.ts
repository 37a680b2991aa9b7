import { EventEmitter } from 'node:events';
import { type sendUnaryData, type ServerUnaryCall, type ServerWritableStream, type ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { service as reference } from 'grpc-health-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  healthServiceDefinition as ours,
  LIVENESS_NAME,
  READINESS_NAMES,
  ServerHealth,
  ServingStatus,
  WATCH_INTERVAL_MS,
} from '../../../gateway/grpc/health-service.js';
import { type HealthCheckRequest, type HealthCheckResponse, type HealthListRequest, type HealthListResponse } from '../../../proto/gen/health.js';

// grpc-health-check's definitions (protobufjs over the published health.proto) are the reference for the wire.
const method = (name: 'Check' | 'List') => {
  const m = reference[name];
  if (m === undefined) throw new Error(`grpc-health-check has no ${name}`);
  return m;
};

/** A status by its name, as the reference (enums: String) and the assertions say it. */
const named = (status: ServingStatus): string => ServingStatus[status];

describe('health messages (ts-proto, from proto/health.proto) against grpc-health-check', () => {
  it('the same HealthCheckRequest both ways', () => {
    for (const service of ['', 'inference.GRPCInferenceService', 'ünïcode/1']) {
      expect(ours.check.requestDeserialize(method('Check').requestSerialize({ service }))).toEqual({ service });
      expect(method('Check').requestDeserialize(ours.check.requestSerialize({ service }))).toMatchObject({ service });
    }
  });

  it('each status both ways, on Check and on Watch', () => {
    for (const status of [ServingStatus.UNKNOWN, ServingStatus.SERVING, ServingStatus.NOT_SERVING, ServingStatus.SERVICE_UNKNOWN]) {
      expect(method('Check').responseDeserialize(ours.check.responseSerialize({ status }))).toMatchObject({ status: named(status) });
      expect(method('Check').responseDeserialize(ours.watch.responseSerialize({ status }))).toMatchObject({ status: named(status) });
      expect(ours.check.responseDeserialize(method('Check').responseSerialize({ status: named(status) }))).toEqual({ status });
    }
  });

  it('the List map both ways', () => {
    const statuses = { '': { status: ServingStatus.SERVING }, 'inference.GRPCInferenceService': { status: ServingStatus.NOT_SERVING } };
    expect(method('List').responseDeserialize(ours.list.responseSerialize({ statuses }))).toMatchObject({
      statuses: { '': { status: 'SERVING' }, 'inference.GRPCInferenceService': { status: 'NOT_SERVING' } },
    });
    expect(ours.list.responseDeserialize(method('List').responseSerialize({ statuses: { a: { status: 'SERVING' } } }))).toEqual({ statuses: { a: { status: ServingStatus.SERVING } } });
  });
});

/** A Watch call: records what it was written and whether it ended; the client cancels with cancel(). */
class FakeWatch extends EventEmitter {
  /** The statuses written, by name. */
  readonly written: string[] = [];
  ended = false;
  constructor(readonly request: HealthCheckRequest) {
    super();
  }
  write(response: HealthCheckResponse): boolean {
    this.written.push(named(response.status));
    return true;
  }
  end(): void {
    this.ended = true;
  }
  cancel(): void {
    this.emit('cancelled');
  }
}

const watchCall = (w: FakeWatch): ServerWritableStream<HealthCheckRequest, HealthCheckResponse> => w as unknown as ServerWritableStream<HealthCheckRequest, HealthCheckResponse>;

/** Check's answer, by name. */
function check(health: ServerHealth, service: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const callback: sendUnaryData<HealthCheckResponse> = (error, value) => (error ? reject(error as ServiceError) : resolve(named((value as HealthCheckResponse).status)));
    health.handlers.check({ request: { service } } as ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, callback);
  });
}

describe('ServerHealth', () => {
  let ready = true;
  let health: ServerHealth;

  beforeEach(() => {
    vi.useFakeTimers();
    ready = true;
    health = new ServerHealth(() => ready);
  });
  afterEach(() => {
    health.endAll();
    vi.useRealTimers();
  });

  it('Check: SERVING or NOT_SERVING by readiness, for the server, the inference service and readiness alike; liveness SERVING either way', async () => {
    expect(READINESS_NAMES).toEqual(['', 'inference.GRPCInferenceService', 'readiness']);
    for (const name of READINESS_NAMES) expect(await check(health, name)).toBe('SERVING');
    expect(await check(health, LIVENESS_NAME)).toBe('SERVING');
    ready = false;
    for (const name of READINESS_NAMES) expect(await check(health, name)).toBe('NOT_SERVING');
    expect(await check(health, 'liveness')).toBe('SERVING');
  });

  it('Check: NOT_FOUND for any other name, saying which names it answers for, and bounded however long the name', async () => {
    const error = (await check(health, 'mlp').catch((e: unknown) => e)) as ServiceError;
    expect(error.code).toBe(GrpcStatus.NOT_FOUND);
    expect(error.details).toBe(
      "unknown service 'mlp': the health service answers for '', 'inference.GRPCInferenceService' and 'readiness' (ServerReady) and 'liveness' (ServerLive); a model's readiness is ModelReady",
    );
    const long = (await check(health, 'x'.repeat(100_000)).catch((e: unknown) => e)) as ServiceError;
    expect(long.code).toBe(GrpcStatus.NOT_FOUND);
    expect(Buffer.byteLength(long.details)).toBeLessThanOrEqual(1024);
  });

  it('List: every name with its status now', async () => {
    ready = false;
    const listed = await new Promise<HealthListResponse>((resolve) =>
      health.handlers.list({ request: {} } as ServerUnaryCall<HealthListRequest, HealthListResponse>, (_e, v) => resolve(v as HealthListResponse)),
    );
    expect(Object.entries(listed.statuses).map(([name, r]) => [name, named(r.status)])).toEqual([
      ['', 'NOT_SERVING'],
      ['inference.GRPCInferenceService', 'NOT_SERVING'],
      ['readiness', 'NOT_SERVING'],
      ['liveness', 'SERVING'],
    ]);
  });

  it('Watch: the status at once, then each change within WATCH_INTERVAL_MS, never the same twice', () => {
    const w = new FakeWatch({ service: '' });
    health.handlers.watch(watchCall(w));
    expect(w.written).toEqual(['SERVING']);
    vi.advanceTimersByTime(3 * WATCH_INTERVAL_MS);
    expect(w.written).toEqual(['SERVING']);
    ready = false;
    vi.advanceTimersByTime(WATCH_INTERVAL_MS);
    expect(w.written).toEqual(['SERVING', 'NOT_SERVING']);
    ready = true;
    vi.advanceTimersByTime(WATCH_INTERVAL_MS);
    expect(w.written).toEqual(['SERVING', 'NOT_SERVING', 'SERVING']);
  });

  it('refresh tells every watcher of a change at once (a drain starting), looking at readiness once', () => {
    let looked = 0;
    health = new ServerHealth(() => {
      looked += 1;
      return ready;
    });
    const a = new FakeWatch({ service: '' });
    const b = new FakeWatch({ service: 'inference.GRPCInferenceService' });
    const live = new FakeWatch({ service: 'liveness' });
    for (const w of [a, b, live]) health.handlers.watch(watchCall(w));
    ready = false;
    looked = 0;
    health.refresh();
    expect(looked).toBe(1);
    expect(a.written).toEqual(['SERVING', 'NOT_SERVING']);
    expect(b.written).toEqual(['SERVING', 'NOT_SERVING']);
    expect(live.written).toEqual(['SERVING']);
  });

  it('Watch of an unknown name: SERVICE_UNKNOWN, the stream kept open and never written again', () => {
    const w = new FakeWatch({ service: 'mlp' });
    health.handlers.watch(watchCall(w));
    ready = false;
    health.refresh();
    vi.advanceTimersByTime(2 * WATCH_INTERVAL_MS);
    expect(w.written).toEqual(['SERVICE_UNKNOWN']);
    expect(w.ended).toBe(false);
    expect(health.watchers).toBe(1);
  });

  it('a watcher that cancels is forgotten, and with none left no timer runs', () => {
    const w = new FakeWatch({ service: '' });
    health.handlers.watch(watchCall(w));
    expect(vi.getTimerCount()).toBe(1);
    w.cancel();
    expect(health.watchers).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    ready = false;
    health.refresh();
    expect(w.written).toEqual(['SERVING']);
  });

  it('endAll ends every stream, known names and unknown, and stops the timer', () => {
    const known = new FakeWatch({ service: '' });
    const unknown = new FakeWatch({ service: 'nope' });
    health.handlers.watch(watchCall(known));
    health.handlers.watch(watchCall(unknown));
    health.endAll();
    expect([known.ended, unknown.ended]).toEqual([true, true]);
    expect(health.watchers).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('after endAll, a Watch that still arrives gets its status and its end at once (nothing holds the shutdown)', () => {
    health.endAll();
    ready = false;
    const known = new FakeWatch({ service: '' });
    const unknown = new FakeWatch({ service: 'nope' });
    health.handlers.watch(watchCall(known));
    health.handlers.watch(watchCall(unknown));
    expect([known.written, unknown.written]).toEqual([['NOT_SERVING'], ['SERVICE_UNKNOWN']]);
    expect([known.ended, unknown.ended]).toEqual([true, true]);
    expect(health.watchers).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});
