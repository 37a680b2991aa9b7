import { type Logger } from 'pino';
import { internal } from '../../core/errors.js';
import { type CallContext } from '../grpc/call-context.js';
import { type ModelManager } from '../repository/model-manager.js';
import { validateInputs } from '../validate-request.js';
import { type JobResult } from '../scheduling/execution.js';
import { type InferRequest, type InferResult } from './infer-request.js';
import { logRequest, requestIdOf } from './request-log.js';
import { schedulingParameters } from './request-parameters.js';

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
  trace?: { readonly log: Logger; readonly protocol: 'grpc' | 'http' },
): Promise<InferResult> {
  const start = process.hrtime.bigint();
  // The log line's fields are built only when debug is on: this is per request.
  if (!trace?.log.isLevelEnabled('debug')) return inferOnce(models, request, context, start);
  const fields = {
    reqId: requestIdOf(request.id),
    protocol: trace.protocol,
    model: request.modelName,
    version: request.modelVersion,
    startNs: start,
  } as const;
  try {
    const result = await inferOnce(models, request, context, start);
    logRequest(trace.log, { ...fields, version: result.modelVersion });
    return result;
  } catch (error) {
    logRequest(trace.log, fields, error);
    throw error;
  }
}

async function inferOnce(
  models: ModelManager,
  request: InferRequest,
  context: Pick<CallContext, 'signal' | 'deadline'>,
  start: bigint,
): Promise<InferResult> {
  const version = models.resolve(request.modelName, request.modelVersion);
  const serving = version.serving;
  if (!serving) throw internal(`model '${version.key}' is ready but has no scheduler`);
  let batchSize: number;
  let result: JobResult;
  try {
    ({ batchSize } = validateInputs(serving.signature, request.inputs, request.outputs));
    const params = schedulingParameters(request.parameters, version.name);
    result = await serving.scheduler.enqueue({
      inputs: request.inputs,
      outputs: request.outputs,
      signal: context.signal,
      deadline: context.deadline,
      batchSize,
      ...params,
    });
  } catch (error) {
    serving.stats.failed(Number(process.hrtime.bigint() - start), error);
    throw error;
  }
  serving.stats.succeeded(batchSize, Number(process.hrtime.bigint() - start), result);
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
