// Overload of a slow real model (resnet_small: ResNet-18's 602 KB request and
// graph at 1/16 of its compute) through the real CLI, real workers and ONNX
// Runtime: the in-flight byte bound refuses the excess at once, admitted
// requests are answered, and SIGTERM to the process group afterwards ends
// every process (issue 15).
import { setMaxListeners } from 'node:events';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceGrpcClient } from '../../client/grpc-client.js';
import { InferenceError } from '../../client/errors.js';
import { buildModel, slowChainModel } from '../../models/build/test-models.js';
import { type ModelInferRequest, type ModelStreamInferResponse } from '../../proto/gen/inference.js';
import { spawnReadyCli } from '../helpers/gateway-process.js';
import { childPids } from '../helpers/processes.js';

const ROW_BYTES = 3 * 224 * 224 * 4;
const CHAIN_CONFIG = `name: "slow_chain"
platform: "onnxruntime_onnx"
max_batch_size: 4
dynamic_batching { }
instance_group [ { count: 1, kind: KIND_CPU } ]
`;
const CONFIG = `name: "resnet_small"
platform: "onnxruntime_onnx"
max_batch_size: 4
dynamic_batching { }
instance_group [ { count: 1, kind: KIND_CPU } ]
`;

let repo: string;

beforeAll(async () => {
  repo = await mkdtemp(join(tmpdir(), 'fabriek-overload-'));
  await mkdir(join(repo, 'resnet_small', '1'), { recursive: true });
  await writeFile(join(repo, 'resnet_small', '1', 'model.onnx'), buildModel('resnet_small'));
  await writeFile(join(repo, 'resnet_small', 'config.pbtxt'), CONFIG);
  await mkdir(join(repo, 'slow_chain', '1'), { recursive: true });
  await writeFile(join(repo, 'slow_chain', '1', 'model.onnx'), buildModel('slow_chain'));
  await writeFile(join(repo, 'slow_chain', 'config.pbtxt'), CHAIN_CONFIG);
  // Eight times slow_chain's depth (one 1 MB weight, shared): a batch of 4 in tens of ms, so a queue of a few
  // batches takes longer than the client needs to send them.
  await mkdir(join(repo, 'slower_chain', '1'), { recursive: true });
  await writeFile(join(repo, 'slower_chain', '1', 'model.onnx'), slowChainModel('slower_chain', 512, 2048));
  await writeFile(join(repo, 'slower_chain', 'config.pbtxt'), CHAIN_CONFIG.replace('slow_chain', 'slower_chain'));
});

afterAll(async () => {
  await rm(repo, { recursive: true, force: true });
});

interface Gateway {
  readonly pid: number;
  readonly readyLine: string;
  readonly client: InferenceGrpcClient;
  readonly exited: Promise<number | null>;
  stderr(): string;
}

async function serve(extra: readonly string[]): Promise<Gateway> {
  const cli = await spawnReadyCli(
    ['serve', '--model-repository', repo, '--grpc-address', '127.0.0.1', '--grpc-port', '0', '--allow-http', 'false', '--allow-metrics', 'false', '--workers', '1', ...extra],
    'gateway',
    90_000,
    true,
  );
  const port = Number(/gRPC on [^ ;]+:(\d+)/.exec(cli.readyLine)?.[1]);
  const pid = cli.child.pid;
  if (pid === undefined) throw new Error('gateway has no pid');
  return { pid, readyLine: cli.readyLine, client: new InferenceGrpcClient(`127.0.0.1:${port}`), exited: cli.exited, stderr: cli.stderr };
}

const image = new Float32Array(3 * 224 * 224).fill(0.5);

interface Outcome {
  readonly code: number;
  readonly ms: number;
  /** The error's message ('' when answered). */
  readonly message: string;
}

/** A call's outcome, timed from now. */
function outcome(call: Promise<unknown>): Promise<Outcome> {
  const t0 = performance.now();
  return call.then(
    () => ({ code: status.OK, ms: performance.now() - t0, message: '' }),
    (error: unknown) => ({ code: error instanceof InferenceError ? error.code : -1, ms: performance.now() - t0, message: String((error as Error).message) }),
  );
}

function infer(client: InferenceGrpcClient, timeoutMs: number, signal?: AbortSignal): Promise<Outcome> {
  return outcome(client.infer('resnet_small', [{ name: 'image', datatype: 'FP32', shape: [1, 3, 224, 224], data: image }], { timeoutMs, ...(signal ? { signal } : {}) }));
}

