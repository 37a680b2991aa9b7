import { type Logger } from 'pino';
import { type HostedModel } from '../core/worker-record.js';
import { batchesRequests } from '../models/config/model-config.js';
import { onnxRuntimeOptions } from '../models/config/onnxruntime-options.js';
import { planInstances } from '../models/repository/placement.js';
import { scanRepository } from '../models/repository/scan.js';
import { messageOf } from './errors.js';
import { type ModelHost } from './model-host.js';
import { loadSpecOf } from './service.js';
import { type DeviceRequest, type TensorSpecInfo } from './thread-protocol.js';

// A standalone worker (`fabriek worker --registry …`) loads its models itself
// from its own copy of the repository: every selected version of every model
// that scans cleanly, with the instance count its instance groups give this
// device (as placement gives a gateway's local workers), several at once. A
// model that fails to load is logged and left out; the others are served.

/** Loads in flight at once: enough to keep a large pool busy, few enough to hold little in memory. */
const CONCURRENT_LOADS = 64;

export interface RepositoryLoad {
  readonly models: HostedModel[];
  readonly failed: ReadonlyArray<{ readonly key: string; readonly reason: string }>;
}

function toSpec(spec: TensorSpecInfo): HostedModel['inputs'][number] {
  return { name: spec.name, datatype: spec.datatype, shape: [...spec.shape], dimNames: [...spec.dimNames] };
}

export async function loadRepository(
  directory: string,
  self: { readonly id: string; readonly device: DeviceRequest },
  host: ModelHost,
  logger: Logger,
): Promise<RepositoryLoad> {
  const scan = await scanRepository(directory);
  const device = self.device;
  const endpoint = { id: self.id, deviceKind: device.kind, deviceId: device.kind === 'gpu' ? device.deviceId : 0 };
  const failed: Array<{ key: string; reason: string }> = [];
  const jobs: Array<() => Promise<HostedModel | undefined>> = [];
  for (const entry of scan.models) {
    if (entry.error) {
      logger.error({ model: entry.name, reason: entry.error }, 'model skipped');
      failed.push({ key: entry.name, reason: entry.error });
      continue;
    }
    const [plan] = planInstances(entry.config?.instanceGroup ?? [], [endpoint]);
    if (!plan) continue;
    for (const v of entry.versions) {
      const key = `${entry.name}/${v.version}`;
      jobs.push(async () => {
        try {
          const spec = loadSpecOf(
            {
              modelKey: key,
              modelPath: v.path,
              modelBytes: Buffer.alloc(0),
              instanceCount: plan.instanceCount,
              deviceKind: plan.deviceKind,
              deviceId: plan.deviceId,
              sessionOptions: onnxRuntimeOptions(entry.config, entry.configFile ?? `model "${entry.name}"`),
              // Executions from several gateways merge up to the config's max_batch_size (none without one:
              // the gateways' --default-max-batch-size is not known here; none without dynamic batching,
              // which runs each request alone).
              maxBatchSize:
                entry.config !== undefined && entry.present.has('max_batch_size') && batchesRequests(entry.config) ? entry.config.maxBatchSize : 0,
            },
            device,
          );
          const info = await host.load(spec);
          return {
            key,
            name: entry.name,
            version: v.version,
            instances: plan.instanceCount,
            executionProvider: info.fallbackReason ? `${info.executionProvider} (GPU unavailable: ${info.fallbackReason})` : info.executionProvider,
            inputs: info.inputs.map(toSpec),
            outputs: info.outputs.map(toSpec),
            ...(entry.configText === undefined ? {} : { config: entry.configText }),
          };
        } catch (error) {
          const reason = messageOf(error);
          logger.error({ model: key, reason }, 'model failed to load');
          failed.push({ key, reason });
          return undefined;
        }
      });
    }
  }
  // Several loads at once, so that every thread of the ORT pool creates
  // sessions (it takes one creation per thread at a time); results in scan order.
  const loaded: Array<HostedModel | undefined> = new Array<HostedModel | undefined>(jobs.length);
  let next = 0;
  const loadNext = async (): Promise<void> => {
    for (let i = next++; i < jobs.length; i = next++) loaded[i] = await (jobs[i] as () => Promise<HostedModel | undefined>)();
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENT_LOADS, jobs.length) }, loadNext));
  const models = loaded.filter((m): m is HostedModel => m !== undefined);
  return { models, failed };
}
