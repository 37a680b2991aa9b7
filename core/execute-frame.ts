// The Execute call between a gateway and a worker, in segmented frames
// (core/worker-frames.ts): a small head, then each tensor's raw bytes as its
// own segment. No protobuf: the head is written straight into the buffer
// that also holds the frame's prefix, and tensor bytes go to the socket as
// they are (a corked, vectored write), so a batch is never re-encoded and
// its tensors are never copied on the way out: a batch's input is written
// from its members' parts, one after the other, as its one segment. The
// message types are those of proto/worker.proto (ExecuteRequest,
// ExecuteResponse), kept as the in-memory shape on both sides; the gateway
// sends an ExecuteCall, whose inputs may be in parts.
//
// Head of a request:                  Head of an answer:
//   str  model key                      f64 compute input ns
//   u32  output count, str each         f64 compute infer ns
//   u32  input count, then each:        f64 compute output ns
//     str  name                         u32 output count, then each:
//     str  datatype                       str name, str datatype,
//     u32  rank, f64 × rank dims          u32 rank, f64 × rank dims
//   [str traceparent                  [u32 outstanding
//    [str tracestate]]                  [f64 wait ns
//                                        [f64 backlog ns]]]
// The request's trace context (W3C) is there only when tracing is on (zero
// bytes otherwise); the answer's `outstanding` is the worker's load report,
// its wait the time the execution waited in the worker for its instance, and
// its backlog what a new execution would wait there now (see ExecuteAnswer).
// str = u32 LE byte length + UTF-8. Numbers are little-endian. Tensor i's
// bytes are segment i + 1.
import { type ExecuteRequest, type ExecuteResponse, type TensorData } from '../proto/gen/worker.js';
import { FrameError, segmentedPrefixBytes, writeSegmentedPrefix } from './worker-frames.js';

function stringBytes(s: string): number {
  return 4 + Buffer.byteLength(s, 'utf8');
}

/** What the head says of a tensor. */
interface TensorHead {
  readonly name: string;
  readonly datatype: string;
  readonly shape: readonly bigint[];
}

function tensorHeadBytes(t: TensorHead): number {
  return stringBytes(t.name) + stringBytes(t.datatype) + 4 + 8 * t.shape.length;
}

/** Writes the head fields with bounds already reserved. */
class HeadWriter {
  constructor(
    readonly out: Buffer,
    public at: number,
  ) {}

  u32(n: number): void {
    this.out.writeUInt32LE(n, this.at);
    this.at += 4;
  }

  f64(n: number): void {
    this.out.writeDoubleLE(n, this.at);
    this.at += 8;
  }

  str(s: string): void {
    const n = this.out.write(s, this.at + 4, 'utf8');
    this.out.writeUInt32LE(n, this.at);
    this.at += 4 + n;
  }

  tensor(t: TensorHead): void {
    this.str(t.name);
    this.str(t.datatype);
    this.u32(t.shape.length);
    for (const d of t.shape) this.f64(Number(d));
  }
}

/** Reads head fields, throwing FrameError past the end. */
class HeadReader {
  readonly #view: Buffer;
  #at = 0;