const row = new Float32Array(512).fill(0.25);

function chain(client: InferenceGrpcClient, timeoutMs: number): Promise<Outcome> {
  return outcome(client.infer('slow_chain', [{ name: 'input', datatype: 'FP32', shape: [1, 512], data: row }], { timeoutMs }));
}

/** Serves with `extra` flags for `run`, then SIGTERM to the process group: the gateway must exit 0. */
async function servedThenStopped(extra: readonly string[], run: (gw: Gateway) => Promise<void>): Promise<void> {
  const gw = await serve(extra);
  try {
    await run(gw);
  } finally {
    gw.client.close();
    process.kill(-gw.pid, 'SIGTERM');
  }
  expect(await gw.exited).toBe(0);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('overload of a slow model', () => {
  it('refuses requests past --max-inflight-bytes at once and answers the admitted ones', async () => {
    // 12 requests' worth of bytes: the rest of a burst of 150 is refused from its metadata.
    const gw = await serve(['--max-inflight-bytes', String(12 * ROW_BYTES)]);
    try {
      // One request first: the gate learns the typical request size (until then it counts 1 MiB each).
      expect((await infer(gw.client, 60_000)).code).toBe(status.OK);
      const outcomes = await Promise.all(Array.from({ length: 150 }, () => infer(gw.client, 60_000)));
      const ok = outcomes.filter((o) => o.code === status.OK);
      const refused = outcomes.filter((o) => o.code === status.RESOURCE_EXHAUSTED);
      expect(ok.length + refused.length, JSON.stringify(outcomes.filter((o) => o.code !== status.OK && o.code !== status.RESOURCE_EXHAUSTED))).toBe(150);
      expect(ok.length).toBeGreaterThanOrEqual(12);
      expect(refused.length).toBeGreaterThan(0);
      // Refusals do not wait for the model: the fastest half of them come back before the slowest answer.
      const refusedMs = refused.map((o) => o.ms).sort((a, b) => a - b);
      const slowestOk = Math.max(...ok.map((o) => o.ms));
      expect(refusedMs[Math.floor(refusedMs.length / 2)]).toBeLessThan(slowestOk);
      // And the server is still fine afterwards.
      expect((await infer(gw.client, 60_000)).code).toBe(status.OK);
    } finally {
      gw.client.close();
      process.kill(-gw.pid, 'SIGKILL');
    }
  }, 180_000);

  it('bounds a ModelStreamInfer stream\'s requests by --max-inflight-bytes too: the excess answered RESOURCE_EXHAUSTED at once, the stream goes on', async () => {
    const gw = await serve(['--max-inflight-bytes', String(12 * ROW_BYTES)]);
    try {
      const request = (id: string): ModelInferRequest => ({
        modelName: 'resnet_small',
        modelVersion: '',
        id,
        parameters: {},
        inputs: [{ name: 'image', datatype: 'FP32', shape: [1n, 3n, 224n, 224n], parameters: {}, contents: undefined }],
        outputs: [],
        rawInputContents: [Buffer.from(image.buffer, image.byteOffset, image.byteLength)],
      });
      const stream = (count: number): Promise<{ answered: number; refused: string[]; status: number }> =>
        new Promise((resolve) => {
          const call = gw.client.raw.modelStreamInfer();
          let answered = 0;
          const refused: string[] = [];
          call.on('data', (r: ModelStreamInferResponse) => (r.errorMessage === '' ? (answered += 1) : refused.push(r.errorMessage)));
          call.on('status', (s: { code: number }) => resolve({ answered, refused, status: s.code }));
          call.on('error', () => {});
          for (let i = 0; i < count; i++) call.write(request(String(i)));
          call.end();
        });
      // 60 images (36 MB) written at once against a bound of 12.
      const burst = await stream(60);
      expect(burst.status).toBe(status.OK);
      expect(burst.answered + burst.refused.length).toBe(60);
      expect(burst.answered).toBeGreaterThanOrEqual(12);
      expect(burst.refused.length).toBeGreaterThan(0);
      expect(burst.refused[0]).toMatch(/^server overloaded: \d+ requests hold \d+ bytes in flight; admitting \d+ more would pass --max-inflight-bytes \d+$/);
      // Every hold was given back: a later stream is served whole.
      const after = await stream(3);
      expect([after.status, after.answered]).toEqual([status.OK, 3]);
    } finally {
      gw.client.close();
      process.kill(-gw.pid, 'SIGKILL');
    }
  }, 180_000);

  it('sheds fast what cannot finish before its deadline, never computes it, answers the admitted in time, and exits on SIGTERM', async () => {
    await servedThenStopped([], async (gw) => {
      // Warm-up: the cost model learns this machine's time for a row.
      for (let i = 0; i < 3; i++) expect((await chain(gw.client, 60_000)).code).toBe(status.OK);
      const one = Math.max(...(await Promise.all([chain(gw.client, 60_000), chain(gw.client, 60_000)])).map((o) => o.ms));
      // A deadline a few executions long, and about five times more requests than fit in it at 4 rows a batch
      // (a fixed burst fits in it or not depending on how fast this shared machine runs at the time).
      const deadlineMs = Math.max(1_000, Math.round(8 * one));
      const burst = Math.min(600, Math.max(150, Math.ceil((5 * 4 * deadlineMs) / one)));
      const outcomes = await Promise.all(Array.from({ length: burst }, () => chain(gw.client, deadlineMs)));
      const by = (code: number): Outcome[] => outcomes.filter((o) => o.code === code);
      const ok = by(status.OK);
      const shed = by(status.UNAVAILABLE);
      const late = by(status.DEADLINE_EXCEEDED);
      expect(ok.length + shed.length + late.length, JSON.stringify(outcomes)).toBe(burst);
      expect(ok.length).toBeGreaterThan(0);
      // How many fit before the deadline depends on how fast this shared machine runs at that moment (the
      // warm-up may have run slower than the burst): some are shed, and more of the misses are shed than late.
      expect(shed.length).toBeGreaterThan(0);
      expect(shed.length).toBeGreaterThan(late.length);
      expect(late.length).toBeLessThan(ok.length + shed.length);
      // Answered ones about in time (this client, hundreds of calls at once on a shared machine, reads answers late by up to ~150 ms).
      for (const o of ok) expect(o.ms).toBeLessThan(deadlineMs * 1.5);
      // Shed ones fast: most well before the deadline.
      const shedMs = shed.map((o) => o.ms).sort((a, b) => a - b);
      expect(shedMs[Math.floor(shedMs.length / 2)]).toBeLessThan(deadlineMs * 0.9);
      // Statistics: every row computed was a warm-up, an answer, or one that ran late; no shed one.
      const stats = (await gw.client.modelStatistics('slow_chain')).modelStats[0];
      const computed = (stats?.batchStats ?? []).reduce((n, b) => n + Number(b.batchSize) * Number(b.computeInfer?.count ?? 0n), 0);
      expect(computed).toBeLessThanOrEqual(5 + ok.length + late.length);
      expect(computed).toBeGreaterThanOrEqual(5 + ok.length);
      console.log(
        `shedding: one request ${Math.round(one)} ms; ${burst} at once with a ${deadlineMs} ms deadline: ${ok.length} answered ` +
          `(slowest ${Math.round(Math.max(...ok.map((o) => o.ms)))} ms), ${shed.length} shed (median ${Math.round(shedMs[Math.floor(shedMs.length / 2)] ?? 0)} ms), ` +
          `${late.length} late; ${computed} rows computed in all`,
      );
    });
  }, 180_000);

  it('sheds behind a standing queue what would wait over half its deadline, though in time, and keeps the next two batches', async () => {
    await servedThenStopped([], async (gw) => {
      const slower = (timeoutMs: number): Promise<Outcome> =>
        outcome(gw.client.infer('slower_chain', [{ name: 'input', datatype: 'FP32', shape: [1, 512], data: row }], { timeoutMs }));
      for (let i = 0; i < 5; i++) expect((await slower(60_000)).code).toBe(status.OK);
      // A batch of 4 (four at once ride together), as this client sees it.
      const batchMs = Math.max(...(await Promise.all([0, 1, 2, 3].map(() => slower(60_000)))).map((o) => o.ms));
      // A burst whose queue takes longer than its deadline: the batches past the first two whose wait passes half
      // of it are shed by this rule, those past the deadline itself by the deadline's. Thrice, since the time seen
      // by the client holds the way to the worker and back, which the batches in a queue do not each add.
      const deadlineMs = Math.max(400, Math.round(6 * batchMs));
      const burst = Math.min(240, 4 * Math.ceil((3 * deadlineMs) / batchMs));
      const outcomes = await Promise.all(Array.from({ length: burst }, () => slower(deadlineMs)));
      const codes = new Set(outcomes.map((o) => o.code));
      for (const code of codes) expect([status.OK, status.UNAVAILABLE, status.RESOURCE_EXHAUSTED, status.DEADLINE_EXCEEDED], JSON.stringify(outcomes)).toContain(code);
      const standing = outcomes.filter((o) => o.code === status.UNAVAILABLE && o.message.includes('so it would not run in the next 2 batches per instance'));
      expect(standing.length, JSON.stringify(outcomes)).toBeGreaterThan(0);
      for (const o of standing) {
        // Shed though its expected finish was within its deadline (and its 5 % margin), past half of it.
        const m = /it would finish in ([\d.]+) ms, past half of the ([\d.]+) ms to its deadline/.exec(o.message);
        expect(m, o.message).not.toBeNull();
        const [finish, until] = [Number(m?.[1]), Number(m?.[2])];
        expect(finish).toBeGreaterThan(until / 2);
        expect(finish).toBeLessThanOrEqual(until * 1.05);
      }
      // The running batch and the two behind it are never shed by it.
      const ok = outcomes.filter((o) => o.code === status.OK).length;
      expect(ok, JSON.stringify(outcomes)).toBeGreaterThanOrEqual(9);
      console.log(`standing queue: a batch of 4 ${Math.round(batchMs)} ms, ${burst} at once with a ${deadlineMs} ms deadline: ${ok} answered, ${standing.length} shed behind the queue, codes ${[...codes].map((c) => status[c]).join(', ')}`);
    });
  }, 120_000);

  it('under a sustained overload whose requests are shed, stops admitting what it would shed: refused from the metadata instead, and admits again afterwards', async () => {
    await servedThenStopped(['--allow-metrics', 'true', '--metrics-port', '0'], async (gw) => {
      for (let i = 0; i < 3; i++) expect((await chain(gw.client, 60_000)).code).toBe(status.OK);
      const one = Math.max(...(await Promise.all([chain(gw.client, 60_000), chain(gw.client, 60_000)])).map((o) => o.ms));
      // 200 callers in a closed loop, each with a deadline of a few executions: far more than fits, so the queue sheds.
      const deadlineMs = Math.max(200, Math.round(4 * one));
      const until = performance.now() + 2_500;
      const outcomes: Outcome[] = [];
      await Promise.all(
        Array.from({ length: 200 }, async () => {
          while (performance.now() < until) {
            const o = await chain(gw.client, deadlineMs);
            outcomes.push(o);
            // A refused caller backs off a little, as a client honouring the pushback does.
            if (o.code === status.RESOURCE_EXHAUSTED) await new Promise((r) => setTimeout(r, 20));
          }
        }),
      );
      const count = (code: number): number => outcomes.filter((o) => o.code === code).length;
      const codes = new Set(outcomes.map((o) => o.code));
      for (const c of codes) expect([status.OK, status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.RESOURCE_EXHAUSTED]).toContain(c);
      expect(count(status.OK)).toBeGreaterThan(0);
      // The gate learned from the sheds: it refused from the metadata, saying why.
      const refusals = outcomes.filter((o) => o.code === status.RESOURCE_EXHAUSTED).map((o) => o.message);
      expect(refusals.length).toBeGreaterThan(0);
      expect(refusals[0]).toMatch(/server overloaded: \d+ requests hold \d+ bytes in flight; requests it admitted lately were shed or timed out before they ran, so the gateway admits about \d+ bytes now for requests with deadlines up to \d+ ms \(of --max-inflight-bytes 268435456\)/);
      // /metrics shows the bound it learned.
      const metricsPort = /metrics on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1];
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const admit = Number(/^fabriek_inflight_admit_bytes (\S+)$/m.exec(text)?.[1]);
      expect(admit).toBeGreaterThan(0);
      expect(admit).toBeLessThan(268435456);
      expect(text).toMatch(/^fabriek_inflight_requests \d+$/m);
      // And once the flood is gone, a closed loop without deadlines is admitted in full.
      const after = await Promise.all(
        Array.from({ length: 8 }, async () => {
          const codes: number[] = [];
          for (let i = 0; i < 5; i++) codes.push((await chain(gw.client, 60_000)).code);
          return codes;
        }),
      );
      expect(after.flat().every((c) => c === status.OK)).toBe(true);
      console.log(
        `learned admission: one request ${Math.round(one)} ms, deadline ${deadlineMs} ms, 200 callers for 2.5 s: ${count(status.OK)} answered, ` +
          `${count(status.UNAVAILABLE)} shed, ${count(status.DEADLINE_EXCEEDED)} late, ${count(status.RESOURCE_EXHAUSTED)} refused from the metadata`,
      );
    });
  }, 120_000);

  it('learns the same over HTTP from requests with Timeout-Ms: 429 from the headers, with the deadlines it holds', async () => {
    await servedThenStopped(['--allow-http', 'true', '--http-address', '127.0.0.1', '--http-port', '0'], async (gw) => {
      const port = /HTTP on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1];
      const url = `http://127.0.0.1:${port}/v2/models/slow_chain/infer`;
      const body = JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 512], data: Array.from(row) }] });
      const post = (timeoutMs: number): Promise<{ status: number; text: string }> =>
        fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json', 'timeout-ms': String(timeoutMs) } }).then(async (r) => ({ status: r.status, text: await r.text() }));
      for (let i = 0; i < 3; i++) expect((await post(60_000)).status).toBe(200);
      // At least 2 s, and on until the gate has refused from the headers what it learned (at most 8 s): on a busy
      // machine the sheds it learns from come later (CI once saw none in a fixed 2 s).
      const start = performance.now();
      const isLearned = (a: { status: number; text: string }): boolean => a.status === 429 && a.text.includes('requests it admitted lately were shed or timed out before they ran');
      const answers: { status: number; text: string }[] = [];
      let seen = false;
      const going = (): boolean => {
        const t = performance.now() - start;
        return t < 2_000 || (t < 8_000 && !seen);
      };
      await Promise.all(
        Array.from({ length: 100 }, async () => {
          while (going()) {
            const a = await post(150);
            answers.push(a);
            seen ||= isLearned(a);
            if (a.status === 429) await new Promise((r) => setTimeout(r, 20));
          }
        }),
      );
      const statuses = new Set(answers.map((a) => a.status));
      // Answered, refused, shed (503) or past the deadline (400, Triton's mapping of DEADLINE_EXCEEDED).
      for (const s of statuses) expect([200, 429, 503, 400]).toContain(s);
      expect(answers.filter((a) => a.status === 200).length).toBeGreaterThan(0);
      const learned = answers.filter(isLearned);
      const tally = [...statuses].map((st) => `${st}: ${answers.filter((a) => a.status === st).length}`).join(', ');
      expect(learned.length, `answers in ${Math.round(performance.now() - start)} ms: ${tally}`).toBeGreaterThan(0);
      expect(learned[0]?.text).toMatch(/admits about \d+ bytes now for requests with deadlines up to \d+ ms \(of --max-inflight-bytes 268435456\)/);
      // A caller with far more time to spare is not held by what the impatient ones taught it.
      expect((await post(60_000)).status).toBe(200);
    });
  }, 120_000);

  it('exits on SIGTERM to its process group right after an overload whose client went away, every time', async () => {
    const runs = 3;
    const exitTimeoutSecs = 3;
    for (let run = 0; run < runs; run++) {
      const gw = await serve(['--exit-timeout-secs', String(exitTimeoutSecs), '--max-inflight-bytes', String(64 * ROW_BYTES)]);
      const workers = childPids(gw.pid);
      expect(workers.length).toBeGreaterThan(0);
      const abort = new AbortController();
      // One signal for all 120 calls, each listening until it ends (Node warns past 10).
      setMaxListeners(120, abort.signal);
      const calls = Array.from({ length: 120 }, () => infer(gw.client, 30_000, abort.signal));
      // Work is running once the first request is answered.
      await Promise.race(calls);
      const t0 = performance.now();
      process.kill(-gw.pid, 'SIGTERM');
      // The load generator goes away at once, its requests unanswered.
      abort.abort();
      gw.client.close();
      const code = await Promise.race([gw.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), (exitTimeoutSecs + 15) * 1000))]);
      const ms = performance.now() - t0;
      if (code === 'hung') process.kill(-gw.pid, 'SIGKILL');
      expect(code, `run ${run + 1}: gateway still running ${Math.round(ms)} ms after SIGTERM; stderr:\n${gw.stderr().slice(-4000)}`).toBe(0);
      for (const pid of workers) expect(isAlive(pid), `run ${run + 1}: worker ${pid} outlived the gateway`).toBe(false);
      expect(gw.stderr()).not.toContain('worker exited; restarting');
      await Promise.all(calls);
    }
  }, 240_000);
});
