import { describe, expect, it } from 'vitest';
import { parametersFromProto } from '../../gateway/grpc/parameters.js';
import { schedulingParameters } from '../../gateway/inference/request-parameters.js';

describe('request parameters', () => {
  it('turns KServe oneof parameters into plain values, dropping unset ones; none gives one shared empty object', () => {
    const none = parametersFromProto({});
    expect(none).toEqual({});
    expect(parametersFromProto({})).toBe(none);
    expect(Object.isFrozen(none)).toBe(true);
    expect(
      parametersFromProto({
        priority: { parameterChoice: { $case: 'int64Param', value: 2n } },
        tag: { parameterChoice: { $case: 'stringParam', value: 'x' } },
        unset: { parameterChoice: undefined },
      }),
    ).toEqual({ priority: 2n, tag: 'x' });
  });

  it('reads priority and timeout, refuses values that are not non-negative integers, and ignores the rest', () => {
    expect(schedulingParameters({}, 'm')).toEqual({});
    expect(schedulingParameters({ tag: 'x' }, 'm')).toEqual({});
    expect(schedulingParameters({ priority: 2n, timeout: 500 }, 'm')).toEqual({ priority: 2, timeoutUs: 500 });
    expect(schedulingParameters({ priority: 0, timeout: 0 }, 'm')).toEqual({});
    expect(() => schedulingParameters({ priority: -1 }, 'm')).toThrow("model 'm': parameter 'priority': expected a non-negative integer, got \"-1\"");
    expect(() => schedulingParameters({ timeout: 'soon' }, 'm')).toThrow("model 'm': parameter 'timeout': expected a non-negative integer");
  });
});
