// Triton's `model_warmup`: request samples that run on every instance of a
// version after it loads and before it reports READY, so the first real
// request does not pay for ONNX Runtime's lazy initialisation (allocator
// growth, kernel selection). A sample that does not fit the model, or a run
// that fails, fails the load with the file and field named, as in Triton.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { datatypeFromConfigName, type Datatype, elementSize } from '../../core/datatypes.js';
import { type ModelSignature } from '../../core/signature.js';
import { elementCount, type Tensor } from '../../core/tensor.js';
import { ConfigError } from '../../models/config/config-error.js';
import { DataType, type ModelConfig, type ModelWarmup_Input } from '../../proto/gen/model_config.js';
import { toModelShapes } from '../inference/reshape.js';
import { type Dispatcher } from '../scheduling/dispatcher.js';
import { type InstanceSlots } from '../scheduling/instance-slots.js';
import { walkBytesElements } from '../tensor/bytes-elements.js';
import { validateInputs } from '../validate-request.js';
import { type BatchIoPlan } from '../../models/config/batch-io-config.js';
import { joinBatch } from '../batching/batch-io.js';

export interface WarmupSample {
  readonly name: string;
  /** In the config's shapes, batch dimension included when the model batches. */
  readonly inputs: readonly Tensor[];
  /** Rounds of this sample: each runs once on every instance. */
  readonly rounds: number;
}

/** A warm-up round that finds no free instance within this long fails the load. */
export const WARMUP_TIMEOUT_MS = 120_000;

/**
 * Builds the config's warm-up samples and checks each against the signature
 * (the same checks as a request); data files are read from `<modelDir>/warmup/`.
 */
export async function warmupSamples(config: ModelConfig, signature: ModelSignature, modelDir: string, file: string): Promise<WarmupSample[]> {
  const batching = config.maxBatchSize > 0;
  const samples: WarmupSample[] = [];
  for (const [i, w] of config.modelWarmup.entries()) {
    const field = `model_warmup[${i}]`;
    const fail = (path: string, reason: string): never => {
      throw new ConfigError(file, `${field}${path}`, reason);
    };
    if (!batching && w.batchSize !== 1) fail('.batch_size', `expected 1 (the model does not batch: max_batch_size 0), got ${w.batchSize}`);
    if (batching && w.batchSize > config.maxBatchSize) fail('.batch_size', `expected at most max_batch_size ${config.maxBatchSize}, got ${w.batchSize}`);
    const inputs: Tensor[] = [];
    for (const [name, input] of Object.entries(w.inputs)) {
      inputs.push(await sampleTensor(name, input, batching ? w.batchSize : undefined, modelDir, (path, reason) => fail(`.inputs["${name}"]${path}`, reason)));
    }
    try {
      validateInputs(signature, inputs, []);
    } catch (error) {
      fail('.inputs', (error as Error).message);
    }
    samples.push({ name: w.name || `#${i}`, inputs, rounds: Math.max(1, w.count) });
  }
  return samples;
}

/** Does any warm-up sample read a data file (`input_data_file`)? */
export function warmupNeedsFiles(config: ModelConfig): boolean {
  return config.modelWarmup.some((w) => Object.values(w.inputs).some((i) => i.inputDataType?.$case === 'inputDataFile'));
}

