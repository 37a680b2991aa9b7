import { internal } from '../../core/errors.js';
import { type CallContext } from '../grpc/call-context.js';
import { type ModelManager } from '../repository/model-manager.js';
import { validateInputs } from '../validate-request.js';
import { type InferRequest, type InferResult } from './infer-request.js';

/**
 * The protocol-neutral path of one request: find the serving version,
 * validate the inputs against its signature (ONNX Runtime itself would
 * silently ignore unknown inputs), queue it on the version's scheduler, and
 * keep the outputs the client asked for.
 */
export async function runInference(
  models: ModelManager,
  request: InferRequest,
  context: Pick<CallContext, 'signal' | 'deadline'>,
): Promise<InferResult> {
  const version = models.resolve(request.modelName, request.modelVersion);
  const serving = version.serving;
  if (!serving) throw internal(`model '${version.key}' is ready but has no scheduler`);
  const { batchSize } = validateInputs(serving.signature, [...request.inputs], [...request.outputs]);
  const result = await serving.scheduler.enqueue({
    inputs: request.inputs,
    outputs: request.outputs,
    signal: context.signal,
    deadline: context.deadline,
    batchSize,
  });
  return {
    modelName: version.name,
    modelVersion: String(version.version),
    id: request.id,
    outputs: orderOutputs(result.outputs, request.outputs, version.key),
  };
}

function orderOutputs(outputs: InferResult['outputs'], requested: readonly string[], key: string): InferResult['outputs'] {
  if (requested.length === 0) return outputs;
  return requested.map((name) => {
    const t = outputs.find((o) => o.name === name);
    if (!t) throw internal(`model '${key}': worker did not return requested output '${name}'`);
    return t;
  });
}
