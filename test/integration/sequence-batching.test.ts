import { status as GrpcStatus } from '@grpc/grpc-js';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceGrpcClient } from '../../client/grpc-client.js';
import { InferenceHttpClient } from '../../client/http-client.js';
import { type InferenceClient, type SequenceOptions } from '../../client/inference-client.js';
import { input } from '../../client/typed-tensors.js';
import { buildModel, EXAMPLE_CONFIGS } from '../../models/build/test-models.js';
import { type ModelConfig } from '../../proto/gen/model_config.js';
import { type ModelInferRequest, type ModelStreamInferResponse } from '../../proto/gen/inference.js';
import { failure, zerosRequest } from '../helpers/call-outcome.js';
import { sampleValue } from '../helpers/metrics-text.js';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { type GatewayProcess, httpUrlOf, startGateway } from '../helpers/gateway-process.js';
import { putModel } from '../helpers/model-dir.js';

// Triton's sequence batcher on real stateful models: running_sum adds each
// request's INPUT to the sum the server kept for its sequence (implicit
// state) and echoes the control inputs the server filled.

/** running_sum's config with other sequence_batching settings. */
const withSequence = (name: string, sequence: string): string => `name: "${name}"
max_batch_size: 8
sequence_batching {
  ${sequence}
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
  state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
}
`;

// Two sequences at once: without max_candidate_sequences, the direct strategy's one slot per instance holds one.
const UNBATCHED_CONFIG = `name: "unbatched"
max_batch_size: 0
sequence_batching {
  oldest { max_candidate_sequences: 2 }
  state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
}
`;

/** The unbatched sum starting from an initial_state file (`file`), two sequences at once. */
const fromFile = (name: string, file: string): string => `name: "${name}"
max_batch_size: 0
sequence_batching {
  oldest { max_candidate_sequences: 2 }
  state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 1 ] initial_state [ { name: "hundred" data_type: TYPE_FP32 dims: [ 1 ] data_file: "${file}" } ] } ]
}
`;

const BAD_CONTROL_CONFIG = `name: "bad_control"
max_batch_size: 8
sequence_batching {
  control_input [ { name: "BEGIN" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] } ]
}
`;

const CACHED_CONFIG = `name: "cached_sequence"
max_batch_size: 0
response_cache { enable: true }
sequence_batching {
  state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
}
`;

interface Answer {
  readonly sum: number;
  readonly controls: readonly number[];
  readonly corrid: bigint;
}

