// Triton's ensembles (`platform: "ensemble"` + `ensemble_scheduling`): a DAG
// of steps over other models of the repository. This file is the pure part:
// it checks an ensemble's config against the signatures of its step models
// and orders the steps, or says what is wrong, naming file and field. The
// tensors of an ensemble are its inputs, its outputs and intermediates; each
// is produced once (by the request or by one step) and may feed many steps.
import { type Datatype, datatypeFromConfigName } from '../../core/datatypes.js';
import { type ModelSignature, type TensorSignature } from '../../core/signature.js';
import { ConfigError } from '../../models/config/config-error.js';
import { DataType, type ModelConfig, type ModelEnsembling, type ModelInput, type ModelOutput } from '../../proto/gen/model_config.js';

export interface PlannedStep {
  readonly index: number;
  readonly model: string;
  /** "" for the version the step model's policy serves (-1 in the config). */
  readonly version: string;
  /** [step model's input, ensemble tensor]. */
  readonly inputs: readonly (readonly [string, string])[];
  /** [step model's output, ensemble tensor]. */
  readonly outputs: readonly (readonly [string, string])[];
}

export interface EnsemblePlan {
  /** Steps in an order where each comes after the steps it depends on. */
  readonly steps: readonly PlannedStep[];
  /** Step models, for readiness and grants. */
  readonly models: readonly string[];
  /** The ensemble's outputs: what is answered (intermediates are not). */
  readonly outputs: readonly string[];
}

/** The step model's signature, or why there is none (not in the repository, not loaded). */
export type StepLookup = (model: string, version: string) => ModelSignature | string;

interface TensorInfo {
  readonly datatype: Datatype;
  /** The whole shape, with -1 for the batch dimension of a batching model. */
  readonly shape: readonly number[];
  readonly from: string;
}

/** A tensor's whole shape as it travels: batching models add the batch dimension. */
const shapeOf = (t: TensorSignature, batching: boolean): number[] => (batching ? [-1, ...t.dims] : [...t.dims]);

const dimsText = (dims: readonly number[]): string => `[${dims.join(', ')}]`;

/** Shapes fit when ranks agree and every dimension is equal or -1 (any size) on either side. */
function dimsFit(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === -1 || b[i] === -1 || d === b[i]);
}

/**
 * The ensemble's own signature, from its config alone: there is no model to
 * complete it from, so every input and output needs data_type and dims.
 */
export function ensembleSignature(name: string, version: string, config: ModelConfig, file: string): ModelSignature {
  const fail = (field: string, reason: string): never => {
    throw new ConfigError(file, field, reason);
  };
  const batching = config.maxBatchSize > 0;
  const tensors = (kind: 'input' | 'output', list: readonly (ModelInput | ModelOutput)[]): TensorSignature[] => {
    if (list.length === 0) fail(kind, `expected at least one ${kind} (an ensemble declares its own), got none`);
    return list.map((e, i) => {
      const field = `${kind}[${i}]`;
      if (e.name === '') fail(`${field}.name`, 'expected a name, got ""');
      const typeName = DataType[e.dataType] ?? String(e.dataType);
      const datatype = datatypeFromConfigName(typeName) ?? fail(`${field}.data_type`, `expected a data type such as TYPE_FP32 (an ensemble has no model to complete it from), got ${typeName}`);
      if (e.reshape) fail(`${field}.reshape`, "expected none: an ensemble passes its tensors on as they are");
      const dims = e.dims.map(Number);
      if (batching && dims.length === 0) fail(`${field}.dims`, 'expected the dims of one batch item, got none');
      return { name: e.name, datatype, dims, dimNames: dims.map(() => ''), optional: false };
    });
  };
  return { name, version, maxBatchSize: config.maxBatchSize, inputs: tensors('input', config.input), outputs: tensors('output', config.output) };
}

