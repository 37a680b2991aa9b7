import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { parseServeOptions, UsageError } from '../../gateway/options.js';
import { encodeExecuteResponse } from '../../core/execute-frame.js';
import { encodeFrame, FrameReader, Method, PING_CALL_ID, RESPONSE } from '../../core/worker-frames.js';
import { WorkerConnection, WorkerLostError } from '../../gateway/scheduling/worker-connection.js';
import { Liveness, pingIntervalFor } from '../../gateway/scheduling/worker-liveness.js';
import { StatusResponse } from '../../proto/gen/worker.js';
import { FrameServer } from '../../worker/frame-server.js';

// The gateway's liveness check of worker sockets: the pure timing rule with a
// fake clock, then WorkerConnection against fake and real (FrameServer) workers.

describe('Liveness (fake clock)', () => {
  const setup = (timeoutMs = 3_000, intervalMs = 1_000) => {
    let now = 0;
    const pings: number[] = [];
    const timeouts: number[] = [];
    const liveness = new Liveness(
      { timeoutMs, intervalMs, now: () => now },
      () => pings.push(now),
      (silent) => timeouts.push(silent),
    );
    return { liveness, pings, timeouts, at: (t: number) => (now = t), tick: (t: number) => ((now = t), liveness.tick()) };
  };

  it('pings only after an interval of silence, and gives up after the timeout', () => {
    const { liveness, pings, timeouts, tick, at } = setup();
    at(500);
    liveness.heard();
    tick(1_000); // heard 500 ms ago: no ping needed
    expect(pings).toEqual([]);
    tick(2_000);
    tick(3_000);
    expect(pings).toEqual([2_000, 3_000]);
    expect(timeouts).toEqual([]);
    tick(3_500);
    expect(timeouts).toEqual([3_000]);
    tick(4_000); // stopped after giving up: nothing more
    expect(timeouts).toHaveLength(1);
  });

  it('any frame resets the silence, so a worker answering pings never times out', () => {
    const { liveness, timeouts, tick, at } = setup();
    for (let t = 1_000; t <= 60_000; t += 1_000) {
      tick(t);
      at(t + 50);
      liveness.heard(); // the pong
    }
    expect(timeouts).toEqual([]);
  });

  it('a stalled gateway loop (a late tick) judges nothing on that tick', () => {
    const { liveness, timeouts, pings, tick } = setup();
    liveness.tick();
    tick(1_000);
    tick(9_000); // 8 s late: the pong may be waiting to be read
    expect(timeouts).toEqual([]);
    expect(pings).toContain(9_000);
    tick(10_000);
    expect(timeouts).toEqual([]);
    // Still nothing: the silence counts from one interval before the late tick.
    tick(11_000);
    expect(timeouts).toEqual([3_000]);
  });

  it('interval: a third of the timeout, at most 1 s', () => {
    expect(pingIntervalFor(3_000)).toBe(1_000);
    expect(pingIntervalFor(30_000)).toBe(1_000);
    expect(pingIntervalFor(300)).toBe(100);
  });
});

describe('--worker-ping-timeout-ms', () => {
  const parse = (...args: string[]) => parseServeOptions(['--model-repository', '/models', ...args]);
  it('defaults to 3 s; 0 turns the check off; 1–99 and non-integers are refused', () => {
    expect(parse().workerPingTimeoutMs).toBe(3_000);
    expect(parse('--worker-ping-timeout-ms', '0').workerPingTimeoutMs).toBe(0);
    expect(parse('--worker-ping-timeout-ms', '1500').workerPingTimeoutMs).toBe(1_500);
    for (const bad of ['50', '-1', '1.5', 'soon', '600001']) {
      expect(() => parse('--worker-ping-timeout-ms', bad)).toThrow(UsageError);
    }
    expect(() => parse('--worker-ping-timeout-ms', '50')).toThrow("--worker-ping-timeout-ms: expected 0 (off) or 100 to 600000, got '50'");
  });
});

