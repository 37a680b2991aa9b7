import { workerData } from 'node:worker_threads';
import type ort from 'onnxruntime-node';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { fromOrtTensor, toOrtTensor } from './ort-convert.js';
import { openSession } from './ort-session.js';
import { type BatchOutput, type BatchTask, type SessionInfo, type ThreadInit } from './thread-protocol.js';

// The piscina thread file of one model instance: it owns exactly one
// InferenceSession, opened from `workerData` as soon as the thread starts.
// session.run() and session creation block this thread's event loop, which is
// why they live here and not on the main thread that talks gRPC.
// Tasks (piscina `name`): `info` (await the session, report metadata),
// `run` (one batch), `release` (free the session before the pool is destroyed).

function asThreadInit(value: unknown): ThreadInit {
  if (typeof value !== 'object' || value === null || !('label' in value) || !('model' in value) || !('options' in value)) {
    throw new TypeError('ort-thread: workerData is not a ThreadInit (this file must be run by InstancePool)');
  }
  return value as ThreadInit;
}

// Piscina awaits the handler's first load before the thread reports ready, but
// then blocks the idle thread in Atomics.wait; session creation continues when
// the first task (`info`, sent by InstancePool.start) wakes the loop.
const opened = openSession(asThreadInit(workerData));
// The failure reaches the caller through `info`; do not crash the thread on it.
opened.catch(() => undefined);

/** Resolves once the session is open; rejects with the load error. */
export async function info(): Promise<SessionInfo> {
  return (await opened).info;
}

/** A result whose ArrayBuffers piscina moves instead of cloning. */
class TransferredOutput {
  readonly #value: BatchOutput;
  readonly #buffers: ArrayBuffer[];
  constructor(value: BatchOutput, buffers: ArrayBuffer[]) {
    this.#value = value;
    this.#buffers = buffers;
  }
  get [transferableSymbol](): object {
    return this.#buffers;
  }
  get [valueSymbol](): object {
    return this.#value;
  }
}

/** Runs one after another (the pool hands this thread the next task early): the timings stay per run. */
let previous: Promise<unknown> = Promise.resolve();

export function run(task: BatchTask): Promise<unknown> {
  const result = previous.then(() => runNow(task));
  previous = result.catch(() => undefined);
  return result;
}

async function runNow(task: BatchTask): Promise<unknown> {
  const { session } = await opened;
  const feeds: Record<string, ort.Tensor> = {};
  for (const input of task.inputs) feeds[input.name] = toOrtTensor(input);
  const runStartNs = process.hrtime.bigint();
  const results = task.outputs.length > 0 ? await session.run(feeds, [...task.outputs]) : await session.run(feeds);
  const runEndNs = process.hrtime.bigint();
  const buffers: ArrayBuffer[] = [];
  const outputs = Object.entries(results).map(([name, value]) => fromOrtTensor(name, value, buffers));
  return move(new TransferredOutput({ outputs, runStartNs, runEndNs }, buffers));
}

export async function release(): Promise<void> {
  const { session } = await opened;
  await session.release();
}

export default run;