describe('sequence batching', () => {
  let repo: string;
  let gw: GatewayProcess;
  let http: InferenceHttpClient;
  let httpJson: InferenceHttpClient;

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-sequence-'));
    const model = buildModel('running_sum');
    await putModel(repo, 'running_sum', EXAMPLE_CONFIGS.running_sum, model);
    await putModel(repo, 'one_at_a_time', withSequence('one_at_a_time', 'oldest { max_candidate_sequences: 1 } max_sequence_idle_microseconds: 5000000'), model);
    await putModel(repo, 'short_idle', withSequence('short_idle', 'max_sequence_idle_microseconds: 300000'), model);
    await putModel(repo, 'unbatched', UNBATCHED_CONFIG, buildModel('running_sum_unbatched'));
    await putModel(repo, 'bad_control', BAD_CONTROL_CONFIG, model);
    for (const [name, file] of [['from_hundred', 'hundred.bin'], ['short_file', 'short.bin'], ['missing_file', 'nowhere.bin']] as const) {
      await putModel(repo, name, fromFile(name, file), buildModel('running_sum_unbatched'));
      await mkdir(join(repo, name, 'initial_state'), { recursive: true });
    }
    await writeFile(join(repo, 'from_hundred', 'initial_state', 'hundred.bin'), Buffer.from(Float32Array.of(100).buffer));
    await writeFile(join(repo, 'short_file', 'initial_state', 'short.bin'), Buffer.alloc(2));
    await putModel(repo, 'cached_sequence', CACHED_CONFIG, buildModel('running_sum_unbatched'));
    // One process whatever FABRIEK_TEST_GATEWAY_PROCESSES says: these tests send one sequence over several connections,
    // which only one process serves (the state lives in the process; several are tested below).
    gw = await startGateway(['--model-repository', repo, '--log-level', 'warn', '--cache-config', 'local,size=1048576', '--gateway-processes', '1']);
    http = new InferenceHttpClient(httpUrlOf(gw));
    httpJson = new InferenceHttpClient(httpUrlOf(gw), { binary: false });
  });

  afterAll(async () => {
    http?.close();
    httpJson?.close();
    expect(await gw?.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  const scrape = async (): Promise<string> => {
    const port = /metrics on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1];
    return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  };

  const clients = (): [string, InferenceClient][] => [
    ['gRPC', gw.client],
    ['HTTP binary', http],
    ['HTTP JSON', httpJson],
  ];

  const step = async (client: InferenceClient, model: string, value: number, sequence: SequenceOptions): Promise<Answer> => {
    const r = await client.infer(model, [input('INPUT', 'FP32', [1, 1], [value])], { sequence });
    return { sum: r.data('OUTPUT', 'FP32')[0] as number, controls: [...r.data('CONTROLS', 'INT32')], corrid: r.data('CORRELATION_ID', 'UINT64')[0] as bigint };
  };

  it('lists only what clients send and get in the metadata: no control or state tensors', async () => {
    const meta = await gw.client.getModelMetadata('running_sum');
    expect(meta.inputs.map((t) => t.name)).toEqual(['INPUT']);
    expect(meta.outputs.map((t) => t.name)).toEqual(['OUTPUT', 'CONTROLS', 'CORRELATION_ID']);
    const config = (await gw.client.getModelConfig('running_sum')).config as ModelConfig;
    expect(config.schedulingChoice?.$case).toBe('sequenceBatching');
    const json = (await http.getModelConfig('running_sum')).config as { sequence_batching?: { state?: { input_name: string }[] } };
    expect(json.sequence_batching?.state?.[0]?.input_name).toBe('STATE_IN');
  });

  it.each([0, 1, 2])('keeps each sequence\'s state and fills its controls, sequences interleaved (%#: gRPC, HTTP binary, HTTP JSON)', async (which) => {
    const [, client] = clients()[which] as [string, InferenceClient];
    const sequences = Array.from({ length: 6 }, (_, s) => 1000 + which * 100 + s);
    const steps = 5;
    const send = (id: number, s: number, i: number): Promise<Answer> => step(client, 'running_sum', (s + 1) * 10 + i, { id, start: i === 0, end: i === steps - 1 });
    // gRPC: every request of every sequence in flight at once, on one connection that keeps their order; the server
    // runs each sequence's one at a time. HTTP: a pool's connections keep no order between them, so each sequence
    // waits for its answers (as Triton's clients do), while the sequences run side by side.
    const answers = await Promise.all(
      sequences.map(async (id, s) => {
        if (which === 0) return Promise.all(Array.from({ length: steps }, (_, i) => send(id, s, i)));
        const out: Answer[] = [];
        for (let i = 0; i < steps; i++) out.push(await send(id, s, i));
        return out;
      }),
    );
    answers.forEach((seq, s) => {
      let sum = 0;
      seq.forEach((a, i) => {
        sum += (s + 1) * 10 + i;
        expect(a.sum).toBe(sum);
        expect(a.controls).toEqual([i === 0 ? 1 : 0, i === steps - 1 ? 1 : 0, 1]);
        expect(a.corrid).toBe(BigInt(sequences[s] as number));
      });
    });
  });

  it('batches requests of different sequences together', async () => {
    const ids = Array.from({ length: 8 }, (_, i) => 2000 + i);
    await Promise.all(ids.map((id) => step(gw.client, 'running_sum', 1, { id, start: true })));
    const before = (await gw.client.getInferenceStatistics('running_sum'))[0];
    await Promise.all(ids.map((id) => step(gw.client, 'running_sum', 1, { id, end: true })));
    const after = (await gw.client.getInferenceStatistics('running_sum'))[0];
    const executions = Number((after?.executionCount ?? 0n) - (before?.executionCount ?? 0n));
    const inferences = Number((after?.inferenceCount ?? 0n) - (before?.inferenceCount ?? 0n));
    expect(inferences).toBe(8);
    expect(executions).toBeLessThan(8);
  });

  it('starts afresh when START comes again for an open sequence', async () => {
    expect((await step(http, 'running_sum', 5, { id: 3000, start: true })).sum).toBe(5);
    expect((await step(http, 'running_sum', 5, { id: 3000 })).sum).toBe(10);
    expect((await step(http, 'running_sum', 7, { id: 3000, start: true })).sum).toBe(7);
    expect((await step(http, 'running_sum', 1, { id: 3000, end: true })).sum).toBe(8);
  });

  it('serves a model without controls or a batch dimension, with string correlation IDs', async () => {
    const run = async (client: InferenceClient, id: string, value: number, flags: Omit<SequenceOptions, 'id'>): Promise<number> =>
      (await client.infer('unbatched', [input('INPUT', 'FP32', [1], [value])], { sequence: { id, ...flags } })).data('OUTPUT', 'FP32')[0] as number;
    expect(await run(gw.client, 'caller-a', 2, { start: true })).toBe(2);
    expect(await run(http, 'caller-b', 100, { start: true })).toBe(100);
    expect(await run(http, 'caller-a', 3, {})).toBe(5);
    expect(await run(gw.client, 'caller-b', 1, { end: true })).toBe(101);
    expect(await run(gw.client, 'caller-a', 4, { end: true })).toBe(9);
  });

  it('keeps a sequence on a ModelStreamInfer stream, its requests written without waiting', async () => {
    const request = (value: number, flags: Record<string, boolean>): ModelInferRequest => ({
      ...zerosRequest('running_sum', ['INPUT'], 1),
      id: String(value),
      parameters: {
        sequence_id: { parameterChoice: { $case: 'uint64Param', value: 5000n } },
        ...Object.fromEntries(Object.entries(flags).map(([k, v]) => [k, { parameterChoice: { $case: 'boolParam' as const, value: v } }])),
      },
      rawInputContents: [Buffer.from(Float32Array.of(value).buffer)],
    });
    const answers: ModelStreamInferResponse[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = gw.client.raw.modelStreamInfer();
      call.on('data', (a: ModelStreamInferResponse) => answers.push(a));
      call.on('error', reject);
      call.on('end', resolve);
      call.write(request(1, { sequence_start: true }));
      call.write(request(2, {}));
      call.write(request(3, { sequence_end: true }));
      call.end();
    });
    expect(answers.map((a) => a.errorMessage)).toEqual(['', '', '']);
    const sums = answers.map((a) => [a.inferResponse?.id, Buffer.from(a.inferResponse?.rawOutputContents[0] ?? Buffer.alloc(4)).readFloatLE(0)]);
    expect(sums).toEqual([['1', 1], ['2', 3], ['3', 6]]);
  });

  it('runs sequences past max_candidate_sequences from the backlog once a running one ends', async () => {
    expect((await step(gw.client, 'one_at_a_time', 1, { id: 1, start: true })).sum).toBe(1);
    let secondDone = false;
    const second = step(http, 'one_at_a_time', 50, { id: 2, start: true, end: true }).then((a) => {
      secondDone = true;
      return a;
    });
    await sleep(300);
    expect(secondDone).toBe(false);
    const batching = (await (await fetch(`${httpUrlOf(gw)}/v2/models/one_at_a_time/batching`)).json()) as { sequences: { candidates: number; backlog: number } };
    expect(batching.sequences).toEqual({ candidates: 1, backlog: 1 });
    expect((await step(gw.client, 'one_at_a_time', 2, { id: 1, end: true })).sum).toBe(3);
    expect((await second).sum).toBe(50);
  });

  it('ends a sequence idle past max_sequence_idle_microseconds, and refuses its next request without START', async () => {
    const series = (state: string): string => `fabriek_sequences{model="short_idle",version="1",state="${state}"}`;
    const ended = 'fabriek_sequences_ended_idle_total{model="short_idle",version="1"}';
    expect((await step(gw.client, 'short_idle', 1, { id: 9, start: true })).sum).toBe(1);
    expect((await step(gw.client, 'short_idle', 1, { id: 9 })).sum).toBe(2);
    const during = await scrape();
    expect([sampleValue(during, series('running')), sampleValue(during, series('waiting')), sampleValue(during, ended)]).toEqual([1, 0, 0]);
    await sleep(700);
    const after = await scrape();
    expect([sampleValue(after, series('running')), sampleValue(after, ended)]).toEqual([0, 1]);
    const e = await failure(step(gw.client, 'short_idle', 1, { id: 9 }));
    expect(e.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(e.message).toContain("inference request for sequence 9 to model 'short_idle' must specify the START flag on the first request of the sequence");
    expect((await step(gw.client, 'short_idle', 4, { id: 9, start: true, end: true })).sum).toBe(4);
  });

  it.each([0, 1])('refuses requests the sequence batcher cannot take, in Triton\'s words (%#: gRPC, HTTP)', async (which) => {
    const [, client] = clients()[which] as [string, InferenceClient];
    const http400 = which === 1;
    const refused = async (p: Promise<unknown>, words: string): Promise<void> => {
      const e = await failure(p);
      expect(e.code).toBe(GrpcStatus.INVALID_ARGUMENT);
      if (http400) expect(e.httpStatus).toBe(400);
      expect(e.message).toContain(words);
    };
    const one = [input('INPUT', 'FP32', [1, 1], [1])];
    await refused(client.infer('running_sum', one), "inference request to model 'running_sum' must specify a non-zero or non-empty correlation ID");
    await refused(client.infer('running_sum', one, { sequence: { id: 0, start: true } }), 'must specify a non-zero or non-empty correlation ID');
    await refused(client.infer('running_sum', one, { sequence: { id: 4000 + which } }), `inference request for sequence ${4000 + which} to model 'running_sum' must specify the START flag`);
    await refused(
      client.infer('running_sum', [input('INPUT', 'FP32', [2, 1], [1, 2])], { sequence: { id: 4100 + which, start: true } }),
      "inference request to model 'running_sum' must specify batch-size 1 due to requirements of sequence batcher",
    );
    await refused(client.infer('running_sum', one, { sequence: { id: 'words', start: true } }), "must specify an integer correlation ID: its CORRID control input 'CORRID' is UINT64");
    await refused(client.infer('running_sum', one, { parameters: { sequence_id: 5, sequence_start: 'yes' } }), "parameter 'sequence_start': expected a boolean");
    await refused(client.infer('running_sum', one, { parameters: { sequence_id: -3, sequence_start: true } }), "parameter 'sequence_id': expected an unsigned 64-bit integer or a string");
    await refused(client.infer('running_sum', [input('START', 'INT32', [1, 1], [1])], { sequence: { id: 4200 + which, start: true } }), 'START');
    // After its END, the ID names no sequence.
    await step(client, 'running_sum', 1, { id: 4300 + which, start: true, end: true });
    await refused(client.infer('running_sum', one, { sequence: { id: 4300 + which } }), 'must specify the START flag');
    // Refusals left nothing behind: the next sequence runs.
    expect((await step(client, 'running_sum', 6, { id: 4400 + which, start: true, end: true })).sum).toBe(6);
  });

  it('starts each sequence from the initial_state file', async () => {
    const run = async (id: number, value: number, flags: Omit<SequenceOptions, 'id'>): Promise<number> =>
      (await http.infer('from_hundred', [input('INPUT', 'FP32', [1], [value])], { sequence: { id, ...flags } })).data('OUTPUT', 'FP32')[0] as number;
    expect(await run(1, 1, { start: true })).toBe(101);
    expect(await run(1, 2, { end: true })).toBe(103);
    expect(await run(1, 5, { start: true, end: true })).toBe(105);
  });

  it('fails the load of a config whose controls or cache do not fit, naming the field', async () => {
    const index = (await gw.client.repositoryIndex()).models;
    const reason = (name: string): string => index.find((m) => m.name === name)?.reason ?? '';
    expect(index.find((m) => m.name === 'bad_control')?.state).toBe('UNAVAILABLE');
    expect(reason('bad_control')).toContain('sequence_batching.control_input[0].name');
    expect(reason('bad_control')).toContain('"BEGIN"');
    expect(reason('cached_sequence')).toContain('response_cache.enable');
    expect(reason('short_file')).toContain('sequence_batching.state[0].initial_state[0].data_file: expected 4 bytes');
    expect(reason('short_file')).toContain('got 2');
    expect(reason('missing_file')).toContain('sequence_batching.state[0].initial_state[0].data_file: cannot read');
  });
});

