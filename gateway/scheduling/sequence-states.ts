import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { elementSize } from '../../core/datatypes.js';
import { elementCount, type Tensor } from '../../core/tensor.js';
import { ConfigError } from '../../models/config/config-error.js';
import { type SequencePlan } from '../../models/config/sequence-config.js';
import { ModelDynamicBatching, type ModelSequenceBatching } from '../../proto/gen/model_config.js';
import { zeroState } from './sequence-scheduler.js';

/**
 * Each state's first input, in the plan's order: zeros, or the raw
 * little-endian elements of its `initial_state` file (in the model's
 * initial_state/ directory), which must hold exactly the state's size. A file
 * that cannot be read fails the load, naming it.
 */
export async function initialStates(plan: SequencePlan, directory: string, file: string, batching: boolean): Promise<Tensor[]> {
  return Promise.all(
    plan.states.map(async (st, i) => {
      const zeros = zeroState(st.inputName, st.datatype, st.dims, batching);
      if (st.initialFile === undefined) return zeros;
      const field = `sequence_batching.state[${i}].initial_state[0].data_file`;
      if (directory === '') throw new ConfigError(file, field, `expected a model directory to read ${JSON.stringify(st.initialFile)} from; this gateway has no --model-repository`);
      const path = join(directory, 'initial_state', st.initialFile);
      let data: Buffer;
      try {
        data = await readFile(path);
      } catch (error) {
        throw new ConfigError(file, field, `cannot read ${path}: ${error instanceof Error ? error.message : String(error)}`);
      }
      const expected = elementCount(st.dims) * elementSize(st.datatype);
      if (data.byteLength !== expected) {
        throw new ConfigError(file, field, `expected ${expected} bytes in ${path} (${elementCount(st.dims)} ${st.datatype} elements), got ${data.byteLength}`);
      }
      return { ...zeros, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
    }),
  );
}

/** The dynamic batching a batching sequence model's requests get across sequences: the strategy's delay and sizes. */
export function sequenceBatchingPolicy(sequence: ModelSequenceBatching): ModelDynamicBatching {
  const strategy = sequence.strategyChoice;
  return ModelDynamicBatching.fromPartial({
    preferredBatchSize: strategy?.$case === 'oldest' ? strategy.value.preferredBatchSize : [],
    maxQueueDelayMicroseconds: strategy?.value.maxQueueDelayMicroseconds ?? 0n,
  });
}
