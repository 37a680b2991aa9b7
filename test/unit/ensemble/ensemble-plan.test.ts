import { describe, expect, it } from 'vitest';
import { type ModelSignature, type TensorSignature } from '../../../core/signature.js';
import { ensembleSignature, planEnsemble, type StepLookup } from '../../../gateway/ensemble/ensemble-plan.js';
import { ensembleIn, parseModelConfig } from '../../../models/config/model-config.js';

const FILE = 'ens/config.pbtxt';
const t = (name: string, dims: number[] = [16], datatype: TensorSignature['datatype'] = 'FP32'): TensorSignature => ({ name, datatype, dims, dimNames: dims.map(() => ''), optional: false });
const ADD_SUB: ModelSignature = { name: 'add_sub', version: '1', maxBatchSize: 8, inputs: [t('INPUT0'), t('INPUT1')], outputs: [t('OUTPUT0'), t('OUTPUT1')] };
const IDENTITY: ModelSignature = { name: 'identity', version: '1', maxBatchSize: 4, inputs: [t('INPUT0')], outputs: [t('OUTPUT0')] };
const INT_MODEL: ModelSignature = { name: 'ints', version: '1', maxBatchSize: 8, inputs: [t('X', [16], 'INT32')], outputs: [t('Y', [16], 'INT32')] };
const lookup: StepLookup = (model) => ({ add_sub: ADD_SUB, identity: IDENTITY, ints: INT_MODEL })[model] ?? 'is not in the repository';

const HEAD = `name: "ens"
platform: "ensemble"
max_batch_size: 4
input [ { name: "A" data_type: TYPE_FP32 dims: [ 16 ] }, { name: "B" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 16 ] } ]
`;
const step = (model: string, inputs: Record<string, string>, outputs: Record<string, string>): string =>
  `{ model_name: "${model}" model_version: -1 ${Object.entries(inputs).map(([k, v]) => `input_map { key: "${k}" value: "${v}" }`).join(' ')} ${Object.entries(outputs).map(([k, v]) => `output_map { key: "${k}" value: "${v}" }`).join(' ')} }`;

function plan(steps: string[], head = HEAD) {
  const config = parseModelConfig(`${head}ensemble_scheduling { step [ ${steps.join(', ')} ] }`, FILE).config;
  const signature = ensembleSignature('ens', '1', config, FILE);
  return planEnsemble(signature, ensembleIn(config) ?? { step: [] }, lookup, FILE);
}
const reason = (steps: string[], head = HEAD): string => {
  try {
    plan(steps, head);
  } catch (error) {
    return (error as Error).message;
  }
  return 'planned';
};

const DIAMOND = [
  step('identity', { INPUT0: 'd' }, { OUTPUT0: 'b' }),
  step('add_sub', { INPUT0: 'A', INPUT1: 'B' }, { OUTPUT0: 's', OUTPUT1: 'd' }),
  step('add_sub', { INPUT0: 'a', INPUT1: 'b' }, { OUTPUT0: 'OUT' }),
  step('identity', { INPUT0: 's' }, { OUTPUT0: 'a' }),
];