  constructor(head: Uint8Array) {
    this.#view = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  }

  #need(n: number): void {
    if (this.#at + n > this.#view.byteLength) throw new FrameError(`Execute frame head of ${this.#view.byteLength} bytes ends inside a field at byte ${this.#at}`);
  }

  u32(): number {
    this.#need(4);
    const n = this.#view.readUInt32LE(this.#at);
    this.#at += 4;
    return n;
  }

  f64(): number {
    this.#need(8);
    const n = this.#view.readDoubleLE(this.#at);
    this.#at += 8;
    return n;
  }

  str(): string {
    const n = this.u32();
    this.#need(n);
    const s = this.#view.toString('utf8', this.#at, this.#at + n);
    this.#at += n;
    return s;
  }

  /** A count of items each at least `minBytes` long: bounded by what is left, so a lying count allocates nothing. */
  count(minBytes: number): number {
    const n = this.u32();
    if (n * minBytes > this.#view.byteLength - this.#at) throw new FrameError(`Execute frame head says ${n} entries but has ${this.#view.byteLength - this.#at} bytes left`);
    return n;
  }

  tensor(data: Uint8Array): TensorData {
    const name = this.str();
    const datatype = this.str();
    const rank = this.count(8);
    const shape: bigint[] = [];
    for (let i = 0; i < rank; i++) {
      const d = this.f64();
      if (!Number.isSafeInteger(d) || d < 0) throw new FrameError(`Execute frame: tensor '${name}' has dimension ${d} (expected an integer ≥ 0)`);
      shape.push(BigInt(d));
    }
    return { name, datatype, shape, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
  }

  get remaining(): number {
    return this.#view.byteLength - this.#at;
  }

  end(): void {
    if (this.#at !== this.#view.byteLength) throw new FrameError(`Execute frame head has ${this.#view.byteLength - this.#at} bytes after its last field`);
  }
}

/** W3C trace context of the gateway's span for the execution: the worker's span becomes its child. */
export interface FrameTrace {
  readonly traceparent: string;
  /** Vendors' trace state, as the caller sent it (absent when empty). */
  readonly tracestate?: string;
}

/**
 * An input of an Execute request as the gateway sends it: its bytes in one
 * piece, or a batch's in the parts its members hold (core/tensor.ts,
 * JoinedTensor), written one after the other as the input's one segment.
 */
export interface ExecuteInput extends TensorHead {
  readonly data: Uint8Array | readonly Uint8Array[];
}

/** An Execute request as the gateway sends it (a worker reads it back as an ExecuteRequest). */
export interface ExecuteCall {
  readonly modelKey: string;
  readonly inputs: readonly ExecuteInput[];
  readonly outputs: readonly string[];
}

/** The frame parts of an Execute request: prefix and head in one buffer, then each input's bytes (not copied). */
export function encodeExecuteRequest(kind: number, callId: number, request: ExecuteCall, trace?: FrameTrace): Uint8Array[] {
  let headBytes = stringBytes(request.modelKey) + 4 + 4;
  if (trace !== undefined) headBytes += stringBytes(trace.traceparent) + (trace.tracestate === undefined ? 0 : stringBytes(trace.tracestate));
  for (const o of request.outputs) headBytes += stringBytes(o);
  for (const t of request.inputs) headBytes += tensorHeadBytes(t);
  const parts: Uint8Array[] = [];
  const data: Uint8Array[] = [];
  const lengths: number[] = [];
  for (const t of request.inputs) {
    if (t.data instanceof Uint8Array) {
      data.push(t.data);
      lengths.push(t.data.byteLength);
      continue;
    }
    let length = 0;
    for (const part of t.data) {
      data.push(part);
      length += part.byteLength;
    }
    lengths.push(length);
  }
  const prefix = segmentedPrefixBytes(1 + lengths.length);
  const first = Buffer.allocUnsafe(prefix + headBytes);
  writeSegmentedPrefix(first, kind, callId, headBytes, lengths);
  const w = new HeadWriter(first, prefix);
  w.str(request.modelKey);
  w.u32(request.outputs.length);
  for (const o of request.outputs) w.str(o);
  w.u32(request.inputs.length);
  for (const t of request.inputs) w.tensor(t);
  if (trace !== undefined) {
    w.str(trace.traceparent);
    if (trace.tracestate !== undefined) w.str(trace.tracestate);
  }
  parts.push(first);
  for (const d of data) parts.push(d);
  return parts;
}

/** An Execute request from a segmented frame's head and segments; each input's data is its segment (no copy). */
export function decodeExecuteRequest(head: Uint8Array, segments: readonly Uint8Array[]): ExecuteRequest & { trace?: FrameTrace } {
  const r = new HeadReader(head);
  const modelKey = r.str();
  const outputCount = r.count(4);
  const outputs: string[] = [];
  for (let i = 0; i < outputCount; i++) outputs.push(r.str());
  const inputCount = r.count(12);
  if (inputCount !== segments.length) throw new FrameError(`Execute frame has ${inputCount} inputs but ${segments.length} data segments`);
  const inputs: TensorData[] = [];
  for (let i = 0; i < inputCount; i++) inputs.push(r.tensor(segments[i] as Uint8Array));
  if (r.remaining === 0) return { modelKey, inputs, outputs };
  const traceparent = r.str();
  if (r.remaining === 0) return { modelKey, inputs, outputs, trace: { traceparent } };
  const tracestate = r.str();
  r.end();
  return { modelKey, inputs, outputs, trace: { traceparent, tracestate } };
}

/**
 * An Execute answer with the worker's load: executions of the model it held
 * (running or waiting for an instance, this one excluded) as it answered,
 * sent by every gateway. A gateway sharing the worker with others learns
 * from it what it cannot see in its own slots. And `waitNs`: how long this
 * execution waited in the worker for its instance (behind a run, or one sent
 * ahead of it), which is queue time, not compute. And `backlogNs`: the load
 * report in time, how long a new execution of the model would wait there for
 * an instance now, from the sizes of the executions it holds and how long
 * runs of those sizes take on its device (worker/backlog.ts). Undefined: not
 * reported (each field is sent only with those before it; the backlog is
 * unknown until the worker has timed a run of the model).
 */
export type ExecuteAnswer = ExecuteResponse & { readonly outstanding?: number; readonly waitNs?: number; readonly backlogNs?: number | undefined };

/** The frame parts of an Execute answer, as for the request. */
export function encodeExecuteResponse(kind: number, callId: number, response: ExecuteAnswer): Uint8Array[] {
  if (response.waitNs !== undefined && response.outstanding === undefined) throw new Error('an Execute answer sends its wait only with its load report');
  if (response.backlogNs !== undefined && response.waitNs === undefined) throw new Error('an Execute answer sends its backlog only with its wait');
  let headBytes = 3 * 8 + 4 + (response.outstanding === undefined ? 0 : 4) + (response.waitNs === undefined ? 0 : 8) + (response.backlogNs === undefined ? 0 : 8);
  for (const t of response.outputs) headBytes += tensorHeadBytes(t);
  const data: Uint8Array[] = [];
  const lengths: number[] = [];
  for (const t of response.outputs) {
    data.push(t.data);
    lengths.push(t.data.byteLength);
  }
  const prefix = segmentedPrefixBytes(1 + lengths.length);
  const first = Buffer.allocUnsafe(prefix + headBytes);
  writeSegmentedPrefix(first, kind, callId, headBytes, lengths);
  const w = new HeadWriter(first, prefix);
  w.f64(Number(response.computeInputNs));
  w.f64(Number(response.computeInferNs));
  w.f64(Number(response.computeOutputNs));
  w.u32(response.outputs.length);
  for (const t of response.outputs) w.tensor(t);
  if (response.outstanding !== undefined) w.u32(response.outstanding);
  if (response.waitNs !== undefined) w.f64(response.waitNs);
  if (response.backlogNs !== undefined) w.f64(response.backlogNs);
  const parts: Uint8Array[] = [first];
  for (const d of data) parts.push(d);
  return parts;
}

export function decodeExecuteResponse(head: Uint8Array, segments: readonly Uint8Array[]): ExecuteAnswer {
  const r = new HeadReader(head);
  const computeInputNs = BigInt(Math.max(0, Math.round(r.f64())));
  const computeInferNs = BigInt(Math.max(0, Math.round(r.f64())));
  const computeOutputNs = BigInt(Math.max(0, Math.round(r.f64())));
  const count = r.count(12);
  if (count !== segments.length) throw new FrameError(`Execute answer has ${count} outputs but ${segments.length} data segments`);
  const outputs: TensorData[] = [];
  for (let i = 0; i < count; i++) outputs.push(r.tensor(segments[i] as Uint8Array));
  if (r.remaining === 0) return { outputs, computeInputNs, computeInferNs, computeOutputNs };
  const outstanding = r.u32();
  if (r.remaining === 0) return { outputs, computeInputNs, computeInferNs, computeOutputNs, outstanding };
  const waitNs = r.f64();
  // NaN or a negative wait would reach the statistics as queue time.
  if (!(waitNs >= 0) || waitNs === Infinity) throw new FrameError(`Execute answer reports a wait of ${waitNs} ns (expected a finite number ≥ 0)`);
  if (r.remaining === 0) return { outputs, computeInputNs, computeInferNs, computeOutputNs, outstanding, waitNs };
  const backlogNs = r.f64();
  // A gateway weighs workers by it: NaN would make every comparison false.
  if (!(backlogNs >= 0) || backlogNs === Infinity) throw new FrameError(`Execute answer reports a backlog of ${backlogNs} ns (expected a finite number ≥ 0)`);
  // Fields a later worker adds after these are skipped: a gateway upgraded after its workers still reads them.
  // (A gateway from before the wait rejects an answer with it: upgrade gateways first. One from before the backlog
  // reads the wait and ignores the backlog.)
  return { outputs, computeInputNs, computeInferNs, computeOutputNs, outstanding, waitNs, backlogNs };
}
