import { status as GrpcStatus } from '@grpc/grpc-js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceHttpClient } from '../../client/http-client.js';
import { type InferenceClient } from '../../client/inference-client.js';
import { input } from '../../client/typed-tensors.js';
import { buildModel } from '../../models/build/test-models.js';
import { type ModelInferRequest } from '../../proto/gen/inference.js';
import { cacheCounts } from '../helpers/cache-repository.js';
import { failure } from '../helpers/call-outcome.js';
import { type GatewayProcess, httpUrlOf, startGateway } from '../helpers/gateway-process.js';
import { putModel } from '../helpers/model-dir.js';

// Triton's classification extension over both protocols, on real models:
// identity_fp32 echoes its 16 inputs, so the top classes are known.

const LABELS = Array.from({ length: 16 }, (_, i) => (i === 3 ? '' : `class-${i}`));

const CLASSES_CONFIG = `name: "classes"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] label_filename: "labels.txt" } ]
dynamic_batching { }
`;

const CACHED_CONFIG = `name: "cached"
max_batch_size: 8
response_cache { enable: true }
`;

/** An ensemble whose output carries the labels; its step, identity_fp32, has none. */
const RANKED_CONFIG = `name: "ranked"
platform: "ensemble"
max_batch_size: 4
input [ { name: "SCORES_IN" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "SCORES" data_type: TYPE_FP32 dims: [ 16 ] label_filename: "labels.txt" } ]
ensemble_scheduling { step [ { model_name: "identity_fp32" model_version: -1 input_map { key: "INPUT0" value: "SCORES_IN" } output_map { key: "OUTPUT0" value: "SCORES" } } ] }
`;

const MISSING_LABELS_CONFIG = `name: "missing_labels"
max_batch_size: 8
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] label_filename: "nowhere.txt" } ]
`;

/** Two rows: the first rises with the index but for index 3, the largest; the second falls. */
const ROWS = Float32Array.from([...Array.from({ length: 16 }, (_, i) => (i === 3 ? 9.5 : i / 10)), ...Array.from({ length: 16 }, (_, i) => 100 - i)]);

const classesOf = (row: readonly number[], k: number): string[] =>
  row
    .map((v, i) => ({ v, i }))
    .sort((a, b) => b.v - a.v || a.i - b.i)
    .slice(0, k)
    .map(({ v, i }) => `${Math.fround(v).toFixed(6)}:${i}${LABELS[i] ? `:${LABELS[i]}` : ''}`);

const EXPECTED_TOP3 = [...classesOf([...ROWS.subarray(0, 16)], 3), ...classesOf([...ROWS.subarray(16)], 3)];