describe('sequence batching with several gateway processes', () => {
  let repo: string;
  let gw: GatewayProcess;

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-sequence-processes-'));
    await putModel(repo, 'running_sum', EXAMPLE_CONFIGS.running_sum, buildModel('running_sum'));
    gw = await startGateway(['--model-repository', repo, '--log-level', 'warn', '--gateway-processes', '2']);
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  it('keeps each sequence in one process, whichever connection its requests come over', async () => {
    // Four HTTP clients, a connection each, opened in turn: node:cluster hands them to the two processes in turn.
    // Each sequence's steps go through the clients in turn, so they reach both processes.
    const clients = Array.from({ length: 4 }, () => new InferenceHttpClient(httpUrlOf(gw)));
    try {
      for (const c of clients) await c.isServerReady();
      const ids = Array.from({ length: 6 }, (_, s) => 7000 + s);
      const answers = await Promise.all(
        ids.map(async (id, s) => {
          const out: number[] = [];
          for (let i = 0; i < 4; i++) {
            const client = clients[(s + i) % clients.length] as InferenceHttpClient;
            const r = await client.infer('running_sum', [input('INPUT', 'FP32', [1, 1], [s + 1])], { sequence: { id, start: i === 0, end: i === 3 } });
            out.push(r.data('OUTPUT', 'FP32')[0] as number);
          }
          return out;
        }),
      );
      expect(answers).toEqual(ids.map((_, s) => [1, 2, 3, 4].map((k) => k * (s + 1))));
      const refused = await failure((clients[1] as InferenceHttpClient).infer('running_sum', [input('INPUT', 'FP32', [1, 1], [1])], { sequence: { id: 7001 } }));
      expect(refused.httpStatus).toBe(400);
      expect(refused.message).toContain('must specify the START flag');
    } finally {
      for (const c of clients) c.close();
    }
  });

  it('keeps each sequence in the process its channel reaches, whichever that is', async () => {
    // Each client is a channel of its own, one HTTP/2 connection, which node:cluster hands to either process.
    const clients = Array.from({ length: 4 }, () => new InferenceGrpcClient(gw.address));
    try {
      const sums = await Promise.all(
        clients.map(async (client, c) => {
          const out: number[] = [];
          for (let i = 0; i < 4; i++) {
            const r = await client.infer('running_sum', [input('INPUT', 'FP32', [1, 1], [c + 1])], { sequence: { id: 6000 + c, start: i === 0, end: i === 3 } });
            out.push(r.data('OUTPUT', 'FP32')[0] as number);
          }
          return out;
        }),
      );
      expect(sums).toEqual(clients.map((_, c) => [1, 2, 3, 4].map((k) => k * (c + 1))));
    } finally {
      for (const client of clients) client.close();
    }
  });
});

