import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceHttpClient } from '../../client/http-client.js';
import { type InferenceClient } from '../../client/inference-client.js';
import { input } from '../../client/typed-tensors.js';
import { buildModel } from '../../models/build/test-models.js';
import { failure } from '../helpers/call-outcome.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';

// Rank-0 tensors (issue #13): a model that declares a scalar input takes a
// shape-[] request, and Triton's `dims: [1]` + `reshape: { shape: [] }` form
// works for non-batching and batching models, over gRPC and HTTP.

const TRITON_SCALAR_CONFIG = `name: "scalar_add_triton"
input [
  { name: "A" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } },
  { name: "B" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } }
]
output [ { name: "SUM" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } } ]
`;

const PER_ITEM_CONFIG = `name: "per_item_scalar"
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 2000 }
`;

describe('scalar inputs and outputs', () => {
  let repo: string;
  let gw: GatewayProcess;
  let http: InferenceHttpClient;
  const clients = (): [string, InferenceClient][] => [
    ['gRPC', gw.client],
    ['HTTP', http],
  ];

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-scalars-'));
    const add = buildModel('scalar_add');
    const place = async (name: string, model: Uint8Array, config?: string): Promise<void> => {
      await mkdir(join(repo, name, '1'), { recursive: true });
      await writeFile(join(repo, name, '1', 'model.onnx'), model);
      if (config !== undefined) await writeFile(join(repo, name, 'config.pbtxt'), config);
    };
    await place('scalar_add', add);
    await place('scalar_add_triton', add, TRITON_SCALAR_CONFIG);
    await place('per_item_scalar', buildModel('per_item_scalar'), PER_ITEM_CONFIG);
    gw = await startGateway(['--model-repository', repo, '--log-level', 'warn']);
    const port = / HTTP on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1];
    http = new InferenceHttpClient(`http://127.0.0.1:${port}`);
  });

  afterAll(async () => {
    http?.close();
    expect(await gw?.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  it('reports the rank-0 shape the model declares in metadata', async () => {
    for (const [, client] of clients()) {
      const md = await client.getModelMetadata('scalar_add');
      expect(md.inputs.map((t) => [t.name, t.shape])).toEqual([
        ['A', []],
        ['B', []],
      ]);
      expect(md.outputs).toEqual([{ name: 'SUM', datatype: 'FP32', shape: [] }]);
    }
  });

  it('answers a shape-[] request with a shape-[] output', async () => {
    for (const [protocol, client] of clients()) {
      const result = await client.infer('scalar_add', [input('A', 'FP32', [], [1.5]), input('B', 'FP32', [], [2.25])]);
      const sum = result.output('SUM');
      expect(sum.shape, protocol).toEqual([]);
      expect([...sum.as('FP32')], protocol).toEqual([3.75]);
    }
  });

  it('refuses a shape that is not the scalar, saying what it expected', async () => {
    for (const [protocol, client] of clients()) {
      const error = await failure(client.infer('scalar_add', [input('A', 'FP32', [1], [1]), input('B', 'FP32', [], [2])]));
      expect(error.code, protocol).toBe(3); // INVALID_ARGUMENT
      expect(error.message, protocol).toMatch(/input 'A'.*expected shape \[\], got \[1\]/);
    }
  });

  it("takes Triton's dims [1] reshape [] form: [1] in, [1] out, the model runs on []", async () => {
    for (const [protocol, client] of clients()) {
      const md = await client.getModelMetadata('scalar_add_triton');
      expect(md.inputs.map((t) => t.shape), protocol).toEqual([[1], [1]]);
      const result = await client.infer('scalar_add_triton', [input('A', 'FP32', [1], [4]), input('B', 'FP32', [1], [-1])]);
      expect(result.output('SUM').shape, protocol).toEqual([1]);
      expect([...result.output('SUM').as('FP32')], protocol).toEqual([3]);
    }
  });

  it('batches per-item scalars of several requests ([b, 1] each) into one [B] run and gives each its rows', async () => {
    const md = await gw.client.getModelMetadata('per_item_scalar');
    expect(md.inputs[0]?.shape).toEqual([-1, 1]);
    const sends = Array.from({ length: 12 }, (_, i) => {
      const rows = 1 + (i % 3);
      const values = Array.from({ length: rows }, (_, r) => 100 * i + r);
      const client = i % 2 === 0 ? gw.client : http;
      return client.infer('per_item_scalar', [input('INPUT0', 'INT32', [rows, 1], values)]).then((result) => ({ result, values, rows }));
    });
    for (const { result, values, rows } of await Promise.all(sends)) {
      const out = result.output('OUTPUT0');
      expect(out.shape).toEqual([rows, 1]);
      expect([...out.as('INT32')]).toEqual(values);
    }
  });
});
