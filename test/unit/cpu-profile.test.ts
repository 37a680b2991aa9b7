import { describe, expect, it } from 'vitest';
import { type CpuProfile, type ProfileNode, addStageTimes, placeOf, profileFileInfo, stageTimes } from '../../bench/profile/cpu-profile.js';

const DIST = 'file:///srv/fabriek/dist';
const frame = (id: number, functionName: string, url: string, children: number[] = []): ProfileNode => ({ id, callFrame: { functionName, url }, children });

/**
 * root ─ (idle) 2
 *      ─ (garbage collector) 3
 *      ─ grpc-js handler 4 ─ node:internal/http2 respond 5
 *      ─ node:internal/http2 onSessionHeaders 6 (nothing of ours above it)
 *      ─ batcher 7 ─ node:buffer 8
 *      ─ worker service 9 ─ onnxruntime-node run 10
 */
const NODES: ProfileNode[] = [
  frame(1, '(root)', '', [2, 3, 4, 6, 7, 9]),
  frame(2, '(idle)', ''),
  frame(3, '(garbage collector)', ''),
  frame(4, 'handleDataFrame', `${DIST}/../node_modules/@grpc/grpc-js/build/src/server-interceptors.js`, [5]),
  frame(5, 'respond', 'node:internal/http2/core'),
  frame(6, 'onSessionHeaders', 'node:internal/http2/core'),
  frame(7, 'enqueue', `${DIST}/gateway/batching/dynamic-batcher.js`, [8]),
  frame(8, 'allocUnsafe', 'node:buffer'),
  frame(9, 'execute', `${DIST}/worker/service.js`, [10]),
  frame(10, 'run', `${DIST}/../node_modules/onnxruntime-node/dist/backend.js`),
];

/** Samples at 1000 + 10 µs × i: each counts for the 10 µs to the next (the last for nothing). */
function profile(samples: number[]): CpuProfile {
  return { nodes: NODES, startTime: 1_000, endTime: 1_000 + 10 * samples.length, samples, timeDeltas: samples.map((_, i) => (i === 0 ? 0 : 10)) };
}

describe('CPU profile stages (fabriek bench profile)', () => {
  it('charges a sample to the nearest frame with a place: Node internals count for their caller', () => {
    const t = stageTimes(profile([5, 8, 10, 6, 3, 2, 4, 2]), 0, Infinity);
    expect(Object.fromEntries(t.stages)).toEqual({
      'grpc-js (calls, metadata, message framing)': 20,
      'queue, batching, scheduling': 10,
      'ONNX Runtime (run, tensors)': 10,
      'Node HTTP/2, HTTP and sockets (no caller of ours)': 10,
      'garbage collection': 10,
    });
    expect(t.busyUs).toBe(60);
    expect(t.idleUs).toBe(10);
  });

  it('counts only samples within the window, on the profile clock', () => {
    // Samples at 1000, 1010, 1020, 1030: the window [1005, 1025] holds the second and third.
    const t = stageTimes(profile([8, 10, 5, 6]), 1_005, 1_025);
    expect(Object.fromEntries(t.stages)).toEqual({ 'ONNX Runtime (run, tensors)': 10, 'grpc-js (calls, metadata, message framing)': 10 });
    expect(stageTimes(profile([8, 10, 5, 6]), 5_000, 6_000).busyUs).toBe(0);
  });

  it('adds threads and processes', () => {
    const a = stageTimes(profile([8, 8, 2]), 0, Infinity);
    const b = stageTimes(profile([8, 10, 2]), 0, Infinity);
    const sum = addStageTimes([a, b]);
    expect(sum.stages.get('queue, batching, scheduling')).toBe(30);
    expect(sum.busyUs).toBe(40);
  });

  it('places modules by path, the more specific first', () => {
    expect(placeOf(`${DIST}/gateway/scheduling/dispatcher.js`)).toBe('queue, batching, scheduling');
    expect(placeOf(`${DIST}/gateway/scheduling/worker-connection.js`)).toBe('worker link (frames, socket writes)');
    expect(placeOf(`${DIST}/worker/ort-session.js`)).toBe('ONNX Runtime (run, tensors)');
    expect(placeOf(`${DIST}/worker/ort-pool.js`)).toBe('hand-off to ONNX Runtime threads');
    expect(placeOf(`${DIST}/gateway/grpc/infer-codec.js`)).toBe('decode and encode (protobuf, JSON, tensors)');
    expect(placeOf(`${DIST}/gateway/grpc/inference-service.js`)).toBe('handlers and infer pipeline');
    expect(placeOf('/x/node_modules/prom-client/lib/histogram.js')).toBe('metrics, statistics, load reports');
    expect(placeOf('/x/node_modules/yaml/dist/index.js')).toBe('other packages');
    expect(placeOf('node:internal/http2/core')).toBeUndefined();
    expect(placeOf('')).toBeUndefined();
  });

  it("reads --cpu-prof's file names", () => {
    expect(profileFileInfo('CPU.20261205.161911.9242.0.001.cpuprofile')).toEqual({ pid: 9242, thread: 0 });
    expect(profileFileInfo('CPU.20261205.161912.9242.2.003.cpuprofile')).toEqual({ pid: 9242, thread: 2 });
    expect(profileFileInfo('notes.txt')).toBeUndefined();
  });
});
