import { describe, expect, it } from 'vitest';
import { ConfigError, parseModelConfig } from '../../models/config/model-config.js';
import { onnxRuntimeOptions } from '../../models/config/onnxruntime-options.js';

const FILE = 'models/m/config.pbtxt';
const optionsOf = (text: string): ReturnType<typeof onnxRuntimeOptions> => onnxRuntimeOptions(parseModelConfig(text, FILE).config, FILE);
const param = (key: string, value: string): string => `parameters { key: "${key}" value: { string_value: "${value}" } }\n`;

describe("onnxRuntimeOptions (Triton's onnxruntime backend names)", () => {
  it("defaults to ONNX Runtime's own choices when the config says nothing", () => {
    const defaults = {
      intraOpThreads: 0,
      interOpThreads: 0,
      graphOptimizationLevel: 'all',
      enableCpuMemArena: true,
      executionMode: 'sequential',
      enableMemPattern: true,
    };
    expect(onnxRuntimeOptions(undefined, FILE)).toEqual(defaults);
    expect(optionsOf('max_batch_size: 4\n' + param('my_own_key', 'kept out'))).toEqual(defaults);
  });

  it('reads thread counts, execution mode, memory flags and the graph level', () => {
    const text =
      param('intra_op_thread_count', '1') +
      param('inter_op_thread_count', ' 3 ') +
      param('execution_mode', '1') +
      param('enable_mem_arena', 'false') +
      param('enable_mem_pattern', '0') +
      'optimization { graph { level: -1 } }\n';
    expect(optionsOf(text)).toEqual({
      intraOpThreads: 1,
      interOpThreads: 3,
      graphOptimizationLevel: 'basic',
      enableCpuMemArena: false,
      executionMode: 'parallel',
      enableMemPattern: false,
    });
    expect(optionsOf('optimization { graph { level: 1 } }').graphOptimizationLevel).toBe('extended');
    expect(optionsOf('optimization { graph { level: 2 } }').graphOptimizationLevel).toBe('disabled');
    expect(optionsOf(param('enable_mem_arena', 'TRUE')).enableCpuMemArena).toBe(true);
  });

  it('refuses values it cannot use, naming the file and the parameter', () => {
    const refused = (text: string): ConfigError => {
      try {
        optionsOf(text);
      } catch (error) {
        if (error instanceof ConfigError) return error;
        throw error;
      }
      throw new Error('expected a ConfigError');
    };
    expect(refused(param('intra_op_thread_count', '-1')).message).toBe(
      `${FILE}: parameters["intra_op_thread_count"]: expected a thread count from 0 (ONNX Runtime's default) to 1024, got "-1"`,
    );
    expect(refused(param('inter_op_thread_count', '1.5')).field).toBe('parameters["inter_op_thread_count"]');
    expect(refused(param('intra_op_thread_count', '100000')).reason).toMatch(/got "100000"/);
    expect(refused(param('execution_mode', '2')).reason).toMatch(/expected 0 \(sequential\) or 1 \(parallel\), got "2"/);
    expect(refused(param('enable_mem_pattern', 'yes')).reason).toMatch(/expected "1", "0", "true" or "false", got "yes"/);
    expect(refused('optimization { graph { level: 3 } }').field).toBe('optimization.graph.level');
  });
});
