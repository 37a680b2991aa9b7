import { status as GrpcStatus } from '@grpc/grpc-js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceHttpClient } from '../../client/http-client.js';
import { type InferenceClient } from '../../client/inference-client.js';
import { input } from '../../client/typed-tensors.js';
import { buildModel, EXAMPLE_CONFIGS } from '../../models/build/test-models.js';
import { type ModelConfig } from '../../proto/gen/model_config.js';
import { failure } from '../helpers/call-outcome.js';
import { type GatewayProcess, httpUrlOf, startGateway } from '../helpers/gateway-process.js';
import { putModel } from '../helpers/model-dir.js';

// Triton's ragged batching on a real model: ragged_sum takes every batch
// item's values end to end (INPUT, [-1]) and each item's length (ITEM_LENGTHS,
// a batch input the server makes), answers each item's SUM, and DOUBLED, which
// the server scatters back to each request in its INPUT's shape.

const RAGGED = EXAMPLE_CONFIGS.ragged_sum as string;
const named = (name: string, config: string): string => config.replace('name: "ragged_sum"', `name: "${name}"`);
// One request to an execution (no dynamic_batching): still flat, still with its batch input.
const DIRECT = named('ragged_direct', RAGGED.replace(/dynamic_batching \{[^}]*\}\n/, ''));
// Warm-up samples go through the same batch making.
const WARM = named('ragged_warm', `${RAGGED}model_warmup [ { name: "zeros" batch_size: 2 inputs { key: "INPUT" value: { data_type: TYPE_FP32 dims: [ 5 ] zero_data: true } } } ]\n`);
// A streaming model that takes chunks of any length and keeps a running sum per sequence (implicit state).
const STREAM = `name: "ragged_stream"
max_batch_size: 8
input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]
batch_input [ { kind: BATCH_ITEM_SHAPE_FLATTEN target_name: "ITEM_LENGTHS" data_type: TYPE_INT32 source_input: "INPUT" } ]
sequence_batching {
  state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
  oldest { max_candidate_sequences: 8 max_queue_delay_microseconds: 2000 }
}
`;
const BAD = named('ragged_bad', RAGGED.replace('data_type: TYPE_INT32', 'data_type: TYPE_FP32'));

/** A request of `rows` items of `n` values each, and what the model must answer for it. */
function ragged(seed: number, rows: number, n: number): { data: number[]; sums: number[] } {
  const data = Array.from({ length: rows * n }, (_, k) => ((seed * 7 + k * 3) % 11) - 5);
  const sums = Array.from({ length: rows }, (_, r) => data.slice(r * n, (r + 1) * n).reduce((a, b) => a + b, 0));
  return { data, sums };
}

