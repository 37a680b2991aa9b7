import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { waitFor } from '../helpers/processes.js';
import { sample } from '../helpers/tensor-data.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

interface LogLine {
  msg?: string;
  reqId?: string;
  protocol?: string;
  model?: string;
  version?: string;
  status?: string;
  ms?: number;
}

function requestLines(stderr: string): LogLine[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine)
    .filter((l) => l.msg === 'request');
}

describe('request logs (--log-level debug)', () => {
  let repo: string;
  let gw: GatewayProcess;

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-log-'));
    await mkdir(join(repo, 'identity_fp32', '1'), { recursive: true });
    await copyFile(join(TEST_REPOSITORY, 'identity_fp32', '1', 'model.onnx'), join(repo, 'identity_fp32', '1', 'model.onnx'));
    gw = await startGateway(['--model-repository', repo, '--log-level', 'debug']);
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  it('writes one JSON line per request with its id, model, status and time, and never tensor data', async () => {
    const data = Buffer.from(sample('FP32', 16).raw);
    const request = {
      modelName: 'identity_fp32',
      modelVersion: '',
      id: 'trace-me',
      parameters: {},
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1n, 16n], parameters: {} }],
      outputs: [],
      rawInputContents: [data],
    };
    await gw.client.modelInfer(request);
    await gw.client.modelInfer({ ...request, id: 'bad-one', inputs: [{ ...request.inputs[0]!, datatype: 'INT32' }] }).catch(() => undefined);
    await gw.client.modelInfer({ ...request, id: '' });
    await waitFor(() => requestLines(gw.stderr()).length >= 3, 5_000, 'three request log lines');
    const lines = requestLines(gw.stderr());
    expect(lines.find((l) => l.reqId === 'trace-me')).toMatchObject({ protocol: 'grpc', model: 'identity_fp32', version: '1', status: 'OK' });
    expect(lines.find((l) => l.reqId === 'bad-one')).toMatchObject({ status: 'INVALID_ARGUMENT' });
    const generated = lines.find((l) => l.reqId !== 'trace-me' && l.reqId !== 'bad-one');
    expect(generated?.reqId).toMatch(/^r[0-9a-z]+-[0-9a-z]+$/);
    for (const l of lines) expect(typeof l.ms).toBe('number');
    // No tensor payload in any log line, in any encoding.
    expect(gw.stderr()).not.toContain(data.toString('base64'));
    expect(gw.stderr()).not.toMatch(/rawInputContents|"data"/);
  });
});