describe('sequence batching with tenants', () => {
  const KEYS = { a: 'sequence-tenant-a-key-0123', b: 'sequence-tenant-b-key-0123' } as const;
  let repo: string;
  let gw: GatewayProcess;

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-sequence-tenants-'));
    await putModel(repo, 'running_sum', EXAMPLE_CONFIGS.running_sum, buildModel('running_sum'));
    const tenant = (name: string, key: string): string[] => [`  ${name}:`, `    keys: [ "${hashKey(key)}" ]`, '    models: [ "running_sum" ]'];
    await writeFile(join(repo, 'tenants.yaml'), ['tenants:', ...tenant('a', KEYS.a), ...tenant('b', KEYS.b), ''].join('\n'));
    gw = await startGateway(['--model-repository', repo, '--log-level', 'warn', '--tenants', join(repo, 'tenants.yaml')]);
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  it('keeps one ID of two tenants as two sequences: neither continues nor ends the other\'s', async () => {
    const as = (key: string) => ({ metadata: { authorization: `Bearer ${key}` } });
    const run = async (key: string, value: number, flags: Omit<SequenceOptions, 'id'>): Promise<number> =>
      (await gw.client.infer('running_sum', [input('INPUT', 'FP32', [1, 1], [value])], { sequence: { id: 42, ...flags }, ...as(key) })).data('OUTPUT', 'FP32')[0] as number;
    expect(await run(KEYS.a, 1, { start: true })).toBe(1);
    const e = await failure(run(KEYS.b, 5, {}));
    expect(e.message).toContain('must specify the START flag');
    expect(await run(KEYS.b, 100, { start: true })).toBe(100);
    expect(await run(KEYS.a, 2, {})).toBe(3);
    expect(await run(KEYS.b, 1, { end: true })).toBe(101);
    expect(await run(KEYS.a, 3, { end: true })).toBe(6);
  });
});
