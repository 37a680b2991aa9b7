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

  it('reads a sequence\'s ID (uint64 or string) and flags, refusing other types', () => {
    expect(schedulingParameters({ sequence_id: 7n, sequence_start: true }, 'm')).toEqual({ sequence: { id: 7n, start: true, end: false } });
    expect(schedulingParameters({ sequence_id: 7, sequence_end: true }, 'm')).toEqual({ sequence: { id: 7n, start: false, end: true } });
    expect(schedulingParameters({ sequence_id: 'abc' }, 'm')).toEqual({ sequence: { id: 'abc', start: false, end: false } });
    expect(schedulingParameters({ sequence_id: 2n ** 64n - 1n }, 'm').sequence?.id).toBe(2n ** 64n - 1n);
    // Flags without an ID name no sequence: the sequence scheduler refuses the request, other models ignore them.
    expect(schedulingParameters({ sequence_start: true }, 'm')).toEqual({});
    expect(() => schedulingParameters({ sequence_id: -1 }, 'm')).toThrow("model 'm': parameter 'sequence_id': expected an unsigned 64-bit integer or a string, got \"-1\"");
    expect(() => schedulingParameters({ sequence_id: 1.5 }, 'm')).toThrow("parameter 'sequence_id'");
    expect(() => schedulingParameters({ sequence_id: 2 ** 60 }, 'm')).toThrow('is past 2^53 - 1 (9007199254740991), where a JSON number loses its exact value; send such an ID as a string');
    expect(() => schedulingParameters({ sequence_id: 2n ** 64n }, 'm')).toThrow("parameter 'sequence_id'");
    expect(() => schedulingParameters({ sequence_id: 1, sequence_end: 1 }, 'm')).toThrow("model 'm': parameter 'sequence_end': expected a boolean, got \"1\"");
  });
});
