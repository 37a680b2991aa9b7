// The tensors of a request that live in system shared memory
// (system-shared-memory.ts): an input or a requested output whose
// parameters name a region (`shared_memory_region`, `shared_memory_byte_size`,
// `shared_memory_offset`, as Triton's clients send them). Requests that name
// none, nearly all, take none of this: the protocols look up three
// parameters per tensor (namesSharedMemory).
import { elementSize, type Datatype } from '../../core/datatypes.js';
import { failedPrecondition, invalidArgument } from '../../core/errors.js';
import { elementCount, type Tensor } from '../../core/tensor.js';
import { type InferParameter, type ModelInferRequest, type ModelInferRequest_InferInputTensor } from '../../proto/gen/inference.js';
import { checkRawSize, decodeInput, tensorHead } from '../tensor/decode-request.js';
import { type SystemSharedMemory } from './system-shared-memory.js';

export const REGION = 'shared_memory_region';
const OFFSET = 'shared_memory_offset';
export const BYTE_SIZE = 'shared_memory_byte_size';

/** Where a tensor's bytes are: `byteSize` bytes from `offset` within the registered region `region`. */
export interface SharedMemoryRef {
  readonly region: string;
  readonly offset: number;
  readonly byteSize: number;
}

/** Why a gateway started without --system-shared-memory refuses it. */
export const SHARED_MEMORY_OFF = 'system shared memory is off on this gateway (start it with --system-shared-memory true)';

/** A request that names a region on such a gateway. */
export function sharedMemoryOff(label: string): Error {
  return failedPrecondition(`${label}: names a shared memory region, but ${SHARED_MEMORY_OFF}`);
}

/** A parameter's value: a JSON value, or gRPC's string and integer params as a string and a bigint (others: null). */
type ParameterValue = unknown;

function fromProto(p: InferParameter | undefined): ParameterValue | undefined {
  const choice = p?.parameterChoice;
  if (p === undefined) return undefined;
  if (choice?.$case === 'stringParam' || choice?.$case === 'int64Param' || choice?.$case === 'uint64Param') return choice.value;
  return null;
}

function stringOf(v: ParameterValue, name: string, label: string): string {
  if (typeof v === 'string') return v;
  throw invalidArgument(`${label}: invalid value type for '${name}' parameter, expected string_param (a JSON string)`);
}

function sizeOf(v: ParameterValue, name: string, label: string): number {
  let n: number | undefined;
  if (typeof v === 'number') n = v;
  else if (typeof v === 'bigint') n = Number(v);
  if (n === undefined) throw invalidArgument(`${label}: invalid value type for '${name}' parameter, expected int64_param (a JSON integer)`);
  if (!Number.isSafeInteger(n) || n < 0) throw invalidArgument(`${label}: '${name}' must be a whole number from 0 to 2^53-1, got ${n}`);
  return n;
}

/**
 * The region a tensor's parameters name, Triton's rules: a string region,
 * int64 offset (default 0) and byte size; offset and byte size only with a
 * region. undefined when they name none.
 */
export function sharedMemoryRefOf(get: (name: string) => ParameterValue | undefined, label: string): SharedMemoryRef | undefined {
  const region = get(REGION);
  const offset = get(OFFSET);
  const byteSize = get(BYTE_SIZE);
  if (region === undefined) {
    if (offset !== undefined) throw invalidArgument(`${label}: '${OFFSET}' can not be specified without '${REGION}'`);
    if (byteSize !== undefined) throw invalidArgument(`${label}: '${BYTE_SIZE}' can not be specified without '${REGION}'`);
    return undefined;
  }
  if (byteSize === undefined) throw invalidArgument(`${label}: '${REGION}' needs '${BYTE_SIZE}' too`);
  return { region: stringOf(region, REGION, label), offset: offset === undefined ? 0 : sizeOf(offset, OFFSET, label), byteSize: sizeOf(byteSize, BYTE_SIZE, label) };
}

/** From a gRPC tensor's parameters. */
export function refFromProto(parameters: Readonly<Record<string, InferParameter>>, label: string): SharedMemoryRef | undefined {
  return sharedMemoryRefOf((name) => fromProto(parameters[name]), label);
}

/** Whether a tensor's parameters name any of the three (three lookups: every request pays them). */
export function namesSharedMemory(parameters: Readonly<Record<string, unknown>>): boolean {
  return parameters[REGION] !== undefined || parameters[OFFSET] !== undefined || parameters[BYTE_SIZE] !== undefined;
}

/** Whether any input of a gRPC request names shared memory. */
export function hasSharedMemoryInput(inputs: readonly ModelInferRequest_InferInputTensor[]): boolean {
  for (const input of inputs) if (namesSharedMemory(input.parameters)) return true;
  return false;
}

/**
 * A gRPC request's inputs when some are in shared memory: as decodeInputs,
 * with `raw_input_contents` holding the other inputs only, in order
 * (Triton's indexing), and the shared ones read from their regions.
 */
