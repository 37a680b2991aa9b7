import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ModelInferRequest, type ModelInferRequest_InferInputTensor } from '../../proto/gen/inference.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { runReference } from '../helpers/ort-reference.js';
import { sample } from '../helpers/tensor-data.js';
import { IDENTITY_MODELS, TEST_REPOSITORY, TEST_REPOSITORY_MODELS } from '../helpers/test-repository.js';

const modelFile = (name: string): string => join(TEST_REPOSITORY, name, '1', 'model.onnx');

function input(name: string, datatype: string, shape: number[], extra: Partial<ModelInferRequest_InferInputTensor> = {}): ModelInferRequest_InferInputTensor {
  return { name, datatype, shape: shape.map(BigInt), parameters: {}, ...extra };
}

function request(model: string, inputs: ModelInferRequest_InferInputTensor[], raw: Uint8Array[], extra: Partial<ModelInferRequest> = {}): ModelInferRequest {
  return {
    modelName: model,
    modelVersion: '',
    id: '',
    parameters: {},
    inputs,
    outputs: [],
    rawInputContents: raw.map((r) => Buffer.from(r.buffer, r.byteOffset, r.byteLength)),
    ...extra,
  };
}

async function expectStatus(p: Promise<unknown>, code: GrpcStatus, message: RegExp): Promise<void> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e as ServiceError,
  );
  expect(error, 'expected the call to fail').toBeDefined();
  expect(GrpcStatus[error?.code ?? 0]).toBe(GrpcStatus[code]);
  expect(error?.details).toMatch(message);
}

const IDENTITY_TYPES = IDENTITY_MODELS;

