// OrtSession drives onnxruntime-node's native binding directly: it must load
// and describe a model, and compute, exactly as the package's own session does
// on the same file, and fail where that one fails (or louder).

import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildModels, modelPath } from '../../models/build/test-models.js';
import { type Feed, OrtSession } from '../../worker/ort-binding.js';

let repo: string;

beforeAll(async () => {
  repo = await mkdtemp(join(tmpdir(), 'fabriek-ort-binding-'));
  await buildModels(repo, ['identity_fp32', 'identity_fp16', 'identity_string', 'add_sub', 'simple_cnn', 'string_identity', 'mlp_small', 'bf16_identity']);
});

afterAll(async () => {
  await rm(repo, { recursive: true, force: true });
});

const CPU: ort.InferenceSession.SessionOptions = { executionProviders: ['cpu'], intraOpNumThreads: 1 };

/** What the worker hands the binding (ort-convert.ts toFeed): a plain object. */
const feed = (type: ort.Tensor.Type, data: ort.Tensor.DataType, dims: readonly number[]): Feed => ({ type, dims, location: 'cpu', data });

function floats(value: ort.OnnxValue | undefined): number[] {
  if (!(value instanceof ort.Tensor)) throw new Error('not a tensor');
  return Array.from(value.data as Float32Array);
}

describe('OrtSession', () => {
  it('describes inputs and outputs as the package session does, symbolic dimensions and strings included', async () => {
    for (const name of ['identity_fp32', 'add_sub', 'simple_cnn', 'string_identity', 'mlp_small'] as const) {
      const own = OrtSession.open(modelPath(repo, name), CPU);
      const theirs = await ort.InferenceSession.create(modelPath(repo, name), CPU);
      try {
        expect(own.inputMetadata, name).toEqual(theirs.inputMetadata);
        expect(own.outputMetadata, name).toEqual(theirs.outputMetadata);
      } finally {
        own.release();
        await theirs.release();
      }
    }
  });

  it('computes what the package session computes, from a path or from bytes (shared memory too), for all outputs or the ones named', async () => {
    const path = modelPath(repo, 'add_sub');
    const theirs = await ort.InferenceSession.create(path, CPU);
    const fromPath = OrtSession.open(path, CPU);
    // A view at an offset into a larger buffer, as a model sent in a load request arrives.
    const file = readFileSync(path);
    const padded = new Uint8Array(file.byteLength + 8);
    padded.set(file, 8);
    const fromBytes = OrtSession.open(padded.subarray(8), CPU);
    const shared = new Uint8Array(new SharedArrayBuffer(file.byteLength));
    shared.set(file);
    const fromShared = OrtSession.open(shared, CPU);
    // A Buffer over shared memory, at an offset: its slice() is a view, not a copy.
    const sharedPadded = Buffer.from(new SharedArrayBuffer(file.byteLength + 8), 8);
    file.copy(sharedPadded);
    const fromSharedBuffer = OrtSession.open(sharedPadded, CPU);
    try {
      const a = Float32Array.from({ length: 16 }, (_, i) => i * 0.5);
      const b = Float32Array.from({ length: 16 }, (_, i) => 3 - i);
      const expected = await theirs.run({ INPUT0: new ort.Tensor('float32', a, [1, 16]), INPUT1: new ort.Tensor('float32', b, [1, 16]) });
      const feeds = { INPUT0: feed('float32', a, [1, 16]), INPUT1: feed('float32', b, [1, 16]) };
      for (const own of [fromPath, fromBytes, fromShared, fromSharedBuffer]) {
        const all = own.run(feeds, []);
        expect(Object.keys(all).sort()).toEqual(['OUTPUT0', 'OUTPUT1']);
        expect(floats(all.OUTPUT0)).toEqual(floats(expected.OUTPUT0));
        expect(floats(all.OUTPUT1)).toEqual(floats(expected.OUTPUT1));
        const one = own.run(feeds, ['OUTPUT1']);
        expect(Object.keys(one)).toEqual(['OUTPUT1']);
        expect(floats(one.OUTPUT1)).toEqual(floats(expected.OUTPUT1));
        expect(one.OUTPUT1).toBeInstanceOf(ort.Tensor);
      }
    } finally {
      fromPath.release();
      fromBytes.release();
      fromShared.release();
      fromSharedBuffer.release();
      await theirs.release();
    }
  });

  it('runs FP16 from its raw bits and strings from string[], on every Node (24 has a Float16Array the package turns FP16 into, which the binding cannot read)', () => {
    const fp16 = OrtSession.open(modelPath(repo, 'identity_fp16'), CPU);
    const strings = OrtSession.open(modelPath(repo, 'identity_string'), CPU);
    try {
      // 0, 1.0, -2.0, 65504, +inf, 0.5
      const bits = new Uint16Array([0x0000, 0x3c00, 0xc000, 0x7bff, 0x7c00, 0x3800]);
      const out = fp16.run({ INPUT0: feed('float16', bits, [2, 3]) }, []).OUTPUT0;
      if (!(out instanceof ort.Tensor) || !ArrayBuffer.isView(out.data)) throw new Error('no tensor');
      expect(out.type).toBe('float16');
      expect(out.dims).toEqual([2, 3]);
      expect([...new Uint16Array(out.data.buffer, out.data.byteOffset, out.data.byteLength / 2)]).toEqual([...bits]);
      const text = strings.run({ INPUT0: feed('string', ['', 'héllo', '🙂'], [1, 3]) }, []).OUTPUT0;
      expect(text?.data).toEqual(['', 'héllo', '🙂']);
    } finally {
      fp16.release();
      strings.release();
    }
  });

  it("throws ONNX Runtime's own error for a bad run, and keeps serving after it", () => {
    const own = OrtSession.open(modelPath(repo, 'add_sub'), CPU);
    try {
      const good = feed('float32', new Float32Array(16), [1, 16]);
      expect(() => own.run({ INPUT0: good, INPUT1: feed('float32', new Float32Array(4), [4]) }, [])).toThrow(/Invalid rank for input: INPUT1/);
      // The binding does not name an unknown output (prepareBatch refuses those first), but does not run either.
      expect(() => own.run({ INPUT0: good, INPUT1: good }, ['NOPE'])).toThrow(/output/);
      expect(floats(own.run({ INPUT0: good, INPUT1: good }, ['OUTPUT0']).OUTPUT0)).toEqual(new Array(16).fill(0));
    } finally {
      own.release();
    }
  });

  it('fails to load with the words ort-session.ts explains: an element type it cannot carry, a provider the build lacks', () => {
    expect(() => OrtSession.open(modelPath(repo, 'bf16_identity'), CPU)).toThrow('Unsupported data type: 16');
    expect(() => OrtSession.open(modelPath(repo, 'identity_fp32'), { executionProviders: ['nope'] })).toThrow(
      /execution provider "nope" is not in this onnxruntime-node build \(it has cpu/,
    );
    expect(() => OrtSession.open(join(repo, 'missing.onnx'), CPU)).toThrow(/missing\.onnx/);
  });
});