export async function decodeInputsWithSharedMemory(request: ModelInferRequest, modelName: string, shm: SystemSharedMemory | undefined): Promise<Tensor[]> {
  const model = `model '${modelName}'`;
  const { inputs, rawInputContents: raw } = request;
  const shared = inputs.map((input) => (namesSharedMemory(input.parameters) ? input : undefined));
  const direct = shared.filter((s) => s === undefined).length;
  if (raw.length !== 0 && raw.length !== direct) {
    throw invalidArgument(`${model}: raw_input_contents has ${raw.length} entries for the ${direct} inputs not in shared memory; send one per such input, in input order`);
  }
  const seen = new Set<string>();
  let rawIndex = 0;
  return Promise.all(
    inputs.map(async (input, index) => {
      const label = `${model}: input '${input.name}'`;
      if (input.name === '') throw invalidArgument(`${model}: input ${index} has no name`);
      if (seen.has(input.name)) throw invalidArgument(`${model}: input '${input.name}' is given more than once`);
      seen.add(input.name);
      if (shared[index] === undefined) {
        const at = rawIndex++;
        return decodeInput(input, raw[at], at, label);
      }
      const ref = refFromProto(input.parameters, label) as SharedMemoryRef;
      if (shm === undefined) throw sharedMemoryOff(label);
      if (input.contents !== undefined) throw invalidArgument(`${label}: has both contents and '${REGION}'; send only one`);
      const { name, datatype, shape } = tensorHead(input, label);
      return { name, datatype, shape, data: await readTensorBytes(shm, ref, datatype, shape, label) };
    }),
  );
}

const EMPTY = Buffer.alloc(0);

/** A tensor's bytes from shared memory, checked to hold its shape's elements. */
export async function readTensorBytes(shm: SystemSharedMemory, ref: SharedMemoryRef, datatype: Datatype, shape: readonly number[], label: string): Promise<Uint8Array> {
  const count = elementCount(shape);
  // The region first, as Triton checks it when it parses the request.
  shm.check(ref.region, ref.offset, ref.byteSize);
  // Fixed-size elements: the size is known before reading (a wrong byte size reads nothing).
  const size = elementSize(datatype);
  if (size > 0 && ref.byteSize !== count * size) {
    throw invalidArgument(`${label}: '${BYTE_SIZE}' is ${ref.byteSize}, but shape [${shape.join(',')}] of ${datatype} needs ${count * size} bytes`);
  }
  const data = await shm.read(ref.region, ref.offset, ref.byteSize);
  checkRawSize(datatype, shape, count, data, label, `shared memory region '${ref.region}'`);
  return data;
}

/**
 * Writes the outputs named in `refs` to their regions, each checked to fit;
 * returns the outputs with those left empty, as the answer carries them
 * (Triton: an empty raw_output_contents entry, no JSON data).
 */
export async function writeOutputs(outputs: readonly Tensor[], refs: ReadonlyMap<string, SharedMemoryRef>, shm: SystemSharedMemory, model: string): Promise<Tensor[]> {
  return Promise.all(
    outputs.map(async (t) => {
      const ref = refs.get(t.name);
      if (ref === undefined) return t;
      if (t.data.byteLength > ref.byteSize) {
        throw invalidArgument(
          `model '${model}': shared memory size specified with the request for output '${t.name}' (${ref.byteSize} bytes) should be at least ${t.data.byteLength} bytes to hold the results`,
        );
      }
      await shm.write(ref.region, ref.offset, t.data);
      return { ...t, data: EMPTY };
    }),
  );
}

/** A requested output that names a shared memory region, as the protocols parse it. */
export interface SharedOutputRequest {
  readonly name: string;
  readonly ref: SharedMemoryRef;
  /** It also asks for classification, which Triton refuses with a region. */
  readonly classified: boolean;
  /** It also asks for binary_data (HTTP), which Triton refuses with a region. */
  readonly binary?: boolean;
}

/**
 * The requested outputs to write to shared memory, by name, each checked
 * against its region before the request runs.
 */
export function outputRefsOf(outputs: readonly SharedOutputRequest[], shm: SystemSharedMemory | undefined, model: string): Map<string, SharedMemoryRef> {
  const refs = new Map<string, SharedMemoryRef>();
  for (const o of outputs) {
    const label = `model '${model}': output '${o.name}'`;
    if (shm === undefined) throw sharedMemoryOff(label);
    if (o.classified) throw invalidArgument(`${label}: an output can't set both '${REGION}' and 'classification'`);
    if (o.binary === true) throw invalidArgument(`${label}: an output can't set both '${REGION}' and 'binary_data'`);
    shm.check(o.ref.region, o.ref.offset, o.ref.byteSize);
    refs.set(o.name, o.ref);
  }
  return refs;
}

/** The HTTP request's inputs, those in shared memory (`refs`, by index) read from their regions. */
export async function readSharedInputs(inputs: readonly Tensor[], refs: ReadonlyMap<number, SharedMemoryRef>, shm: SystemSharedMemory | undefined, model: string): Promise<Tensor[]> {
  return Promise.all(
    inputs.map(async (t, i) => {
      const ref = refs.get(i);
      if (ref === undefined) return t;
      const label = `model '${model}': input '${t.name}'`;
      if (shm === undefined) throw sharedMemoryOff(label);
      return { name: t.name, datatype: t.datatype, shape: t.shape, data: await readTensorBytes(shm, ref, t.datatype, t.shape, label) };
    }),
  );
}