describe('planEnsemble', () => {
  it('orders a diamond so that every step comes after those it reads from', () => {
    const p = plan(DIAMOND);
    expect(p.steps.map((s) => s.index)).toEqual([1, 0, 3, 2]);
    expect(p.models).toEqual(['identity', 'add_sub']);
    expect(p.outputs).toEqual(['OUT']);
    expect(p.steps[0]).toEqual({ index: 1, model: 'add_sub', version: '', inputs: [['INPUT0', 'A'], ['INPUT1', 'B']], outputs: [['OUTPUT0', 's'], ['OUTPUT1', 'd']] });
  });

  it('names file and field for each broken rule', () => {
    expect(reason([step('nope', { INPUT0: 'A' }, { OUTPUT0: 'OUT' })])).toBe(`${FILE}: ensemble_scheduling.step[0].model_name: step model 'nope' is not in the repository`);
    expect(reason([step('identity', { INPUT9: 'A' }, { OUTPUT0: 'OUT' })])).toBe(`${FILE}: ensemble_scheduling.step[0].input_map["INPUT9"]: expected an input of 'identity' (INPUT0), got 'INPUT9'`);
    expect(reason([step('add_sub', { INPUT0: 'A' }, { OUTPUT0: 'OUT' })])).toBe(`${FILE}: ensemble_scheduling.step[0].input_map: expected every input of 'add_sub' mapped, got none for 'INPUT1'`);
    expect(reason([step('identity', { INPUT0: 'A' }, { OUTPUT7: 'OUT' })])).toBe(`${FILE}: ensemble_scheduling.step[0].output_map["OUTPUT7"]: expected an output of 'identity' (OUTPUT0), got 'OUTPUT7'`);
    expect(reason([step('identity', { INPUT0: 'ghost' }, { OUTPUT0: 'OUT' })])).toBe(
      `${FILE}: ensemble_scheduling.step[0].input_map["INPUT0"]: expected an ensemble input or a step output, got 'ghost', which nothing produces`,
    );
    expect(reason([step('identity', { INPUT0: 'A' }, { OUTPUT0: 'x' })])).toBe(`${FILE}: output[0]: expected a step to produce ensemble output 'OUT', got none`);
    expect(reason([step('identity', { INPUT0: 'A' }, { OUTPUT0: 'OUT' }), step('identity', { INPUT0: 'B' }, { OUTPUT0: 'OUT' })])).toBe(
      `${FILE}: ensemble_scheduling.step[1].output_map["OUTPUT0"]: expected each ensemble tensor produced once, got 'OUT' again (also step 0 ('identity') output 'OUTPUT0')`,
    );
    expect(reason([step('ints', { X: 'A' }, { Y: 'OUT' })])).toBe(
      `${FILE}: ensemble_scheduling.step[0].input_map["X"]: expected INT32 (input 'X' of 'ints'), got FP32 from ensemble input 'A'`,
    );
    expect(reason([step('identity', { INPUT0: 'A' }, { OUTPUT0: 'OUT' })], HEAD.replace('name: "A" data_type: TYPE_FP32 dims: [ 16 ]', 'name: "A" data_type: TYPE_FP32 dims: [ 8 ]'))).toBe(
      `${FILE}: ensemble_scheduling.step[0].input_map["INPUT0"]: expected shape [-1, 16] (input 'INPUT0' of 'identity'), got [-1, 8] from ensemble input 'A'`,
    );
    expect(reason([step('identity', { INPUT0: 'A' }, { OUTPUT0: 'OUT' })], HEAD.replace('max_batch_size: 4', 'max_batch_size: 8'))).toBe(
      `${FILE}: ensemble_scheduling.step[0].model_name: expected a step model that batches at least max_batch_size 8, got 'identity' with max_batch_size 4`,
    );
    expect(reason([step('identity', { INPUT0: 'y' }, { OUTPUT0: 'x' }), step('identity', { INPUT0: 'x' }, { OUTPUT0: 'y' }), step('identity', { INPUT0: 'A' }, { OUTPUT0: 'OUT' })])).toBe(
      `${FILE}: ensemble_scheduling.step: expected no cycle between steps, got one through step 0 ('identity'), step 1 ('identity')`,
    );
    expect(reason([], HEAD)).toBe(`${FILE}: ensemble_scheduling.step: expected at least one step, got none`);
  });

  it("takes the ensemble's signature from its config alone, and says what is missing", () => {
    const sig = ensembleSignature('ens', '1', parseModelConfig(HEAD, FILE).config, FILE);
    expect(sig.inputs.map((x) => [x.name, x.datatype, x.dims])).toEqual([
      ['A', 'FP32', [16]],
      ['B', 'FP32', [16]],
    ]);
    expect(() => ensembleSignature('ens', '1', parseModelConfig(HEAD.replace('name: "B" data_type: TYPE_FP32 dims: [ 16 ]', 'name: "B" dims: [ 16 ]'), FILE).config, FILE)).toThrow(
      `${FILE}: input[1].data_type: expected a data type such as TYPE_FP32 (an ensemble has no model to complete it from), got TYPE_INVALID`,
    );
    expect(() => ensembleSignature('ens', '1', parseModelConfig('platform: "ensemble" max_batch_size: 4', FILE).config, FILE)).toThrow(`${FILE}: input: expected at least one input`);
  });
});