describe('WorkerConnection liveness over a socket', () => {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  const socketPath = (): string => {
    const dir = mkdtempSync(join(tmpdir(), 'fabriek-liveness-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    return join(dir, 'w.sock');
  };
  const endpoint = (address: string) => ({ id: 'w', address, deviceKind: 'cpu' as const, deviceId: 0 });
  const frameBytes = (kind: number, id: number, payload: Uint8Array): Buffer => Buffer.concat(encodeFrame(kind, id, payload));

  /** A fake worker: answers PING while `alive()`, hands other frames to `onCall`. */
  const fakeWorker = async (alive: () => boolean, onCall: (socket: Socket, kind: number, id: number) => void = () => {}): Promise<string> => {
    const path = socketPath();
    const server: Server = createServer((socket) => {
      const reader = new FrameReader(1 << 20);
      socket.on('error', () => {});
      socket.on('data', (chunk: Buffer) => {
        for (const f of reader.push(chunk)) {
          if (f.kind === Method.Ping) {
            if (alive()) socket.write(frameBytes(RESPONSE | Method.Ping, f.callId, new Uint8Array(0)));
          } else onCall(socket, f.kind, f.callId);
        }
      });
    });
    await new Promise<void>((r) => server.listen(path, r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    return `unix:${path}`;
  };

  it('a worker that answers pings keeps its socket through a call far longer than the timeout', async () => {
    const address = await fakeWorker(
      () => true,
      (socket, kind, id) => setTimeout(() => socket.write(Buffer.concat(encodeExecuteResponse(RESPONSE | kind, id, { outputs: [], computeInputNs: 0n, computeInferNs: 0n, computeOutputNs: 0n }))), 1_500),
    );
    const conn = new WorkerConnection(endpoint(address), { maxMessageBytes: 1 << 20, pingTimeoutMs: 300 });
    cleanups.push(() => conn.close());
    let unresponsive = 0;
    conn.onUnresponsive(() => unresponsive++);
    const lost: boolean[] = [];
    await conn.execute({ modelKey: 'm/1', inputs: [], outputs: [] }, Date.now() + 10_000, (l) => lost.push(l));
    expect(lost).toEqual([false]);
    expect(unresponsive).toBe(0);
  });

  it('a worker that goes silent: waiting calls fail with WorkerLostError after about the timeout, listeners hear, the next call reconnects', async () => {
    let alive = true;
    const address = await fakeWorker(
      () => alive,
      (socket, kind, id) => {
        if (alive) socket.write(frameBytes(RESPONSE | kind, id, StatusResponse.encode({ workerId: 'w', deviceKind: 'cpu', deviceId: 0, models: [] }).finish()));
      },
    );
    const conn = new WorkerConnection(endpoint(address), { maxMessageBytes: 1 << 20, pingTimeoutMs: 400 });
    cleanups.push(() => conn.close());
    const reasons: string[] = [];
    conn.onUnresponsive((r) => reasons.push(r));
    await conn.status();
    alive = false; // as if SIGSTOPped: the socket stays open, nothing comes back
    const started = Date.now();
    const lost: boolean[] = [];
    const call = conn.execute({ modelKey: 'm/1', inputs: [], outputs: [] }, Date.now() + 20_000, (l) => lost.push(l));
    await expect(call).rejects.toBeInstanceOf(WorkerLostError);
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(5_000); // far below the call's 20 s deadline
    expect(lost).toEqual([true]);
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toMatch(/worker w is unresponsive: nothing received for \d+ ms \(ping timeout 400 ms\)/);
    await expect(call.catch((e: WorkerLostError) => e.code)).resolves.toBe(status.UNAVAILABLE);
    alive = true; // resumed
    expect((await conn.status()).workerId).toBe('w');
  });

  it('a connection that never completes its TLS handshake (a stopped TLS worker) fails after the timeout', async () => {
    const path = socketPath();
    const held: Socket[] = [];
    const server = createServer((s) => held.push(s)); // accepts, then says nothing
    await new Promise<void>((r) => server.listen(path, r));
    cleanups.push(() => new Promise<void>((r) => (held.forEach((s) => s.destroy()), server.close(() => r()))));
    const conn = new WorkerConnection(endpoint(`unix:${path}`), { maxMessageBytes: 1 << 20, pingTimeoutMs: 300, tls: { rejectUnauthorized: false } });
    cleanups.push(() => conn.close());
    const started = Date.now();
    await expect(conn.status(20_000)).rejects.toThrow(/unreachable: no connection within 300 ms/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('a real FrameServer answers pings while its handler is busy, and pings do not count as calls in flight', async () => {
    const path = socketPath();
    let release: (() => void) | undefined;
    const server = new FrameServer({
      handler: () =>
        new Promise<Uint8Array[]>((resolve) => {
          release = () => resolve(encodeExecuteResponse(RESPONSE | Method.Execute, 0, { outputs: [], computeInputNs: 0n, computeInferNs: 0n, computeOutputNs: 0n }));
        }),
      maxMessageBytes: 1 << 20,
      logger: pino({ level: 'silent' }),
    });
    await server.listen(`unix:${path}`);
    const conn = new WorkerConnection(endpoint(`unix:${path}`), { maxMessageBytes: 1 << 20, pingTimeoutMs: 300 });
    let unresponsive = 0;
    conn.onUnresponsive(() => unresponsive++);
    const call = conn.execute({ modelKey: 'm/1', inputs: [], outputs: [] }, Date.now() + 10_000);
    await new Promise((r) => setTimeout(r, 1_500)); // five timeouts: only pongs arrive
    expect(unresponsive).toBe(0);
    release?.();
    await call;
    // Only pings go on now; close() does not wait for them.
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    const closing = server.close(5_000);
    conn.close();
    expect(await closing).toBe(true);
    expect(Date.now() - started).toBeLessThan(2_500);
    expect(PING_CALL_ID).toBe(0);
  });

  it('a real FrameServer says it is alive while a large frame is still arriving (the PING waits behind it)', async () => {
    const path = socketPath();
    const server = new FrameServer({ handler: () => Promise.resolve(encodeFrame(RESPONSE | Method.Status, 0, new Uint8Array(0))), maxMessageBytes: 1 << 20, logger: pino({ level: 'silent' }) });
    await server.listen(`unix:${path}`);
    const socket = await new Promise<Socket>((resolve) => {
      const s: Socket = connect(path, () => resolve(s));
    });
    const reader = new FrameReader(1 << 20);
    const heard: Array<[number, number]> = [];
    socket.on('data', (chunk: Buffer) => reader.push(chunk).forEach((f) => heard.push([f.kind, f.callId])));
    const [header, payload] = encodeFrame(Method.Status, 9, Buffer.alloc(500_000));
    socket.write(header);
    // Slices of a frame that is not complete yet, 150 ms apart: each may say "alive".
    for (let i = 0; i < 3; i++) {
      socket.write(payload.subarray(i * 1000, (i + 1) * 1000));
      await new Promise((r) => setTimeout(r, 150));
    }
    expect(heard.length).toBeGreaterThanOrEqual(2);
    expect(heard.every(([kind, id]) => kind === (RESPONSE | Method.Ping) && id === PING_CALL_ID)).toBe(true);
    socket.write(payload.subarray(3000));
    await new Promise<void>((resolve) => {
      const check = (): void => void (heard.some(([, id]) => id === 9) ? resolve() : setTimeout(check, 10));
      check();
    });
    socket.destroy();
    await server.close(1_000);
  });
});
