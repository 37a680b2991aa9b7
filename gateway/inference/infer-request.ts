import { type Tensor } from '../../core/tensor.js';
import { type Tenant } from '../tenants/tenant.js';
import { type ClassCounts } from './classification.js';

/** A decoded inference request, whichever protocol it came by. */
export interface InferRequest {
  readonly modelName: string;
  /** "" = latest ready version. */
  readonly modelVersion: string;
  readonly id: string;
  readonly inputs: readonly Tensor[];
  /** Requested output names; empty = every output of the model. */
  readonly outputs: readonly string[];
  /** Request-level parameters (`priority`, `timeout`, …) as the protocol gave them. */
  readonly parameters: Readonly<Record<string, InferParameterValue>>;
  /** Who sent it (admission); undefined = the open tenant of a server without tenants. */
  readonly tenant?: Tenant | undefined;
  /** Requested outputs to return as their top classes (Triton's classification extension); undefined = none. */
  readonly classifications?: ClassCounts | undefined;
}

/** A request parameter's value, protocol-neutral. */
export type InferParameterValue = boolean | number | bigint | string;

export interface InferResult {
  readonly modelName: string;
  readonly modelVersion: string;
  readonly id: string;
  /** In the order requested, or the model's order when all were asked for. */
  readonly outputs: readonly Tensor[];
}
