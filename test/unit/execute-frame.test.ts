import { describe, expect, it } from 'vitest';
import { decodeExecuteRequest, decodeExecuteResponse, encodeExecuteRequest, encodeExecuteResponse } from '../../core/execute-frame.js';
import { FrameError, FrameReader, Method, RESPONSE } from '../../core/worker-frames.js';
import { type ExecuteRequest } from '../../proto/gen/worker.js';

const request: ExecuteRequest = {
  modelKey: 'mödel/1',
  outputs: ['OUT', 'ÜBER'],
  inputs: [
    { name: 'A', datatype: 'FP32', shape: [2n, 3n], data: Buffer.from(new Float32Array([1, 2, 3, 4, 5, 6]).buffer) },
    { name: 'S', datatype: 'BYTES', shape: [0n], data: Buffer.alloc(0) },
    { name: 'B', datatype: 'UINT8', shape: [9_007_199_254_740_991n], data: Buffer.from([7]) },
  ],
};

/** Frames from `parts` read back in chunks of `step` bytes. */
function readBack(parts: readonly Uint8Array[], step: number, limit = 1 << 20) {
  const bytes = Buffer.concat(parts);
  const reader = new FrameReader(limit);
  const frames = [];
  for (let at = 0; at < bytes.length; at += step) frames.push(...reader.push(bytes.subarray(at, at + step)));
  return frames;
}