describe('ragged batching', () => {
  let repo: string;
  let gw: GatewayProcess;
  let http: InferenceHttpClient;
  let json: InferenceHttpClient;

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-ragged-'));
    const model = buildModel('ragged_sum');
    for (const [name, config] of [['ragged_sum', RAGGED], ['ragged_direct', DIRECT], ['ragged_warm', WARM], ['ragged_bad', BAD]] as const) {
      await putModel(repo, name, config, model);
    }
    await putModel(repo, 'ragged_stream', STREAM, buildModel('ragged_running_sum'));
    // One process: the sequences below go over one gRPC channel (the state lives in the process that took the START).
    gw = await startGateway(['--model-repository', repo, '--log-level', 'warn', '--gateway-processes', '1']);
    http = new InferenceHttpClient(httpUrlOf(gw));
    json = new InferenceHttpClient(httpUrlOf(gw), { binary: false });
  });

  afterAll(async () => {
    http?.close();
    json?.close();
    expect(await gw?.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  const check = async (client: InferenceClient, model: string, seed: number, rows: number, n: number): Promise<void> => {
    const { data, sums } = ragged(seed, rows, n);
    const r = await client.infer(model, [input('INPUT', 'FP32', [rows, n], data)]);
    expect(r.output('SUM')?.shape).toEqual([rows, 1]);
    expect([...r.data('SUM', 'FP32')]).toEqual(sums);
    expect(r.output('DOUBLED')?.shape).toEqual([rows, n]);
    expect([...r.data('DOUBLED', 'FP32')]).toEqual(data.map((v) => v * 2));
  };

  it('shows clients only INPUT, with the batch input and output in the config', async () => {
    const meta = await gw.client.getModelMetadata('ragged_sum');
    expect(meta.inputs.map((t) => [t.name, t.shape])).toEqual([['INPUT', [-1, -1]]]);
    expect(meta.outputs.map((t) => t.name)).toEqual(['SUM', 'DOUBLED']);
    const config = (await gw.client.getModelConfig('ragged_sum')).config as ModelConfig;
    expect(config.input[0]?.allowRaggedBatch).toBe(true);
    expect(config.batchInput[0]?.targetName).toEqual(['ITEM_LENGTHS']);
    expect(config.batchOutput[0]?.sourceInput).toEqual(['INPUT']);
  });

  it.each([0, 1, 2])('batches requests of different lengths and batch sizes, each answered its own (%#: gRPC, HTTP binary, HTTP JSON)', async (which) => {
    const client = [gw.client, http, json][which] as InferenceClient;
    const before = (await gw.client.getInferenceStatistics('ragged_sum'))[0];
    const shapes = Array.from({ length: 24 }, (_, i) => [1 + (i % 3), 1 + ((i * 5) % 9)] as const);
    await Promise.all(shapes.map(([rows, n], i) => check(client, 'ragged_sum', which * 100 + i, rows, n)));
    const after = (await gw.client.getInferenceStatistics('ragged_sum'))[0];
    const executions = Number((after?.executionCount ?? 0n) - (before?.executionCount ?? 0n));
    const items = Number((after?.inferenceCount ?? 0n) - (before?.inferenceCount ?? 0n));
    expect(items).toBe(shapes.reduce((a, [rows]) => a + rows, 0));
    // Requests of different shapes shared executions (with equal shapes only, 24 requests of 27 shapes could not).
    expect(executions).toBeLessThan(shapes.length);
  });

  it('serves a ragged model without dynamic batching, one request an execution', async () => {
    await check(gw.client, 'ragged_direct', 1, 3, 4);
    await check(http, 'ragged_direct', 2, 1, 1);
  });

  it('runs warm-up samples as a batch and serves after', async () => {
    const stats = (await gw.client.getInferenceStatistics('ragged_warm'))[0];
    expect(stats?.inferenceCount).toBe(0n);
    await check(gw.client, 'ragged_warm', 3, 2, 6);
  });

  it('refuses a batch input sent by the client, in the words it uses for any unknown input', async () => {
    const error = await failure(gw.client.infer('ragged_sum', [input('INPUT', 'FP32', [1, 2], [1, 2]), input('ITEM_LENGTHS', 'INT32', [1, 1], [2])]));
    expect(error.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(error.message).toContain("input 'ITEM_LENGTHS' is not an input of the model (inputs: INPUT)");
    const shapeless = await failure(http.infer('ragged_sum', [input('INPUT', 'FP32', [3], [1, 2, 3])]));
    expect(shapeless.message).toContain("input 'INPUT': expected shape [-1,-1], got [3]");
    // The server goes on serving.
    await check(gw.client, 'ragged_sum', 4, 1, 3);
  });

  it('keeps a running sum per sequence over chunks of any length, batching chunks of different sequences and lengths', async () => {
    const before = (await gw.client.getInferenceStatistics('ragged_stream'))[0];
    const sequences = [11, 12, 13, 14];
    const steps = 5;
    const totals = await Promise.all(
      sequences.map(async (id, s) => {
        const sums: number[] = [];
        // Every chunk of every sequence in flight at once, on one channel that keeps each sequence's order.
        const answers = await Promise.all(
          Array.from({ length: steps }, (_, i) => {
            const { data } = ragged(id * 10 + i, 1, 1 + ((s * 3 + i * 5) % 7));
            sums.push(data.reduce((a, b) => a + b, 0));
            return gw.client.infer('ragged_stream', [input('INPUT', 'FP32', [1, data.length], data)], { sequence: { id, start: i === 0, end: i === steps - 1 } });
          }),
        );
        return { got: answers.map((r) => r.data('OUTPUT', 'FP32')[0]), sums };
      }),
    );
    for (const { got, sums } of totals) {
      let running = 0;
      expect(got).toEqual(sums.map((x) => (running += x)));
    }
    const after = (await gw.client.getInferenceStatistics('ragged_stream'))[0];
    const executions = Number((after?.executionCount ?? 0n) - (before?.executionCount ?? 0n));
    expect(Number((after?.inferenceCount ?? 0n) - (before?.inferenceCount ?? 0n))).toBe(sequences.length * steps);
    expect(executions).toBeLessThan(sequences.length * steps);
  });

  it('leaves a model whose batch input contradicts the ONNX model UNAVAILABLE, naming the field', async () => {
    const index = await gw.client.repositoryIndex();
    const bad = index.models.find((m) => m.name === 'ragged_bad');
    expect(bad?.state).toBe('UNAVAILABLE');
    expect(bad?.reason).toContain('ragged_bad/config.pbtxt: batch_input[0].data_type: expected the ONNX model\'s type for "ITEM_LENGTHS", TYPE_INT32, got TYPE_FP32');
  });
});
