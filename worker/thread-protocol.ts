import { type Datatype } from '../core/datatypes.js';

// Messages between the worker's main thread and an ORT thread (ort-thread.ts,
// driven by ort-pool.ts). Everything here must survive structured clone;
// tensor bytes travel as whole ArrayBuffers in the transfer list, so neither
// side copies them.

/** Which execution provider the caller asks for. */
export type DeviceRequest = { readonly kind: 'cpu' } | { readonly kind: 'gpu'; readonly deviceId: number };

export type GraphOptimizationLevel = 'disabled' | 'basic' | 'extended' | 'all';

export interface ThreadSessionOptions {
  readonly intraOpNumThreads: number;
  readonly interOpNumThreads: number;
  readonly graphOptimizationLevel: GraphOptimizationLevel;
  readonly enableCpuMemArena: boolean;
  readonly executionMode: 'sequential' | 'parallel';
  readonly enableMemPattern: boolean;
}

/** Everything an ORT thread needs to open one session (the `open` request). */
export interface ThreadInit {
  /** Label for messages (e.g. "mlp/1#0"). */
  readonly label: string;
  /** A file path, or the model itself (cloned into the thread). */
  readonly model: { readonly path: string } | { readonly bytes: Uint8Array };
  readonly device: DeviceRequest;
  readonly options: ThreadSessionOptions;
}

/** One input or output of the model, as the gateway's validation needs it. */
export interface TensorSpecInfo {
  readonly name: string;
  readonly datatype: Datatype;
  /** -1 for a symbolic or unknown dimension. */
  readonly shape: readonly number[];
  /** Symbolic name per dimension; "" where fixed or unnamed. */
  readonly dimNames: readonly string[];
}

/** What a thread reports once its session is open. */
export interface SessionInfo {
  readonly inputs: readonly TensorSpecInfo[];
  readonly outputs: readonly TensorSpecInfo[];
  /** "cpu", "cuda:N" or "webgpu:0". */
  readonly executionProvider: string;
  /** Why a requested GPU provider was not used; "" when it was (or none was asked). */
  readonly fallbackReason: string;
  /** Why the GPU providers tried before the one that runs failed (CUDA, when WebGPU runs); absent when none did. */
  readonly passedOver?: string;
}

/**
 * A tensor crossing the thread boundary. `data` is a whole ArrayBuffer
 * (offset 0) holding raw little-endian elements, or for BYTES the KServe
 * length-prefixed form; it is transferred, so the sender loses it.
 */
export interface ThreadTensor {
  readonly name: string;
  readonly datatype: Datatype;
  readonly shape: readonly number[];
  readonly data: ArrayBuffer;
}

export interface BatchTask {
  readonly inputs: readonly ThreadTensor[];
  /** Output names to compute; empty means all. */
  readonly outputs: readonly string[];
  /** Report heldNs (inline-runs.ts times an instance's runs while it decides where they run). */
  readonly timed?: boolean;
}

/**
 * Result of a batch. Instants come from process.hrtime.bigint(), which reads
 * the same monotonic clock in every thread, so the main thread can subtract
 * its own instants from them.
 */
export interface BatchOutput {
  readonly outputs: readonly ThreadTensor[];
  /** When the thread took the task up (after any run ahead of it on that thread). */
  readonly taskStartNs: bigint;
  /** When the ORT tensors were ready, just before session.run. */
  readonly runStartNs: bigint;
  /** When session.run returned. */
  readonly runEndNs: bigint;
  /** For a `timed` task: how long it held its thread, the input and output conversions and ONNX Runtime's run. */
  readonly heldNs?: number;
}

/**
 * A request to an ORT thread. `id` names a session within that thread (the
 * pool picks it, and reuses it once the session is closed). A thread answers
 * every request with exactly one ThreadReply, in the order they came: the
 * pool matches answers to requests by that order alone.
 */
export type ThreadRequest =
  | { readonly op: 'open'; readonly id: number; readonly init: ThreadInit }
  | { readonly op: 'run'; readonly id: number; readonly task: BatchTask }
  | { readonly op: 'close'; readonly id: number };

/** A request that failed in the thread (a load or run error), by its message. */
export interface ThreadFailure {
  readonly error: string;
}

/** open → SessionInfo, run → BatchOutput, close → null; any of them may fail. */
export type ThreadReply = SessionInfo | BatchOutput | null | ThreadFailure;

export function isThreadFailure(reply: unknown): reply is ThreadFailure {
  return typeof reply === 'object' && reply !== null && 'error' in reply;
}