describe('fabriek serve on a repository without config files', () => {
  let gw: GatewayProcess;

  beforeAll(async () => {
    gw = await startGateway(['--model-repository', TEST_REPOSITORY, '--log-level', 'warn']);
  });

  afterAll(async () => {
    const code = await gw?.stop();
    expect(code).toBe(0);
  });

  it('prints one ready line with the port and the models', () => {
    expect(gw.readyLine).toMatch(
      /^fabriek \S+ ready: gRPC on 127\.0\.0\.1:\d+; HTTP on 127\.0\.0\.1:\d+; metrics on 127\.0\.0\.1:\d+; \d+ model versions ready/,
    );
    expect(gw.readyLine).toContain('identity_fp32/1');
  });

  it('requests whose deadline passes while the worker runs them leave no trace: requests sent meanwhile all succeed', async () => {
    // mlp without batching: runs of a few ms, so most of these expire queued in the
    // gateway and some while sent to the worker, which still runs them.
    const data = new Uint8Array(new Float32Array(784).fill(0.5).buffer);
    const req = request('mlp', [input('input', 'FP32', [1, 784])], [data]);
    for (const timeoutMs of [1, 2, 4, 8]) {
      // Requests with room to spare are sent at the same time and must all succeed:
      // the worker is still running the expired ones, so the gateway must not send more.
      const [expired, patient] = await Promise.all([
        Promise.allSettled(Array.from({ length: 24 }, () => gw.client.modelInfer(req, { timeoutMs }))),
        Promise.allSettled(Array.from({ length: 16 }, () => gw.client.modelInfer(req, { timeoutMs: 20_000 }))),
      ]);
      // Answered, expired, or shed before it ran (early shedding: on a busy machine the learned cost says it cannot
      // finish in time; Triton's timeout status and words). Anything else is a trace left behind, shown with its words.
      const unexpected = expired.flatMap((r) => {
        if (r.status === 'fulfilled') return [];
        const { code, message } = r.reason as { code: number; message: string };
        const expected = code === 4 || (code === 14 && message.includes('shed the request before it ran'));
        return expected ? [] : [`${code}: ${message}`];
      });
      expect(unexpected).toEqual([]);
      expect(patient.map((r) => (r.status === 'fulfilled' ? 'ok' : String((r.reason as Error).message)))).toEqual(Array(16).fill('ok'));
    }
  });

  it('answers health and server metadata', async () => {
    expect(await gw.client.serverLive()).toBe(true);
    expect(await gw.client.serverReady()).toBe(true);
    const md = await gw.client.serverMetadata();
    expect(md.name).toBe('fabriek');
    expect(md.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(md.extensions).toContain('model_repository');
  });

  it('lists every model READY in the repository index', async () => {
    const index = await gw.client.repositoryIndex();
    const names = index.models.map((m) => m.name).sort();
    expect(names).toEqual([...TEST_REPOSITORY_MODELS].sort());
    for (const m of index.models) {
      expect(m.state, `${m.name}: ${m.reason}`).toBe('READY');
      expect(m.version).toBe('1');
    }
  });

  it('completes metadata and config from the ONNX model', async () => {
    const md = await gw.client.modelMetadata('add_sub');
    expect(md.platform).toBe('onnxruntime_onnx');
    expect(md.versions).toEqual(['1']);
    expect(md.inputs.map((t) => [t.name, t.datatype, t.shape.map(Number)])).toEqual([
      ['INPUT0', 'FP32', [-1, 16]],
      ['INPUT1', 'FP32', [-1, 16]],
    ]);
    const cfg = (await gw.client.modelConfig('add_sub')).config;
    expect(cfg?.maxBatchSize).toBe(4);
    expect(cfg?.platform).toBe('onnxruntime_onnx');
    expect(cfg?.input.map((i) => i.dims.map(Number))).toEqual([[16], [16]]);
    expect(cfg?.parameters['execution_provider']?.stringValue).toMatch(/cpu/);

    const fixed = (await gw.client.modelConfig('fixed_fp32')).config;
    expect(fixed?.maxBatchSize).toBe(0);
    expect(fixed?.input[0]?.dims.map(Number)).toEqual([2, 3]);
    const fixedMd = await gw.client.modelMetadata('fixed_fp32');
    expect(fixedMd.inputs[0]?.shape.map(Number)).toEqual([2, 3]);
  });

  it.each(IDENTITY_TYPES)('%s: raw input gives the same bytes as in-process ONNX Runtime', async (model, datatype) => {
    const shape = datatype === 'FP32' ? [3, 16] : [2, 5];
    const s = sample(datatype, shape[0]! * shape[1]!);
    const res = await gw.client.modelInfer(request(model, [input('INPUT0', datatype, shape)], [s.raw], { id: `req-${model}` }));
    const ref = await runReference(modelFile(model), [{ name: 'INPUT0', datatype, shape, raw: s.raw }]);
    expect(res.id).toBe(`req-${model}`);
    expect(res.modelName).toBe(model);
    expect(res.modelVersion).toBe('1');
    expect(res.outputs).toHaveLength(1);
    expect(res.outputs[0]?.name).toBe('OUTPUT0');
    expect(res.outputs[0]?.datatype).toBe(datatype);
    expect(res.outputs[0]?.shape.map(Number)).toEqual(ref.get('OUTPUT0')?.shape);
    expect(Buffer.from(res.rawOutputContents[0] ?? [])).toEqual(Buffer.from(ref.get('OUTPUT0')?.raw ?? []));
  });

  it.each(IDENTITY_TYPES.filter(([, d]) => d !== 'FP16'))('%s: typed contents give the same bytes as raw', async (model, datatype) => {
    const shape = datatype === 'FP32' ? [2, 16] : [2, 3];
    const s = sample(datatype, shape[0]! * shape[1]!);
    const res = await gw.client.modelInfer(request(model, [input('INPUT0', datatype, shape, { contents: s.contents })], []));
    expect(Buffer.from(res.rawOutputContents[0] ?? [])).toEqual(Buffer.from(s.raw));
  });

  it('runs real models exactly as in-process ONNX Runtime: add_sub, multi_dtype, mlp, simple_cnn', async () => {
    const a = sample('FP32', 32);
    const b = sample('FP32', 32);
    const res = await gw.client.modelInfer(request('add_sub', [input('INPUT0', 'FP32', [2, 16]), input('INPUT1', 'FP32', [2, 16])], [a.raw, b.raw]));
    const ref = await runReference(modelFile('add_sub'), [
      { name: 'INPUT0', datatype: 'FP32', shape: [2, 16], raw: a.raw },
      { name: 'INPUT1', datatype: 'FP32', shape: [2, 16], raw: b.raw },
    ]);
    expect(res.outputs.map((o) => o.name)).toEqual(['OUTPUT0', 'OUTPUT1']);
    expect(Buffer.from(res.rawOutputContents[0]!)).toEqual(Buffer.from(ref.get('OUTPUT0')!.raw));
    expect(Buffer.from(res.rawOutputContents[1]!)).toEqual(Buffer.from(ref.get('OUTPUT1')!.raw));

    const ia = sample('INT32', 8);
    const fb = sample('FP64', 8);
    const bc = sample('BOOL', 8);
    const multi = await gw.client.modelInfer(
      request('multi_dtype', [input('A', 'INT32', [2, 4]), input('B', 'FP64', [2, 4]), input('C', 'BOOL', [2, 4])], [ia.raw, fb.raw, bc.raw]),
    );
    const multiRef = await runReference(modelFile('multi_dtype'), [
      { name: 'A', datatype: 'INT32', shape: [2, 4], raw: ia.raw },
      { name: 'B', datatype: 'FP64', shape: [2, 4], raw: fb.raw },
      { name: 'C', datatype: 'BOOL', shape: [2, 4], raw: bc.raw },
    ]);
    for (const [i, out] of multi.outputs.entries()) {
      expect(Buffer.from(multi.rawOutputContents[i]!), out.name).toEqual(Buffer.from(multiRef.get(out.name)!.raw));
    }

    for (const [model, name, shape] of [
      ['mlp', 'input', [3, 784]],
      ['simple_cnn', 'image', [2, 1, 28, 28]],
    ] as const) {
      const x = sample('FP32', shape.reduce<number>((n, d) => n * d, 1));
      const got = await gw.client.modelInfer(request(model, [input(name, 'FP32', [...shape])], [x.raw]));
      const want = await runReference(modelFile(model), [{ name, datatype: 'FP32', shape, raw: x.raw }]);
      const g = new Float32Array(Uint8Array.from(got.rawOutputContents[0]!).buffer);
      const w = new Float32Array(Uint8Array.from(want.get('logits')!.raw).buffer);
      expect(got.outputs[0]?.shape.map(Number)).toEqual([shape[0], 10]);
      expect(g.length).toBe(w.length);
      // Thread counts may differ from the reference session: allow summation-order noise only.
      for (let i = 0; i < w.length; i++) expect(Math.abs(g[i]! - w[i]!), `${model}[${i}]`).toBeLessThan(1e-4);
    }
  });

  it('returns only the requested outputs, in the requested order', async () => {
    const a = sample('FP32', 16);
    const res = await gw.client.modelInfer(
      request('add_sub', [input('INPUT0', 'FP32', [1, 16]), input('INPUT1', 'FP32', [1, 16])], [a.raw, a.raw], {
        outputs: [{ name: 'OUTPUT1', parameters: {} }],
      }),
    );
    expect(res.outputs.map((o) => o.name)).toEqual(['OUTPUT1']);
    expect([...new Float32Array(Uint8Array.from(res.rawOutputContents[0]!).buffer)]).toEqual(new Array(16).fill(0));
  });

  it('carries messages far above gRPC’s 4 MiB default (80 MiB each way)', async () => {
    const n = 80 * 1024 * 1024;
    const data = new Uint8Array(n);
    for (let i = 0; i < n; i += 4096) data[i] = i % 251;
    const res = await gw.client.modelInfer(request('identity_uint8', [input('INPUT0', 'UINT8', [1, n])], [data]));
    expect(res.rawOutputContents[0]?.length).toBe(n);
    expect(Buffer.compare(Buffer.from(res.rawOutputContents[0]!), Buffer.from(data))).toBe(0);
  });

  it("logs no warning that it could not tune a gRPC session (grpc-js's servers or Node's stream Map moved), after a call opened one", async () => {
    await gw.client.serverReady();
    expect(gw.stderr()).not.toMatch(/keeps its HTTP\/2 servers elsewhere|keeps an HTTP\/2 session's streams otherwise/);
  });

  it('ModelStreamInfer answers every request on the stream, errors as error_message', async () => {
    const stream = gw.client.raw.modelStreamInfer();
    const got: Array<{ id: string; error: string; out?: Buffer }> = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (r: { errorMessage: string; inferResponse?: { id: string; rawOutputContents: Buffer[] } }) =>
        got.push({ id: r.inferResponse?.id ?? '', error: r.errorMessage, ...(r.inferResponse ? { out: r.inferResponse.rawOutputContents[0] } : {}) }),
      );
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    const s = sample('FP32', 16);
    stream.write(request('identity_fp32', [input('INPUT0', 'FP32', [1, 16])], [s.raw], { id: 'a' }));
    stream.write(request('identity_fp32', [input('INPUT0', 'FP32', [1, 15])], [sample('FP32', 15).raw], { id: 'bad' }));
    stream.write(request('identity_fp32', [input('INPUT0', 'FP32', [1, 16])], [s.raw], { id: 'b' }));
    stream.end();
    await done;
    expect(got).toHaveLength(3);
    expect(got.filter((g) => g.error === '').map((g) => g.id).sort()).toEqual(['a', 'b']);
    for (const g of got.filter((x) => x.error === '')) expect(Buffer.from(g.out!)).toEqual(Buffer.from(s.raw));
    expect(got.find((g) => g.error !== '')?.error).toMatch(/identity_fp32.*INPUT0.*expected shape \[-1,16\], got \[1,15\]/);
  });

  it('counts requests, rows and executions in ModelStatistics', async () => {
    const before = (await gw.client.modelStatistics('identity_fp64', '1')).modelStats[0];
    const s = sample('FP64', 6);
    for (let i = 0; i < 5; i++) {
      await gw.client.modelInfer(request('identity_fp64', [input('INPUT0', 'FP64', [2, 3])], [s.raw]));
    }
    await gw.client
      .modelInfer(request('identity_fp64', [input('INPUT0', 'FP32', [2, 3])], [sample('FP32', 6).raw]))
      .catch(() => undefined);
    const after = (await gw.client.modelStatistics('identity_fp64', '1')).modelStats[0];
    const d = (f: (m: NonNullable<typeof after>) => bigint | undefined): number => Number((f(after!) ?? 0n) - (f(before!) ?? 0n));
    expect(after?.name).toBe('identity_fp64');
    expect(d((m) => m.inferenceCount)).toBe(10);
    expect(d((m) => m.executionCount)).toBe(5);
    expect(d((m) => m.inferenceStats?.success?.count)).toBe(5);
    expect(d((m) => m.inferenceStats?.fail?.count)).toBe(1);
    expect(d((m) => m.inferenceStats?.computeInfer?.count)).toBe(5);
    expect(Number(after?.inferenceStats?.computeInfer?.ns)).toBeGreaterThan(0);
    expect(after?.batchStats.find((b) => b.batchSize === 2n)?.computeInfer?.count).toBeGreaterThanOrEqual(5n);
    expect(Number(after?.lastInference)).toBeGreaterThan(Date.now() - 60_000);
    const all = await gw.client.modelStatistics();
    expect(all.modelStats.length).toBe(TEST_REPOSITORY_MODELS.length);
    await expectStatus(gw.client.modelStatistics('nope'), GrpcStatus.NOT_FOUND, /nope/);
  });

  describe('bad requests get INVALID_ARGUMENT or NOT_FOUND with a clear message, and the server keeps serving', () => {
    const good = (): ModelInferRequest =>
      request('add_sub', [input('INPUT0', 'FP32', [1, 16]), input('INPUT1', 'FP32', [1, 16])], [sample('FP32', 16).raw, sample('FP32', 16).raw]);

    it('unknown model or version → NOT_FOUND', async () => {
      await expectStatus(gw.client.modelInfer({ ...good(), modelName: 'nope' }), GrpcStatus.NOT_FOUND, /model 'nope'/);
      await expectStatus(gw.client.modelInfer({ ...good(), modelVersion: '7' }), GrpcStatus.NOT_FOUND, /add_sub.*version '7'/);
      await expectStatus(gw.client.modelMetadata('nope'), GrpcStatus.NOT_FOUND, /nope/);
      await expectStatus(gw.client.modelConfig('nope'), GrpcStatus.NOT_FOUND, /nope/);
      expect(await gw.client.modelReady('nope')).toBe(false);
      expect(await gw.client.modelReady('add_sub')).toBe(true);
      expect(await gw.client.modelReady('add_sub', '1')).toBe(true);
    });

    it('unknown, missing and duplicate inputs', async () => {
      const r = good();
      await expectStatus(
        gw.client.modelInfer({ ...r, inputs: [r.inputs[0]!, { ...r.inputs[1]!, name: 'INPUT9' }] }),
        GrpcStatus.INVALID_ARGUMENT,
        /add_sub.*INPUT9/,
      );
      await expectStatus(
        gw.client.modelInfer({ ...r, inputs: [r.inputs[0]!], rawInputContents: [r.rawInputContents[0]!] }),
        GrpcStatus.INVALID_ARGUMENT,
        /add_sub.*INPUT1/,
      );
    });

    it('wrong datatype, rank, shape, and batch above max_batch_size', async () => {
      const r = good();
      await expectStatus(
        // Well-formed FP64 data, so that the datatype check itself is what answers.
        gw.client.modelInfer({
          ...r,
          inputs: [{ ...r.inputs[0]!, datatype: 'FP64' }, r.inputs[1]!],
          rawInputContents: [Buffer.from(sample('FP64', 16).raw), r.rawInputContents[1]!],
        }),
        GrpcStatus.INVALID_ARGUMENT,
        /^model 'add_sub': input 'INPUT0': expected datatype FP32, got FP64$/,
      );
      await expectStatus(
        gw.client.modelInfer(request('add_sub', [input('INPUT0', 'FP32', [16]), input('INPUT1', 'FP32', [16])], [sample('FP32', 16).raw, sample('FP32', 16).raw])),
        GrpcStatus.INVALID_ARGUMENT,
        /^model 'add_sub': input 'INPUT0': expected shape \[-1,16\], got \[16\]$/,
      );
      await expectStatus(
        gw.client.modelInfer(request('add_sub', [input('INPUT0', 'FP32', [2, 8]), input('INPUT1', 'FP32', [2, 8])], [sample('FP32', 16).raw, sample('FP32', 16).raw])),
        GrpcStatus.INVALID_ARGUMENT,
        /^model 'add_sub': input 'INPUT0': expected shape \[-1,16\], got \[2,8\]$/,
      );
      await expectStatus(
        gw.client.modelInfer(request('add_sub', [input('INPUT0', 'FP32', [5, 16]), input('INPUT1', 'FP32', [5, 16])], [sample('FP32', 80).raw, sample('FP32', 80).raw])),
        GrpcStatus.INVALID_ARGUMENT,
        /add_sub.*batch size 5.*max_batch_size 4/,
      );
    });

    it('raw byte size mismatch, contents and raw both, unknown datatype, unknown output', async () => {
      const r = good();
      await expectStatus(
        gw.client.modelInfer({ ...r, rawInputContents: [Buffer.alloc(60), r.rawInputContents[1]!] }),
        GrpcStatus.INVALID_ARGUMENT,
        /^model 'add_sub': input 'INPUT0': shape \[1,16\] of FP32 needs 64 bytes, got 60 in raw_input_contents\[0\]$/,
      );
      await expectStatus(
        gw.client.modelInfer({ ...r, inputs: [{ ...r.inputs[0]!, contents: sample('FP32', 16).contents }, r.inputs[1]!] }),
        GrpcStatus.INVALID_ARGUMENT,
        /^model 'add_sub': input 'INPUT0': has both contents and raw_input_contents; send only one$/,
      );
      await expectStatus(
        gw.client.modelInfer({ ...r, inputs: [{ ...r.inputs[0]!, datatype: 'FLOAT' }, r.inputs[1]!] }),
        GrpcStatus.INVALID_ARGUMENT,
        /FLOAT/,
      );
      await expectStatus(
        gw.client.modelInfer({ ...r, outputs: [{ name: 'OUTPUT7', parameters: {} }] }),
        GrpcStatus.INVALID_ARGUMENT,
        /add_sub.*OUTPUT7/,
      );
      await expectStatus(
        gw.client.modelInfer(request('identity_string', [input('INPUT0', 'BYTES', [1, 1])], [Uint8Array.from([9, 0, 0, 0, 65])])),
        GrpcStatus.INVALID_ARGUMENT,
        /input 'INPUT0'.*BYTES element 0 declares 9 bytes but only 1 remain/,
      );
      await expectStatus(
        gw.client.modelInfer(request('identity_string', [input('INPUT0', 'BYTES', [1, 1])], [Uint8Array.from([2, 0, 0, 0, 0xff, 0xfe])])),
        GrpcStatus.INVALID_ARGUMENT,
        /identity_string.*INPUT0.*UTF-8/,
      );
    });

    it('unimplemented RPCs answer UNIMPLEMENTED', async () => {
      await expectStatus(
        new Promise((resolve, reject) => gw.client.raw.cudaSharedMemoryStatus({ name: '' }, (e, r) => (e ? reject(e) : resolve(r)))),
        GrpcStatus.UNIMPLEMENTED,
        /CudaSharedMemoryStatus/,
      );
    });

    it('still serves correctly after all of the above', async () => {
      const res = await gw.client.modelInfer(good());
      expect(res.outputs).toHaveLength(2);
      expect(await gw.client.serverReady()).toBe(true);
    });
  });
});