async function sampleTensor(
  name: string,
  input: ModelWarmup_Input,
  rows: number | undefined,
  modelDir: string,
  fail: (path: string, reason: string) => never,
): Promise<Tensor> {
  const datatype = datatypeFromConfigName(DataType[input.dataType] ?? '') ?? fail('.data_type', `expected a data type such as TYPE_FP32, got ${DataType[input.dataType] ?? input.dataType}`);
  const dims = input.dims.map(Number);
  if (dims.some((d) => d < 0)) fail('.dims', `expected fixed sizes (a warm-up sample is one concrete request), got [${dims.join(', ')}]`);
  const elements = elementCount(dims);
  const kind = input.inputDataType?.$case;
  let item: Uint8Array;
  if (kind === 'inputDataFile') {
    const path = join(modelDir, 'warmup', input.inputDataType?.value as string);
    const bytes = await readFile(path).catch((error: unknown) => fail('.input_data_file', `cannot read ${path}: ${(error as Error).message}`));
    item = checkFileData(datatype, elements, bytes, (reason) => fail('.input_data_file', `${path}: ${reason}`));
  } else if (kind === 'randomData' && datatype !== 'BYTES') {
    item = randomElements(datatype, elements);
  } else if (kind === 'zeroData' || kind === 'randomData') {
    // Random BYTES fall back to zero data (empty strings), as in Triton.
    item = new Uint8Array(elements * (datatype === 'BYTES' ? 4 : elementSize(datatype)));
  } else {
    return fail('', 'expected one of zero_data, random_data or input_data_file');
  }
  const count = rows ?? 1;
  const data = new Uint8Array(item.byteLength * count);
  for (let r = 0; r < count; r++) data.set(item, r * item.byteLength);
  return { name, datatype, shape: rows === undefined ? dims : [rows, ...dims], data };
}

function checkFileData(datatype: Datatype, elements: number, bytes: Uint8Array, fail: (reason: string) => never): Uint8Array {
  if (datatype !== 'BYTES') {
    const want = elements * elementSize(datatype);
    if (bytes.byteLength !== want) fail(`expected ${want} bytes (${elements} ${datatype} elements of one batch item), got ${bytes.byteLength}`);
    return bytes;
  }
  let found = 0;
  try {
    found = walkBytesElements(bytes, 'the file');
  } catch (error) {
    fail(`expected length-prefixed BYTES elements: ${(error as Error).message}`);
  }
  if (found !== elements) fail(`expected ${elements} BYTES elements, got ${found}`);
  return bytes;
}

/** Random values; floats uniform in [0, 1) so that no NaN or Inf reaches the model. */
function randomElements(datatype: Datatype, elements: number): Uint8Array {
  if (datatype === 'FP32') return new Uint8Array(Float32Array.from({ length: elements }, Math.random).buffer);
  if (datatype === 'FP64') return new Uint8Array(Float64Array.from({ length: elements }, Math.random).buffer);
  if (datatype === 'BOOL') return Uint8Array.from({ length: elements }, () => (Math.random() < 0.5 ? 0 : 1));
  // FP16/BF16: random mantissa bits under a small exponent stay finite.
  if (datatype === 'FP16' || datatype === 'BF16') return new Uint8Array(Uint16Array.from({ length: elements }, () => 0x3000 | Math.floor(Math.random() * 0x3ff)).buffer);
  return new Uint8Array(randomBytes(elements * elementSize(datatype)));
}

export interface WarmupTarget {
  readonly slots: InstanceSlots;
  readonly dispatcher: Dispatcher;
  readonly signature: ModelSignature;
  readonly batchIo?: BatchIoPlan;
}

/**
 * Runs each sample `rounds` times on every instance: each round sends as
 * many executions at once as there are instances, and a worker gives an
 * idle instance before queueing behind a busy one, so each gets one.
 */
export async function runWarmup(target: WarmupTarget, samples: readonly WarmupSample[], instances: number, timeoutMs = WARMUP_TIMEOUT_MS): Promise<void> {
  for (const sample of samples) {
    // A batch of one: as it is, or for a ragged model its ragged inputs flat and its batch inputs made.
    const inputs = joinBatch(target.batchIo, [toModelShapes(target.signature, sample.inputs)]);
    for (let round = 0; round < sample.rounds; round++) {
      const deadline = Date.now() + timeoutMs;
      await Promise.all(
        Array.from({ length: instances }, async () => {
          const placement = await target.slots.acquireOrWait(new Set(), deadline);
          if (placement === 'deadline') throw new Error(`warm-up sample '${sample.name}': no instance was free within ${timeoutMs} ms`);
          if (placement === 'no-worker') throw new Error(`warm-up sample '${sample.name}': no worker hosts the model any more`);
          await target.dispatcher.run(placement, inputs, [], deadline).catch((error: unknown) => {
            throw new Error(`warm-up sample '${sample.name}' failed: ${(error as Error).message}`, { cause: error });
          });
        }),
      );
    }
  }
}
