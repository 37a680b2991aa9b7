import { status as GrpcStatus } from '@grpc/grpc-js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceHttpClient } from '../../client/http-client.js';
import { input } from '../../client/typed-tensors.js';
import { buildModel, EXAMPLE_CONFIGS } from '../../models/build/test-models.js';
import { failure } from '../helpers/call-outcome.js';
import { type GatewayProcess, httpUrlOf, startGateway } from '../helpers/gateway-process.js';
import { putModel } from '../helpers/model-dir.js';

// Triton's rules for an ensemble's steps in explicit model control, on the
// real server with two gateway processes (each change must reach both):
// loading an ensemble loads its steps that are not loaded, as dependencies;
// unloading it with unload_dependents unloads those steps too, unless
// another loaded ensemble uses them or they were loaded explicitly.

const IO = `max_batch_size: 4
input [ { name: "A" data_type: TYPE_FP32 dims: [ 16 ] }, { name: "B" data_type: TYPE_FP32 dims: [ 16 ] } ]
`;

const PIPELINE = `name: "pipeline"
platform: "ensemble"
${IO}output [ { name: "SUM" data_type: TYPE_FP32 dims: [ 16 ] } ]
ensemble_scheduling { step [
  { model_name: "add_sub" model_version: -1 input_map { key: "INPUT0" value: "A" } input_map { key: "INPUT1" value: "B" } output_map { key: "OUTPUT0" value: "sum" } },
  { model_name: "identity_fp32" model_version: -1 input_map { key: "INPUT0" value: "sum" } output_map { key: "OUTPUT0" value: "SUM" } }
] }
`;

/** An ensemble of one identity_fp32 step named `step` (a model not in the repository: a missing step). */
const oneStep = (name: string, step: string): string => `name: "${name}"
platform: "ensemble"
max_batch_size: 4
input [ { name: "X" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 16 ] } ]
ensemble_scheduling { step [ { model_name: "${step}" model_version: -1 input_map { key: "INPUT0" value: "X" } output_map { key: "OUTPUT0" value: "Y" } } ] }
`;

const ones = new Float32Array(16).fill(1);

describe('ensemble dependencies in explicit model control', () => {
  let repo: string;
  let gw: GatewayProcess;
  let http: InferenceHttpClient;

  /** The READY models, asked over `times` connections (each may reach either gateway process). */
  const ready = async (): Promise<string[]> => {
    const index = await gw.client.repositoryIndex();
    return index.models.filter((m) => m.state === 'READY').map((m) => m.name).sort();
  };
  const readyOnBoth = async (): Promise<string[]> => {
    const fromHttp = ((await (await fetch(`${httpUrlOf(gw)}/v2/repository/index`, { method: 'POST', body: '{}' })).json()) as { name: string; state: string }[])
      .filter((m) => m.state === 'READY')
      .map((m) => m.name)
      .sort();
    const fromGrpc = await ready();
    expect(fromHttp).toEqual(fromGrpc);
    return fromGrpc;
  };

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-ensemble-deps-'));
    await putModel(repo, 'add_sub', EXAMPLE_CONFIGS.add_sub, buildModel('add_sub'));
    await putModel(repo, 'identity_fp32', undefined, buildModel('identity_fp32'));
    await putModel(repo, 'pipeline', PIPELINE);
    await putModel(repo, 'solo', oneStep('solo', 'identity_fp32'));
    await putModel(repo, 'ghost', oneStep('ghost', 'nowhere'));
    gw = await startGateway(['--model-repository', repo, '--model-control-mode', 'explicit', '--load-model', 'pipeline', '--gateway-processes', '2', '--log-level', 'warn']);
    http = new InferenceHttpClient(httpUrlOf(gw));
  });

  afterAll(async () => {
    http?.close();
    expect(await gw?.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  it('--load-model of an ensemble loads its steps too, and the ensemble serves', async () => {
    expect(await readyOnBoth()).toEqual(['add_sub', 'identity_fp32', 'pipeline']);
    const sum = await gw.client.infer('pipeline', [input('A', 'FP32', [1, 16], ones), input('B', 'FP32', [1, 16], ones)]);
    expect([...sum.data('SUM', 'FP32')]).toEqual(Array(16).fill(2));
    expect((await gw.client.getServerMetadata()).extensions).toContain('model_repository(unload_dependents)');
  });

  it('unload_dependents keeps a step another loaded ensemble uses, and unloads it with the last one', async () => {
    await http.loadModel('solo');
    expect(await readyOnBoth()).toEqual(['add_sub', 'identity_fp32', 'pipeline', 'solo']);
    await gw.client.unloadModel('pipeline', { unloadDependents: true });
    expect(await readyOnBoth()).toEqual(['identity_fp32', 'solo']);
    await http.unloadModel('solo', { unloadDependents: true });
    expect(await readyOnBoth()).toEqual([]);
  });

  it('loading an ensemble through the repository API loads the steps no version serves', async () => {
    await gw.client.loadModel('pipeline');
    expect(await readyOnBoth()).toEqual(['add_sub', 'identity_fp32', 'pipeline']);
  });

  it('without unload_dependents, or for a step loaded explicitly, the steps stay', async () => {
    await gw.client.unloadModel('pipeline');
    expect(await readyOnBoth()).toEqual(['add_sub', 'identity_fp32']);
    await gw.client.loadModel('pipeline');
    // Loaded by name now: explicit, so it stays when the ensemble goes with its dependents.
    await http.loadModel('identity_fp32');
    await http.unloadModel('pipeline', { unloadDependents: true });
    expect(await readyOnBoth()).toEqual(['identity_fp32']);
    await gw.client.unloadModel('identity_fp32', { unloadDependents: true });
    expect(await readyOnBoth()).toEqual([]);
  });

  it('fails the load of an ensemble whose step is not in the repository, naming the step', async () => {
    const error = await failure(gw.client.loadModel('ghost'));
    expect(error.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(error.details).toMatch(/^failed to load 'ghost': step 'nowhere': failed to load 'nowhere': no model directory/);
    expect(await readyOnBoth()).toEqual([]);
  });

  it('refuses unload_dependents of the wrong type, over gRPC and HTTP, and unloads nothing', async () => {
    await gw.client.loadModel('pipeline');
    const request = { repositoryName: '', modelName: 'pipeline', parameters: { unload_dependents: { parameterChoice: { $case: 'stringParam' as const, value: 'true' } } } };
    const grpc = await failure(new Promise((resolve, reject) => gw.client.raw.repositoryModelUnload(request, (e, r) => (e ? reject(e) : resolve(r)))));
    expect(grpc.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(grpc.details).toBe("parameter 'unload_dependents' must be a bool_param, got string_param");
    const res = await fetch(`${httpUrlOf(gw)}/v2/repository/models/pipeline/unload`, { method: 'POST', body: '{"parameters":{"unload_dependents":"yes"}}' });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe(`parameter 'unload_dependents' must be a boolean, got "yes"`);
    expect(await readyOnBoth()).toEqual(['add_sub', 'identity_fp32', 'pipeline']);
  });
});
