import { type ModelSignature } from '../../core/signature.js';
import { type ModelConfig } from '../../proto/gen/model_config.js';
import { type Dispatcher } from '../scheduling/dispatcher.js';
import { type Scheduler } from '../scheduling/execution.js';
import { type InstanceSlots } from '../scheduling/instance-slots.js';
import { type ModelVersionStatistics } from '../stats/model-statistics.js';
import { type WorkerPlan } from '../../models/repository/placement.js';
import { type OutputLabels } from '../inference/classification.js';
import { type BatchIoPlan } from '../../models/config/batch-io-config.js';

/** Triton's model states, as RepositoryIndex reports them. */
export type ModelState = 'UNKNOWN' | 'READY' | 'UNAVAILABLE' | 'LOADING' | 'UNLOADING';

/** What a ready version has that a failed one lacks. */
export interface ServingParts {
  readonly config: ModelConfig;
  readonly signature: ModelSignature;
  readonly slots: InstanceSlots;
  readonly dispatcher: Dispatcher;
  readonly scheduler: Scheduler;
  readonly stats: ModelVersionStatistics;
  /** Per worker: how many instances it hosts, on which device. */
  readonly plans: readonly WorkerPlan[];
  /** What the instances on each local worker run on, by worker ID (core/kind-costs.ts): their cost model's kind. */
  readonly kinds: Map<string, string>;
  /** e.g. "cpu", "cuda:0", "webgpu:0", or "cpu (GPU unavailable: …)". */
  executionProvider: string;
  /** Each output's labels from its `label_filename`, for classification; absent = none. */
  readonly labels?: OutputLabels;
  /** Ragged inputs, batch inputs and batch outputs (Triton's ragged batching); absent = none. */
  readonly batchIo?: BatchIoPlan;
}

/** One version of one model and where it stands in its lifecycle. */
export interface ModelVersion {
  readonly name: string;
  readonly version: number;
  readonly key: string;
  readonly modelPath: string;
  state: ModelState;
  /** Why it is UNAVAILABLE (file and field for config errors). */
  reason: string;
  serving: ServingParts | undefined;
}

export function modelKey(name: string, version: number): string {
  return `${name}/${version}`;
}
