// How many gateway processes `fabriek serve` runs (--gateway-processes).
// Cores are those the process may use, within a container's CPU quota.
// One gateway process saturates one core with gRPC/HTTP/2 framing on a busy
// host; a GPU node's other cores idle. The default (auto) keeps one process
// on small hosts, where a second process only competes with the workers for
// the same cores, and on larger ones runs one gateway per four cores, at
// most eight (each gateway has its own repository scan, batchers and memory).

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** Gateway processes at most, whatever the flag says. */
export const MAX_GATEWAY_PROCESSES = 64;

/** auto: 1 below 8 cores, else min(8, floor(cores / 4)). */
export function defaultGatewayProcesses(cores: number): number {
  if (!Number.isFinite(cores) || cores < 8) return 1;
  return Math.min(8, Math.floor(cores / 4));
}

/** The flag's value (a count, or 'auto') resolved against the host's cores. */
export function resolveGatewayProcesses(flag: number | 'auto', cores: number): number {
  return flag === 'auto' ? defaultGatewayProcesses(cores) : flag;
}

/**
 * The CPUs a cgroup's quota allows, rounded up: cgroup v2's cpu.max ("max
 * 100000" or "QUOTA PERIOD"), or v1's cfs quota and period (quota -1 = none);
 * undefined without a limit.
 */
export function cgroupCpuLimit(v2: string | undefined, v1Quota?: string, v1Period?: string): number | undefined {
  const ratio = (quota: number, period: number): number | undefined =>
    Number.isFinite(quota) && Number.isFinite(period) && quota > 0 && period > 0 ? Math.max(1, Math.ceil(quota / period)) : undefined;
  if (v2 !== undefined) {
    const [quota, period] = v2.trim().split(/\s+/);
    if (quota === undefined || quota === 'max') return undefined;
    return ratio(Number(quota), Number(period ?? '100000'));
  }
  if (v1Quota === undefined || v1Period === undefined) return undefined;
  return ratio(Number(v1Quota.trim()), Number(v1Period.trim()));
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Cores this process may use: the CPUs it may run on (affinity), within the
 * container's CPU quota (a pod limited to 4 CPUs on a 64-core node sees 64
 * CPUs but gets 4).
 */
export function usableCores(): number {
  const limit = cgroupCpuLimit(
    readOptional('/sys/fs/cgroup/cpu.max'),
    readOptional('/sys/fs/cgroup/cpu/cpu.cfs_quota_us'),
    readOptional('/sys/fs/cgroup/cpu/cpu.cfs_period_us'),
  );
  return Math.min(availableParallelism(), limit ?? Number.POSITIVE_INFINITY);
}
