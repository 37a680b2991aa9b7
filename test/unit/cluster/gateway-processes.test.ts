import { describe, expect, it } from 'vitest';
import { cgroupCpuLimit, defaultGatewayProcesses, resolveGatewayProcesses, usableCores } from '../../../gateway/cluster/gateway-processes.js';
import { parseServeOptions, UsageError } from '../../../gateway/options.js';

describe('--gateway-processes', () => {
  it('auto: 1 below 8 cores, else one per 4 cores, at most 8', () => {
    expect([1, 2, 4, 7].map(defaultGatewayProcesses)).toEqual([1, 1, 1, 1]);
    expect([8, 11, 12, 16, 31, 32, 64, 256].map(defaultGatewayProcesses)).toEqual([2, 2, 3, 4, 7, 8, 8, 8]);
    expect(defaultGatewayProcesses(Number.NaN)).toBe(1);
  });

  it('a count is taken as given; auto (the default) is resolved against the cores', () => {
    expect(resolveGatewayProcesses(3, 2)).toBe(3);
    expect(resolveGatewayProcesses('auto', 16)).toBe(4);
    expect(parseServeOptions(['--model-repository', 'm']).gatewayProcesses).toBe('auto');
    expect(parseServeOptions(['--model-repository', 'm', '--gateway-processes', 'auto']).gatewayProcesses).toBe('auto');
    expect(parseServeOptions(['--model-repository', 'm', '--gateway-processes', '2']).gatewayProcesses).toBe(2);
    expect(() => parseServeOptions(['--model-repository', 'm', '--gateway-processes', '0'])).toThrow(UsageError);
    expect(() => parseServeOptions(['--model-repository', 'm', '--gateway-processes', 'many'])).toThrow(UsageError);
  });

  it('counts the cores a container CPU quota allows (cgroup v2 cpu.max, or v1 cfs quota and period)', () => {
    expect(cgroupCpuLimit('max 100000\n')).toBeUndefined();
    expect(cgroupCpuLimit('400000 100000\n')).toBe(4);
    expect(cgroupCpuLimit('150000 100000')).toBe(2);
    expect(cgroupCpuLimit('50000 100000')).toBe(1);
    expect(cgroupCpuLimit(undefined, '-1\n', '100000\n')).toBeUndefined();
    expect(cgroupCpuLimit(undefined, '800000\n', '100000\n')).toBe(8);
    expect(cgroupCpuLimit(undefined)).toBeUndefined();
    expect(usableCores()).toBeGreaterThanOrEqual(1);
  });
});
