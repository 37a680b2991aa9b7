import ort from 'onnxruntime-node';
import { datatypeFromOrtType } from '../core/datatypes.js';
import { type Feed, OrtSession } from './ort-binding.js';
import { fromOrtTensor, toFeed } from './ort-convert.js';
import { type BatchOutput, type BatchTask, type SessionInfo, type TensorSpecInfo, type ThreadInit, type ThreadSessionOptions } from './thread-protocol.js';

// Opening one ONNX Runtime session for an ORT thread: options, the CUDA → WebGPU → CPU
// fallback, and the model's inputs/outputs as the gateway needs them.

export interface OpenedSession {
  readonly session: OrtSession;
  readonly info: SessionInfo;
}

type Providers = NonNullable<ort.InferenceSession.SessionOptions['executionProviders']>;

export function sessionOptionsFor(options: ThreadSessionOptions, providers: Providers): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: providers,
    intraOpNumThreads: options.intraOpNumThreads,
    interOpNumThreads: options.interOpNumThreads,
    executionMode: options.executionMode,
    graphOptimizationLevel: options.graphOptimizationLevel,
    enableCpuMemArena: options.enableCpuMemArena,
    enableMemPattern: options.enableMemPattern,
    logSeverityLevel: 4,
    // ORT's pools busy-spin after each run by default; with several sessions
    // per process they steal each other's cores (measured 1.4× slower).
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  };
}

// ORT's own log goes to stderr as plain text, between our JSON lines. Its
// errors reach us as exceptions anyway (the CUDA probe would log a misleading
// one), so only fatal messages are let through. Read once, at ORT's first use.
ort.env.logLevel = 'fatal';

function create(init: ThreadInit, providers: Providers): OrtSession {
  return OrtSession.open('path' in init.model ? init.model.path : init.model.bytes, sessionOptionsFor(init.options, providers));
}

/**
 * Opens the session. A GPU request tries CUDA, then WebGPU (Dawn over Vulkan,
 * bundled in onnxruntime-node's Linux build), then the CPU. Where CUDA's
 * provider libraries are missing onnxruntime-node fails hard instead of
 * falling back, and WebGPU fails where no Vulkan adapter is found: each
 * failure is caught and reported in the fallback reason, so the model's
 * metadata says which provider ran and why not the one before it.
 */
export async function openSession(init: ThreadInit): Promise<OpenedSession> {
  let session: OrtSession | undefined;
  let executionProvider = 'cpu';
  const reasons: string[] = [];
  if (init.device.kind === 'gpu') {
    const { deviceId } = init.device;
    for (const provider of gpuProviders(deviceId)) {
      try {
        session = create(init, [provider.option]);
        executionProvider = provider.label;
        break;
      } catch (error) {
        reasons.push(`${provider.name} execution provider unavailable on device ${deviceId}: ${firstLine(messageOf(error))}`);
      }
    }
  }
  const fallbackReason = session === undefined ? reasons.join('; ') : '';
  const passedOver = session !== undefined && reasons.length > 0 ? { passedOver: reasons.join('; ') } : {};
  try {
    session ??= create(init, ['cpu']);
  } catch (error) {
    throw new Error(`instance ${init.label}: ${explainLoadError(error)}`, { cause: error });
  }
  try {
    const info: SessionInfo = {
      inputs: describeValues('input', session.inputMetadata),
      outputs: describeValues('output', session.outputMetadata),
      executionProvider,
      fallbackReason,
      ...passedOver,
    };
    return { session, info };
  } catch (error) {
    session.release();
    throw new Error(`instance ${init.label}: ${messageOf(error)}`, { cause: error });
  }
}

/** ORT metadata → TensorSpecInfo; throws for values Fabriek cannot carry. */
export function describeValues(
  kind: 'input' | 'output',
  metadata: readonly ort.InferenceSession.ValueMetadata[],
): TensorSpecInfo[] {
  return metadata.map((m) => {
    if (!m.isTensor) {
      throw new Error(`${kind} "${m.name}" is not a tensor (sequence, map or optional values are not supported)`);
    }
    const datatype = datatypeFromOrtType(m.type);
    if (datatype === undefined || datatype === 'BF16') {
      throw new Error(`${kind} "${m.name}" has element type ${m.type}, which onnxruntime-node cannot exchange`);
    }
    return {
      name: m.name,
      datatype,
      shape: m.shape.map((d) => (typeof d === 'number' ? d : -1)),
      dimNames: m.shape.map((d) => (typeof d === 'string' ? d : '')),
    };
  });
}

// ONNX TensorProto element types the node binding rejects with a bare number.
const ONNX_TYPE_NAMES: Readonly<Record<string, string>> = {
  '14': 'complex64',
  '15': 'complex128',
  '16': 'bfloat16 (BF16 does not load in the CPU build of ONNX Runtime)',
  '17': 'float8e4m3fn',
  '18': 'float8e4m3fnuz',
  '19': 'float8e5m2',
  '20': 'float8e5m2fnuz',
};

function explainLoadError(error: unknown): string {
  const message = messageOf(error);
  const code = /Unsupported data type: (\d+)/.exec(message)?.[1];
  if (code === undefined) return message;
  return `unsupported element type ${ONNX_TYPE_NAMES[code] ?? `(ONNX type ${code})`} in an input or output`;
}

interface GpuProvider {
  readonly name: string;
  /** What the model's metadata and statistics say ran, e.g. "cuda:0". */
  readonly label: string;
  readonly option: Providers[number];
}

/**
 * CUDA first. WebGPU only for device 0: Dawn picks its default adapter and
 * onnxruntime-node offers no way to choose another, so on GPU 1 it would
 * run on GPU 0 unnoticed.
 */
function gpuProviders(deviceId: number): GpuProvider[] {
  const cuda: GpuProvider = { name: 'CUDA', label: `cuda:${deviceId}`, option: { name: 'cuda', deviceId } };
  return deviceId === 0 ? [cuda, { name: 'WebGPU', label: 'webgpu:0', option: { name: 'webgpu' } }] : [cuda];
}

/** ORT's messages carry a source location and, for Dawn, a stack of its own: the first line says why. */
function firstLine(message: string): string {
  return message.split('\n', 1)[0] ?? message;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * One batch through `session`, timed as the worker reports it: conversion,
 * then the run. Output buffers that must cross a thread go into `transfer`
 * (an ORT thread); on the worker's main thread nothing crosses. The run is
 * synchronous: the task holds its thread from start to end.
 */
export async function runTask(session: OrtSession, task: BatchTask, transfer: ArrayBuffer[]): Promise<BatchOutput> {
  const taskStartNs = process.hrtime.bigint();
  const feeds: Record<string, Feed> = {};
  for (const input of task.inputs) feeds[input.name] = toFeed(input);
  const runStartNs = process.hrtime.bigint();
  const results = session.run(feeds, task.outputs);
  const runEndNs = process.hrtime.bigint();
  const outputs = Object.entries(results).map(([name, value]) => fromOrtTensor(name, value, transfer));
  if (task.timed !== true) return { outputs, taskStartNs, runStartNs, runEndNs };
  return { outputs, taskStartNs, runStartNs, runEndNs, heldNs: Number(process.hrtime.bigint() - taskStartNs) };
}