export function planEnsemble(ensemble: ModelSignature, scheduling: ModelEnsembling, lookup: StepLookup, file: string): EnsemblePlan {
  const fail = (field: string, reason: string): never => {
    throw new ConfigError(file, field, reason);
  };
  const batching = ensemble.maxBatchSize > 0;
  if (scheduling.step.length === 0) fail('ensemble_scheduling.step', 'expected at least one step, got none');
  const producers = new Map<string, TensorInfo>();
  for (const t of ensemble.inputs) producers.set(t.name, { datatype: t.datatype, shape: shapeOf(t, batching), from: `ensemble input '${t.name}'` });
  const outputNames = new Set(ensemble.outputs.map((t) => t.name));
  const producedBy = new Map<string, number>();
  const steps: PlannedStep[] = [];
  const signatures: ModelSignature[] = [];

  // First pass: every step's model and maps, and who produces each tensor.
  for (const [i, step] of scheduling.step.entries()) {
    const field = `ensemble_scheduling.step[${i}]`;
    if (step.modelName === '') fail(`${field}.model_name`, 'expected the name of a model in the repository, got ""');
    const version = step.modelVersion === -1n ? '' : String(step.modelVersion);
    const sig = lookup(step.modelName, version);
    if (typeof sig === 'string') return fail(`${field}.model_name`, `step model '${step.modelName}'${version ? ` version ${version}` : ''} ${sig}`);
    if (batching && sig.maxBatchSize < ensemble.maxBatchSize) {
      fail(`${field}.model_name`, `expected a step model that batches at least max_batch_size ${ensemble.maxBatchSize}, got '${step.modelName}' with max_batch_size ${sig.maxBatchSize}`);
    }
    const names = (list: readonly TensorSignature[]): string => list.map((t) => t.name).join(', ');
    for (const key of Object.keys(step.inputMap)) {
      if (!sig.inputs.some((t) => t.name === key)) fail(`${field}.input_map["${key}"]`, `expected an input of '${step.modelName}' (${names(sig.inputs)}), got '${key}'`);
    }
    for (const t of sig.inputs) {
      if (!t.optional && step.inputMap[t.name] === undefined) fail(`${field}.input_map`, `expected every input of '${step.modelName}' mapped, got none for '${t.name}'`);
    }
    for (const [key, tensor] of Object.entries(step.outputMap)) {
      const out = sig.outputs.find((t) => t.name === key);
      if (!out) return fail(`${field}.output_map["${key}"]`, `expected an output of '${step.modelName}' (${names(sig.outputs)}), got '${key}'`);
      const earlier = producers.get(tensor);
      if (earlier) fail(`${field}.output_map["${key}"]`, `expected each ensemble tensor produced once, got '${tensor}' again (also ${earlier.from})`);
      producers.set(tensor, { datatype: out.datatype, shape: shapeOf(out, sig.maxBatchSize > 0), from: `step ${i} ('${step.modelName}') output '${key}'` });
      producedBy.set(tensor, i);
    }
    steps.push({ index: i, model: step.modelName, version, inputs: Object.entries(step.inputMap), outputs: Object.entries(step.outputMap) });
    signatures.push(sig);
  }

  // Second pass: every edge has a producer whose type and shape fit its consumer.
  for (const [i, step] of steps.entries()) {
    const sig = signatures[i] as ModelSignature;
    for (const [input, tensor] of step.inputs) {
      const field = `ensemble_scheduling.step[${i}].input_map["${input}"]`;
      const from = producers.get(tensor);
      if (!from) return fail(field, `expected an ensemble input or a step output, got '${tensor}', which nothing produces`);
      const want = sig.inputs.find((t) => t.name === input) as TensorSignature;
      if (from.datatype !== want.datatype) fail(field, `expected ${want.datatype} (input '${input}' of '${step.model}'), got ${from.datatype} from ${from.from}`);
      const shape = shapeOf(want, sig.maxBatchSize > 0);
      if (!dimsFit(from.shape, shape)) fail(field, `expected shape ${dimsText(shape)} (input '${input}' of '${step.model}'), got ${dimsText(from.shape)} from ${from.from}`);
    }
  }
  for (const [j, out] of ensemble.outputs.entries()) {
    const from = producers.get(out.name);
    const field = `output[${j}]`;
    if (!from || !producedBy.has(out.name)) return fail(field, `expected a step to produce ensemble output '${out.name}', got none`);
    if (from.datatype !== out.datatype) fail(`${field}.data_type`, `expected ${from.datatype} as ${from.from} produces it, got ${out.datatype}`);
    const shape = shapeOf(out, batching);
    if (!dimsFit(from.shape, shape)) fail(`${field}.dims`, `expected a shape that fits ${dimsText(from.shape)} as ${from.from} produces it, got ${dimsText(shape)}`);
  }
  for (const name of outputNames) if (ensemble.inputs.some((t) => t.name === name)) fail('output', `expected outputs apart from the inputs, got '${name}' as both`);

  return { steps: topologicalOrder(steps, producedBy, fail), models: [...new Set(steps.map((s) => s.model))], outputs: [...outputNames] };
}

/** Kahn's algorithm over step → step edges; a step left over sits on a cycle. */
function topologicalOrder(steps: readonly PlannedStep[], producedBy: ReadonlyMap<string, number>, fail: (field: string, reason: string) => never): PlannedStep[] {
  const after = steps.map(() => new Set<number>());
  const waiting = steps.map(() => 0);
  for (const s of steps) {
    const needs = new Set<number>();
    for (const [, tensor] of s.inputs) {
      const p = producedBy.get(tensor);
      if (p !== undefined) needs.add(p);
    }
    waiting[s.index] = needs.size;
    for (const p of needs) after[p]?.add(s.index);
  }
  const ready = steps.filter((s) => waiting[s.index] === 0).map((s) => s.index);
  const order: PlannedStep[] = [];
  while (ready.length > 0) {
    const i = ready.shift() as number;
    order.push(steps[i] as PlannedStep);
    for (const next of after[i] ?? []) {
      waiting[next] = (waiting[next] ?? 0) - 1;
      if (waiting[next] === 0) ready.push(next);
    }
  }
  if (order.length < steps.length) {
    const cycle = steps.filter((s) => !order.includes(s)).map((s) => `step ${s.index} ('${s.model}')`);
    fail('ensemble_scheduling.step', `expected no cycle between steps, got one through ${cycle.join(', ')}`);
  }
  return order;
}