describe('Execute frames', () => {
  it('carry a request and an answer through the reader at any chunking, tensor bytes as sent', () => {
    for (const step of [1, 3, 17, 4096]) {
      const [frame] = readBack(encodeExecuteRequest(Method.Execute, 42, request), step);
      expect(frame?.kind).toBe(Method.Execute);
      expect(frame?.callId).toBe(42);
      const decoded = decodeExecuteRequest(frame?.payload ?? new Uint8Array(), frame?.segments ?? []);
      expect(decoded.modelKey).toBe(request.modelKey);
      expect(decoded.outputs).toEqual(request.outputs);
      expect(decoded.inputs.map((t) => [t.name, t.datatype, t.shape, Buffer.from(t.data).toString('hex')])).toEqual(
        request.inputs.map((t) => [t.name, t.datatype, t.shape, t.data.toString('hex')]),
      );
    }
    const response = { outputs: request.inputs, computeInputNs: 12n, computeInferNs: 3_000_000_000n, computeOutputNs: 0n };
    const [answer] = readBack(encodeExecuteResponse(RESPONSE | Method.Execute, 7, response), 5);
    expect(answer?.kind).toBe(RESPONSE | Method.Execute);
    const back = decodeExecuteResponse(answer?.payload ?? new Uint8Array(), answer?.segments ?? []);
    expect([back.computeInputNs, back.computeInferNs, back.computeOutputNs]).toEqual([12n, 3_000_000_000n, 0n]);
    expect(back.outputs.map((t) => Buffer.from(t.data).toString('hex'))).toEqual(request.inputs.map((t) => t.data.toString('hex')));
  });

  it('carry the worker’s load report in an answer only when it sends one, and read answers without it', () => {
    const response = { outputs: request.inputs, computeInputNs: 1n, computeInferNs: 2n, computeOutputNs: 3n };
    const plain = Buffer.concat(encodeExecuteResponse(RESPONSE | Method.Execute, 7, response));
    const reported = Buffer.concat(encodeExecuteResponse(RESPONSE | Method.Execute, 7, { ...response, outstanding: 12 }));
    expect(reported.byteLength - plain.byteLength).toBe(4);
    const [p] = readBack([plain], 3);
    const [r] = readBack([reported], 3);
    expect(decodeExecuteResponse(p?.payload ?? new Uint8Array(), p?.segments ?? []).outstanding).toBeUndefined();
    const back = decodeExecuteResponse(r?.payload ?? new Uint8Array(), r?.segments ?? []);
    expect(back.outstanding).toBe(12);
    expect(back.waitNs).toBeUndefined();
    expect(back.outputs.map((t) => t.name)).toEqual(['A', 'S', 'B']);
  });

  it('carry the wait in the worker for the instance after the load report, never without it', () => {
    const response = { outputs: request.inputs, computeInputNs: 1n, computeInferNs: 2n, computeOutputNs: 3n };
    const reported = Buffer.concat(encodeExecuteResponse(RESPONSE | Method.Execute, 7, { ...response, outstanding: 12 }));
    const waited = Buffer.concat(encodeExecuteResponse(RESPONSE | Method.Execute, 7, { ...response, outstanding: 12, waitNs: 4_500_000 }));
    expect(waited.byteLength - reported.byteLength).toBe(8);
    const [w] = readBack([waited], 3);
    const back = decodeExecuteResponse(w?.payload ?? new Uint8Array(), w?.segments ?? []);
    expect([back.outstanding, back.waitNs]).toEqual([12, 4_500_000]);
    expect(back.outputs.map((t) => t.name)).toEqual(['A', 'S', 'B']);
    expect(() => encodeExecuteResponse(RESPONSE | Method.Execute, 7, { ...response, waitNs: 1 })).toThrow(/only with its load report/);
  });

  it('carry the backlog after the wait, never without it, and read answers from workers that send none', () => {
    const response = { outputs: request.inputs, computeInputNs: 1n, computeInferNs: 2n, computeOutputNs: 3n, outstanding: 12, waitNs: 5 };
    const waited = Buffer.concat(encodeExecuteResponse(RESPONSE | Method.Execute, 7, response));
    const backlogged = Buffer.concat(encodeExecuteResponse(RESPONSE | Method.Execute, 7, { ...response, backlogNs: 31_250_000 }));
    expect(backlogged.byteLength - waited.byteLength).toBe(8);
    const [w] = readBack([waited], 3);
    expect(decodeExecuteResponse(w?.payload ?? new Uint8Array(), w?.segments ?? []).backlogNs).toBeUndefined();
    const [b] = readBack([backlogged], 3);
    const back = decodeExecuteResponse(b?.payload ?? new Uint8Array(), b?.segments ?? []);
    expect([back.outstanding, back.waitNs, back.backlogNs]).toEqual([12, 5, 31_250_000]);
    // A worker that has not timed a run sends none: the answer is the wait's.
    expect(Buffer.concat(encodeExecuteResponse(RESPONSE | Method.Execute, 7, { ...response, backlogNs: undefined })).equals(waited)).toBe(true);
    const { waitNs: _wait, ...noWait } = response;
    expect(() => encodeExecuteResponse(RESPONSE | Method.Execute, 7, { ...noWait, backlogNs: 1 })).toThrow(/backlog only with its wait/);
  });

  it('skip fields a later worker adds after the backlog, and reject a wait or a backlog cut short or out of range', () => {
    const response = { outputs: request.inputs, computeInputNs: 1n, computeInferNs: 2n, computeOutputNs: 3n, outstanding: 2, waitNs: 5, backlogNs: 7 };
    const [a] = readBack(encodeExecuteResponse(RESPONSE | Method.Execute, 7, response), 3);
    const head = a?.payload ?? new Uint8Array();
    const longer = Buffer.concat([head, Buffer.alloc(12, 9)]);
    const back = decodeExecuteResponse(longer, a?.segments ?? []);
    expect([back.outstanding, back.waitNs, back.backlogNs]).toEqual([2, 5, 7]);
    // Cut inside the backlog, and inside the wait.
    expect(() => decodeExecuteResponse(head.subarray(0, head.byteLength - 3), a?.segments ?? [])).toThrow(FrameError);
    expect(() => decodeExecuteResponse(head.subarray(0, head.byteLength - 11), a?.segments ?? [])).toThrow(FrameError);
    for (const bad of [Number.NaN, -1, Infinity]) {
      const [b] = readBack(encodeExecuteResponse(RESPONSE | Method.Execute, 7, { ...response, waitNs: bad }), 3);
      expect(() => decodeExecuteResponse(b?.payload ?? new Uint8Array(), b?.segments ?? [])).toThrow(/wait of .* \(expected a finite number/);
      const [c] = readBack(encodeExecuteResponse(RESPONSE | Method.Execute, 7, { ...response, backlogNs: bad }), 3);
      expect(() => decodeExecuteResponse(c?.payload ?? new Uint8Array(), c?.segments ?? [])).toThrow(/backlog of .* \(expected a finite number/);
    }
  });

  it('writes tensor bytes as they are (no copy) and gives a tensor spread over chunks a whole buffer of its own', () => {
    const big = Buffer.alloc(100_000, 3);
    const parts = encodeExecuteRequest(Method.Execute, 1, { modelKey: 'm', outputs: [], inputs: [{ name: 'x', datatype: 'UINT8', shape: [100_000n], data: big }] });
    expect(parts[1]).toBe(big);
    const [frame] = readBack(parts, 65_536);
    const data = frame?.segments[0];
    expect(data?.byteOffset).toBe(0);
    expect(data?.byteLength).toBe(data?.buffer.byteLength);
    expect(Buffer.from(data ?? []).equals(big)).toBe(true);
  });

  it("writes a batch's input from its members' parts, as they are, and reads it back as one segment", () => {
    const members = [Buffer.alloc(70_000, 1), Buffer.alloc(5, 2), Buffer.alloc(0), Buffer.alloc(40_000, 3)];
    const single = Buffer.from([9, 9]);
    const inputs = [
      { name: 'x', datatype: 'UINT8', shape: [110_005n], data: members },
      { name: 'y', datatype: 'UINT8', shape: [2n], data: single },
    ];
    const parts = encodeExecuteRequest(Method.Execute, 1, { modelKey: 'm', outputs: [], inputs });
    expect(parts.slice(1)).toEqual([...members, single]);
    members.forEach((m, i) => expect(parts[1 + i]).toBe(m));
    for (const step of [7, 4096, 1 << 20]) {
      const [frame] = readBack(parts, step);
      const back = decodeExecuteRequest(frame?.payload ?? new Uint8Array(), frame?.segments ?? []);
      expect(back.inputs.map((t) => [t.name, t.data.byteLength])).toEqual([
        ['x', 110_005],
        ['y', 2],
      ]);
      expect(Buffer.from(back.inputs[0]?.data ?? []).equals(Buffer.concat(members))).toBe(true);
      expect(Array.from(back.inputs[1]?.data ?? [])).toEqual([9, 9]);
    }
  });

  it('refuses segment tables that lie, before buffering', () => {
    const prefix = (count: number, lengths: number[], total: number): Buffer => {
      const b = Buffer.alloc(9 + 4 + 4 * lengths.length);
      b.writeUInt32LE(total, 0);
      b.writeUInt8(Method.Execute | 0x40, 4);
      b.writeUInt32LE(1, 5);
      b.writeUInt32LE(count, 9);
      lengths.forEach((l, i) => b.writeUInt32LE(l, 13 + 4 * i));
      return b;
    };
    expect(() => new FrameReader(1 << 20).push(prefix(0, [], 4))).toThrow(/says it has 0 segments/);
    expect(() => new FrameReader(1 << 20).push(prefix(1000, [], 8))).toThrow(/says it has 1000 segments/);
    // Lengths that add up to more than the frame: refused as soon as the table is in.
    expect(() => new FrameReader(1 << 20).push(prefix(2, [10, 1 << 30], 4 + 8 + 10))).toThrow(FrameError);
    expect(() => new FrameReader(100).push(prefix(2, [10, 10], 1 << 30))).toThrow(/over the 100-byte message limit/);
  });

  it('refuses heads that do not match their segments', () => {
    const [frame] = readBack(encodeExecuteRequest(Method.Execute, 1, request), 1 << 16);
    expect(() => decodeExecuteRequest(frame?.payload ?? new Uint8Array(), [])).toThrow(/3 inputs but 0 data segments/);
    expect(() => decodeExecuteRequest((frame?.payload ?? new Uint8Array()).subarray(0, 10), frame?.segments ?? [])).toThrow(FrameError);
    expect(() => decodeExecuteRequest(Buffer.from([255, 255, 255, 255]), [])).toThrow(FrameError);
  });

  it('refuses a negative dimension', () => {
    const negative = { ...request, inputs: [{ name: 'A', datatype: 'FP32', shape: [-1n, 3n], data: Buffer.alloc(0) }] };
    const [frame] = readBack(encodeExecuteRequest(Method.Execute, 1, negative), 1 << 16);
    expect(() => decodeExecuteRequest(frame?.payload ?? new Uint8Array(), frame?.segments ?? [])).toThrow(/tensor 'A' has dimension -1 \(expected an integer ≥ 0\)/);
  });
  it('carry a trace context only when given: zero extra bytes without one, tracestate only when set', () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const tracestate = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7';
    const plain = Buffer.concat(encodeExecuteRequest(Method.Execute, 1, request));
    const traced = Buffer.concat(encodeExecuteRequest(Method.Execute, 1, request, { traceparent }));
    const stated = Buffer.concat(encodeExecuteRequest(Method.Execute, 1, request, { traceparent, tracestate }));
    expect(traced.byteLength - plain.byteLength).toBe(4 + traceparent.length);
    expect(stated.byteLength - traced.byteLength).toBe(4 + tracestate.length);
    const [p] = readBack([plain], 4096);
    const [t] = readBack([traced], 7);
    const [s] = readBack([stated], 5);
    expect(decodeExecuteRequest(p?.payload ?? new Uint8Array(), p?.segments ?? []).trace).toBeUndefined();
    const decoded = decodeExecuteRequest(t?.payload ?? new Uint8Array(), t?.segments ?? []);
    expect(decoded.trace).toEqual({ traceparent });
    expect(decoded.inputs.map((x) => x.name)).toEqual(['A', 'S', 'B']);
    expect(decodeExecuteRequest(s?.payload ?? new Uint8Array(), s?.segments ?? []).trace).toEqual({ traceparent, tracestate });
  });
});
