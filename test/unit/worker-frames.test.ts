import { createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeError, encodeError, encodeFrame, ERROR, FrameError, FrameReader, HEADER_BYTES, Method, RESPONSE } from '../../core/worker-frames.js';
import { WorkerConnection, WorkerLostError } from '../../gateway/scheduling/worker-connection.js';
import { StatusResponse } from '../../proto/gen/worker.js';

const frameBytes = (kind: number, id: number, payload: Uint8Array): Buffer => Buffer.concat(encodeFrame(kind, id, payload));

describe('FrameReader', () => {
  it('reads frames whole, split at any byte, and several in one chunk', () => {
    const a = frameBytes(Method.Execute, 7, Buffer.from('hello'));
    const b = frameBytes(RESPONSE | Method.Status, 8, Buffer.alloc(0));
    const c = frameBytes(ERROR, 9, encodeError(5, 'nope'));
    const all = Buffer.concat([a, b, c]);
    for (let cut = 1; cut < all.length; cut++) {
      const reader = new FrameReader(1024);
      const frames = [...reader.push(all.subarray(0, cut)), ...reader.push(all.subarray(cut))];
      expect(frames.map((f) => [f.kind, f.callId, Buffer.from(f.payload).toString('hex')])).toEqual([
        [Method.Execute, 7, Buffer.from('hello').toString('hex')],
        [RESPONSE | Method.Status, 8, ''],
        [ERROR, 9, Buffer.from(encodeError(5, 'nope')).toString('hex')],
      ]);
    }
    expect(decodeError(encodeError(status.NOT_FOUND, 'model "x" is not loaded'))).toEqual({ code: status.NOT_FOUND, message: 'model "x" is not loaded' });
  });

  it('refuses a frame over the limit before buffering it', () => {
    const reader = new FrameReader(10);
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt32LE(11, 0);
    expect(() => reader.push(header)).toThrow(FrameError);
    expect(() => decodeError(Buffer.alloc(2))).toThrow('error frame shorter than its status code');
  });
});

describe('WorkerConnection over a socket', () => {
  let server: Server | undefined;
  let dir: string | undefined;
  afterEach(() => {
    server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A fake worker on a unix socket that lets the test decide what to do with each frame. */
  const fakeWorker = async (onFrame: (socket: Socket, kind: number, id: number) => void): Promise<string> => {
    dir = mkdtempSync(join(tmpdir(), 'fabriek-frames-'));
    const path = join(dir, 'w.sock');
    server = createServer((socket) => {
      const reader = new FrameReader(1 << 20);
      socket.on('data', (chunk: Buffer) => {
        for (const f of reader.push(chunk)) onFrame(socket, f.kind, f.callId);
      });
    });
    await new Promise<void>((r) => server?.listen(path, r));
    return `unix:${path}`;
  };
  const endpoint = (address: string) => ({ id: 'w', address, deviceKind: 'cpu' as const, deviceId: 0 });

  it('matches answers to calls by id, in any order', async () => {
    const held: Array<[Socket, number]> = [];
    const address = await fakeWorker((socket, _kind, id) => {
      held.push([socket, id]);
      if (held.length < 2) return;
      for (const [s, i] of held.reverse()) s.write(frameBytes(RESPONSE | Method.Status, i, StatusResponse.encode({ workerId: `answer-${i}`, deviceKind: 'cpu', deviceId: 0, models: [] }).finish()));
    });
    const conn = new WorkerConnection(endpoint(address), { maxMessageBytes: 1 << 20 });
    const [a, b] = await Promise.all([conn.status(), conn.status()]);
    expect([a.workerId, b.workerId]).toEqual(['answer-1', 'answer-2']);
    conn.close();
  });

  it('keeps a worker error code; UNAVAILABLE (draining) and a closed socket are WorkerLostError; deadlines fire', async () => {
    let calls = 0;
    const address = await fakeWorker((socket, _kind, id) => {
      calls++;
      if (calls === 1) socket.write(frameBytes(ERROR, id, encodeError(status.NOT_FOUND, 'model "m/1" is not loaded on this worker')));
      else if (calls === 2) socket.write(frameBytes(ERROR, id, encodeError(status.UNAVAILABLE, 'worker w is draining')));
      else if (calls === 3) socket.destroy();
      // call 4: never answered
    });
    const conn = new WorkerConnection(endpoint(address), { maxMessageBytes: 1 << 20 });
    await expect(conn.status()).rejects.toMatchObject({ code: status.NOT_FOUND, message: 'model "m/1" is not loaded on this worker' });
    const draining = await conn.status().catch((e: unknown) => e);
    expect(draining).toBeInstanceOf(WorkerLostError);
    const closed = await conn.status().catch((e: unknown) => e);
    expect(closed).toBeInstanceOf(WorkerLostError);
    expect((closed as Error).message).toBe('worker w connection closed before it answered');
    // It reconnects for the next call.
    await expect(conn.status(50)).rejects.toMatchObject({ code: status.DEADLINE_EXCEEDED });
    conn.close();
  });

  it('a worker that is not there is WorkerLostError with the address', async () => {
    const conn = new WorkerConnection(endpoint('unix:/nonexistent/fabriek.sock'), { maxMessageBytes: 1 << 20 });
    const error = await conn.status().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkerLostError);
    expect((error as Error).message).toMatch(/^worker w at unix:\/nonexistent\/fabriek\.sock is unreachable: /);
  });
});
