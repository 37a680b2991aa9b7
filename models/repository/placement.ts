import { ModelInstanceGroup_Kind, type ModelInstanceGroup } from '../../proto/gen/model_config.js';

/** A worker as placement sees it: which device it serves. */
export interface DeviceHost {
  readonly id: string;
  readonly deviceKind: 'cpu' | 'gpu';
  readonly deviceId: number;
}

/** How many sessions of a model one worker hosts, and on which device. */
export interface WorkerPlan {
  readonly workerId: string;
  readonly instanceCount: number;
  readonly deviceKind: 'cpu' | 'gpu';
  readonly deviceId: number;
}

/**
 * Places a model's instance groups on workers, as Triton places them on
 * devices: KIND_GPU groups on the GPU workers listed in `gpus` (all GPU
 * workers when empty), KIND_CPU groups on every CPU worker (or on the first
 * worker when all are GPU workers), KIND_AUTO on GPUs when there are any.
 * Groups landing on the same worker add up. No groups: one instance per worker.
 */
export function planInstances(
  groups: readonly ModelInstanceGroup[],
  workers: readonly DeviceHost[],
): WorkerPlan[] {
  const gpuWorkers = workers.filter((w) => w.deviceKind === 'gpu');
  const cpuWorkers = workers.filter((w) => w.deviceKind === 'cpu');
  const effective: readonly ModelInstanceGroup[] =
    groups.length > 0 ? groups : [{ name: '', kind: ModelInstanceGroup_Kind.KIND_AUTO, count: 1, gpus: [], profile: [], passive: false, hostPolicy: '' }];
  const plans = new Map<string, { count: number; gpu: boolean; worker: DeviceHost }>();
  const add = (worker: DeviceHost, count: number, gpu: boolean): void => {
    const prev = plans.get(worker.id);
    plans.set(worker.id, { worker, count: (prev?.count ?? 0) + count, gpu: (prev?.gpu ?? false) || gpu });
  };
  for (const group of effective) {
    const count = Math.max(1, group.count);
    const wantsGpu =
      group.kind === ModelInstanceGroup_Kind.KIND_GPU ||
      (group.kind !== ModelInstanceGroup_Kind.KIND_CPU && gpuWorkers.length > 0);
    if (wantsGpu && gpuWorkers.length > 0) {
      const targets = group.gpus.length > 0 ? gpuWorkers.filter((w) => group.gpus.includes(w.deviceId)) : gpuWorkers;
      for (const w of targets) add(w, count, true);
    } else {
      const targets = cpuWorkers.length > 0 ? cpuWorkers : workers.slice(0, 1);
      for (const w of targets) add(w, count, false);
    }
  }
  return [...plans.values()].map(({ worker, count, gpu }) => ({
    workerId: worker.id,
    instanceCount: count,
    deviceKind: gpu && worker.deviceKind === 'gpu' ? 'gpu' : 'cpu',
    deviceId: worker.deviceId,
  }));
}