describe('classification extension', () => {
  let repo: string;
  let gw: GatewayProcess;
  let http: InferenceHttpClient;
  let httpJson: InferenceHttpClient;
  let url: string;

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-classes-'));
    const identity = buildModel('identity_fp32');
    await putModel(repo, 'classes', CLASSES_CONFIG, identity);
    await writeFile(join(repo, 'classes', 'labels.txt'), `${LABELS.join('\n')}\n`);
    await putModel(repo, 'fixed_fp32', undefined, buildModel('fixed_fp32'));
    await putModel(repo, 'string_identity', undefined, buildModel('string_identity'));
    await putModel(repo, 'missing_labels', MISSING_LABELS_CONFIG, identity);
    await putModel(repo, 'cached', CACHED_CONFIG, identity);
    await putModel(repo, 'identity_fp32', undefined, identity);
    await putModel(repo, 'ranked', RANKED_CONFIG);
    await writeFile(join(repo, 'ranked', 'labels.txt'), `${LABELS.join('\n')}\n`);
    gw = await startGateway(['--model-repository', repo, '--log-level', 'warn', '--cache-config', 'local,size=1048576']);
    url = httpUrlOf(gw);
    http = new InferenceHttpClient(url);
    httpJson = new InferenceHttpClient(url, { binary: false });
  });

  afterAll(async () => {
    http?.close();
    httpJson?.close();
    expect(await gw?.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  const clients = (): [string, InferenceClient][] => [
    ['gRPC', gw.client],
    ['HTTP binary', http],
    ['HTTP JSON', httpJson],
  ];

  it('lists the extension in the server metadata', async () => {
    expect((await gw.client.getServerMetadata()).extensions).toContain('classification');
  });

  it.each([0, 1, 2])('answers the top classes of each batch item with their labels (%#: gRPC, HTTP binary, HTTP JSON)', async (which) => {
    const [, client] = clients()[which] as [string, InferenceClient];
    const result = await client.infer('classes', [input('INPUT0', 'FP32', [2, 16], ROWS)], { classification: { OUTPUT0: 3 } });
    const out = result.output('OUTPUT0');
    expect(out.datatype).toBe('BYTES');
    expect(out.shape).toEqual([2, 3]);
    expect(out.as('BYTES')).toEqual(EXPECTED_TOP3);
    // Index 3 has an empty label line: no label.
    expect(EXPECTED_TOP3[0]).toBe('9.500000:3');
  });

  it('answers every class when K exceeds them, and the raw output for K = 0', async () => {
    const all = await gw.client.infer('classes', [input('INPUT0', 'FP32', [1, 16], ROWS.subarray(0, 16))], { classification: { OUTPUT0: 100 } });
    expect(all.output('OUTPUT0').shape).toEqual([1, 16]);
    expect(all.data('OUTPUT0', 'BYTES')).toEqual(classesOf([...ROWS.subarray(0, 16)], 16));
    const raw = await http.infer('classes', [input('INPUT0', 'FP32', [1, 16], ROWS.subarray(0, 16))], { classification: { OUTPUT0: 0 } });
    expect([...raw.data('OUTPUT0', 'FP32')]).toEqual([...ROWS.subarray(0, 16)]);
  });

  it('ranks the whole output of a model that does not batch', async () => {
    const x = Float32Array.from([-1, 5, 2, 4, 3, 0]);
    const result = await gw.client.infer('fixed_fp32', [input('X', 'FP32', [2, 3], x)], { classification: { Y: 2 } });
    expect(result.output('Y').shape).toEqual([2]);
    expect(result.data('Y', 'BYTES')).toEqual(['5.000000:1', '4.000000:3']);
  });

  it('takes the parameter as Triton\'s HTTP clients write it, and answers it in JSON', async () => {
    const body = {
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], data: [...ROWS.subarray(16)] }],
      outputs: [{ name: 'OUTPUT0', parameters: { classification: 2 } }],
    };
    const res = await fetch(`${url}/v2/models/classes/infer`, { method: 'POST', body: JSON.stringify(body) });
    expect(res.status).toBe(200);
    const json = (await res.json()) as { outputs: { name: string; datatype: string; shape: number[]; data: string[] }[] };
    expect(json.outputs).toEqual([{ name: 'OUTPUT0', datatype: 'BYTES', shape: [1, 2], data: ['100.000000:0:class-0', '99.000000:1:class-1'] }]);
  });

  it.each([
    [-1, 'must be a non-negative integer (how many classes to return), got -1'],
    [2.5, 'must be a non-negative integer (how many classes to return), got 2.5'],
    ['3', "must be a non-negative integer (how many classes to return), got '3'"],
  ])('refuses classification %s over HTTP with 400 and the reason, and keeps serving', async (value, reason) => {
    const body = {
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], data: [...ROWS.subarray(16)] }],
      outputs: [{ name: 'OUTPUT0', parameters: { classification: value } }],
    };
    const res = await fetch(`${url}/v2/models/classes/infer`, { method: 'POST', body: JSON.stringify(body) });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe(`model 'classes': output 'OUTPUT0': parameter 'classification' ${reason}`);
    expect((await http.infer('classes', [input('INPUT0', 'FP32', [1, 16], ROWS.subarray(16))], { classification: { OUTPUT0: 1 } })).data('OUTPUT0', 'BYTES')).toEqual([
      '100.000000:0:class-0',
    ]);
  });

  it('refuses over gRPC a classification that is not an int64_param, with INVALID_ARGUMENT', async () => {
    const request: ModelInferRequest = {
      modelName: 'classes',
      modelVersion: '',
      id: '',
      parameters: {},
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1n, 16n], parameters: {}, contents: undefined }],
      outputs: [{ name: 'OUTPUT0', parameters: { classification: { parameterChoice: { $case: 'stringParam', value: '3' } } } }],
      rawInputContents: [Buffer.from(ROWS.buffer, 0, 64)],
    };
    const error = await failure(gw.client.modelInfer(request));
    expect(error.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(error.details).toBe("model 'classes': output 'OUTPUT0': parameter 'classification' must be an int64_param, got string_param");
  });

  it.each([
    ['gRPC', 0],
    ['HTTP', 1],
  ])("refuses a BYTES output in Triton's words (%s)", async (_name, which) => {
    const client = clients()[which]?.[1] as InferenceClient;
    const error = await failure(client.infer('string_identity', [input('INPUT0', 'BYTES', [1, 1], ['a'])], { classification: { OUTPUT0: 1 } }));
    expect(error.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(error.message).toContain("model 'string_identity/1': output 'OUTPUT0': class result not available for output due to unsupported type 'BYTES'");
  });

  it('refuses a classification of an output the model does not have, as for any requested output', async () => {
    const error = await failure(gw.client.infer('classes', [input('INPUT0', 'FP32', [1, 16], ROWS.subarray(16))], { classification: { SCORES: 2 } }));
    expect(error.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(error.message).toContain('SCORES');
  });

  it('classifies an answer the response cache holds raw, and answers raw from it again', async () => {
    const row = [input('INPUT0', 'FP32', [1, 16], ROWS.subarray(16))];
    const hits = async (): Promise<number> => cacheCounts((await gw.client.getInferenceStatistics('cached'))[0]).hits;
    // The same requested outputs: the cache's key holds them.
    const raw = await gw.client.infer('cached', row, { outputs: ['OUTPUT0'] });
    expect([...raw.data('OUTPUT0', 'FP32')]).toEqual([...ROWS.subarray(16)]);
    const before = await hits();
    expect((await gw.client.infer('cached', row, { classification: { OUTPUT0: 2 } })).data('OUTPUT0', 'BYTES')).toEqual(['100.000000:0', '99.000000:1']);
    expect([...(await http.infer('cached', row, { outputs: ['OUTPUT0'] })).data('OUTPUT0', 'FP32')]).toEqual([...ROWS.subarray(16)]);
    expect(await hits()).toBe(before + 2);
  });

  it("classifies an ensemble's output with the labels of the ensemble's config", async () => {
    const result = await gw.client.infer('ranked', [input('SCORES_IN', 'FP32', [2, 16], ROWS)], { classification: { SCORES: 3 } });
    expect(result.data('SCORES', 'BYTES')).toEqual(EXPECTED_TOP3);
  });

  it('fails the load of a model whose label file is missing, and says why', async () => {
    expect(await gw.client.isModelReady('missing_labels')).toBe(false);
    const index = (await (await fetch(`${url}/v2/repository/index`, { method: 'POST', body: '{}' })).json()) as { name: string; state: string; reason: string }[];
    const entry = index.find((m) => m.name === 'missing_labels');
    expect(entry?.state).toBe('UNAVAILABLE');
    expect(entry?.reason).toMatch(/output\[0\]\.label_filename: failed to read the label file .*nowhere\.txt/);
  });
});
