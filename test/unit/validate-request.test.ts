import { describe, expect, it } from 'vitest';
import { expectInvalid } from '../helpers/expect-invalid.js';
import { type Datatype } from '../../core/datatypes.js';
import { type ModelSignature, type TensorSignature } from '../../core/signature.js';
import { type Tensor } from '../../core/tensor.js';
import { validateInputs } from '../../gateway/validate-request.js';


const sig = (
  name: string,
  datatype: Datatype,
  dims: number[],
  dimNames: string[] = dims.map(() => ''),
  optional = false,
): TensorSignature => ({ name, datatype, dims, dimNames, optional });

// Validation never looks at the bytes; an empty view keeps the fixtures short.
const t = (name: string, datatype: Datatype, shape: number[]): Tensor => ({
  name,
  datatype,
  shape,
  data: new Uint8Array(0),
});

const mlp: ModelSignature = {
  name: 'mlp',
  version: '1',
  maxBatchSize: 8,
  inputs: [sig('input', 'FP32', [784])],
  outputs: [sig('logits', 'FP32', [10]), sig('probs', 'FP32', [10])],
};

const bert: ModelSignature = {
  name: 'bert',
  version: '1',
  maxBatchSize: 4,
  inputs: [
    sig('ids', 'INT64', [-1], ['seq']),
    sig('mask', 'INT64', [-1], ['seq']),
    sig('types', 'INT64', [-1], ['seq'], true),
  ],
  outputs: [sig('hidden', 'FP32', [-1, 768], ['seq', ''])],
};

const plain: ModelSignature = {
  name: 'plain',
  version: '1',
  maxBatchSize: 0,
  inputs: [sig('x', 'FP32', [-1, 3], ['n', '']), sig('w', 'FP32', [3, -1], ['', 'n'])],
  outputs: [sig('y', 'FP32', [-1])],
};

describe('validateInputs: accepted requests', () => {
  it('batching model: batch size is the leading dim', () => {
    expect(validateInputs(mlp, [t('input', 'FP32', [3, 784])], [])).toEqual({ batchSize: 3 });
    expect(validateInputs(mlp, [t('input', 'FP32', [8, 784])], ['probs', 'logits'])).toEqual({ batchSize: 8 });
  });

  it('symbolic dims that agree; optional inputs may be left out', () => {
    const ok = [t('ids', 'INT64', [2, 7]), t('mask', 'INT64', [2, 7])];
    expect(validateInputs(bert, ok, ['hidden'])).toEqual({ batchSize: 2 });
    expect(validateInputs(bert, [...ok, t('types', 'INT64', [2, 7])], [])).toEqual({ batchSize: 2 });
  });

  it('non-batching model: shape is dims, batch size 1', () => {
    expect(validateInputs(plain, [t('x', 'FP32', [5, 3]), t('w', 'FP32', [3, 5])], ['y'])).toEqual({ batchSize: 1 });
  });
});

describe('validateInputs: rejected requests', () => {
  it('unknown input', () => {
    expectInvalid(
      () => validateInputs(mlp, [t('x', 'FP32', [1, 784])], []),
      "model 'mlp': input 'x' is not an input of the model (inputs: input)",
    );
  });

  it('duplicate input', () => {
    expectInvalid(
      () => validateInputs(mlp, [t('input', 'FP32', [1, 784]), t('input', 'FP32', [1, 784])], []),
      "model 'mlp': input 'input' is given more than once",
    );
  });

  it('missing required input', () => {
    expectInvalid(
      () => validateInputs(bert, [t('ids', 'INT64', [1, 4])], []),
      "model 'bert': missing required input 'mask' (inputs: ids, mask, types)",
    );
    expectInvalid(() => validateInputs(mlp, [], []), "model 'mlp': missing required input 'input' (inputs: input)");
  });

  it('wrong datatype', () => {
    expectInvalid(
      () => validateInputs(mlp, [t('input', 'FP64', [1, 784])], []),
      "model 'mlp': input 'input': expected datatype FP32, got FP64",
    );
  });

  it('wrong rank or a fixed dim that differs', () => {
    expectInvalid(
      () => validateInputs(mlp, [t('input', 'FP32', [2, 783])], []),
      "model 'mlp': input 'input': expected shape [-1,784], got [2,783]",
    );
    expectInvalid(
      () => validateInputs(mlp, [t('input', 'FP32', [784])], []),
      "model 'mlp': input 'input': expected shape [-1,784], got [784]",
    );
    expectInvalid(
      () => validateInputs(plain, [t('x', 'FP32', [1, 5, 3])], []),
      "model 'plain': input 'x': expected shape [-1,3], got [1,5,3]",
    );
    expectInvalid(
      () => validateInputs(plain, [t('x', 'FP32', [5, 3]), t('w', 'FP32', [4, 5])], []),
      "model 'plain': input 'w': expected shape [3,-1], got [4,5]",
    );
  });

  it('symbolic dims that disagree across inputs', () => {
    expectInvalid(
      () => validateInputs(bert, [t('ids', 'INT64', [2, 7]), t('mask', 'INT64', [2, 5])], []),
      "model 'bert': input 'mask': dimension 'seq' must match input 'ids' (expected 7, got 5)",
    );
    expectInvalid(
      () => validateInputs(plain, [t('x', 'FP32', [5, 3]), t('w', 'FP32', [3, 6])], []),
      "model 'plain': input 'w': dimension 'n' must match input 'x' (expected 5, got 6)",
    );
  });

  it('batch size: at least 1, at most max_batch_size, the same across inputs', () => {
    expectInvalid(
      () => validateInputs(mlp, [t('input', 'FP32', [0, 784])], []),
      "model 'mlp': input 'input': expected batch size at least 1, got 0",
    );
    expectInvalid(
      () => validateInputs(mlp, [t('input', 'FP32', [9, 784])], []),
      "model 'mlp': batch size 9 exceeds max_batch_size 8",
    );
    expectInvalid(
      () => validateInputs(bert, [t('ids', 'INT64', [2, 7]), t('mask', 'INT64', [3, 7])], []),
      "model 'bert': input 'mask': expected batch size 2 (as input 'ids'), got 3",
    );
  });

  it('requested outputs must exist, once each', () => {
    expectInvalid(
      () => validateInputs(mlp, [t('input', 'FP32', [1, 784])], ['logits', 'scores']),
      "model 'mlp': output 'scores' is not an output of the model (outputs: logits, probs)",
    );
    expectInvalid(
      () => validateInputs(mlp, [t('input', 'FP32', [1, 784])], ['probs', 'probs']),
      "model 'mlp': output 'probs' is requested more than once",
    );
  });
});

describe('BYTES elements that ONNX Runtime strings cannot carry', () => {
  const strings: ModelSignature = {
    name: 'str',
    version: '1',
    maxBatchSize: 4,
    inputs: [sig('INPUT0', 'BYTES', [-1])],
    outputs: [sig('OUTPUT0', 'BYTES', [-1])],
  };
  const bytes = (...elements: number[][]): Tensor => {
    const parts = elements.map((e) => [e.length, 0, 0, 0, ...e]);
    return { name: 'INPUT0', datatype: 'BYTES', shape: [1, elements.length], data: Uint8Array.from(parts.flat()) };
  };

  it('accepts UTF-8 elements, empty ones included', () => {
    expect(validateInputs(strings, [bytes([0x61], [], [0xc3, 0xa9])], []).batchSize).toBe(1);
  });

  it('refuses a NUL byte and invalid UTF-8', () => {
    expectInvalid(
      () => validateInputs(strings, [bytes([0x61, 0x00, 0x62])], []),
      "model 'str': input 'INPUT0': BYTES element contains a NUL byte, which ONNX Runtime strings cannot carry",
    );
    expectInvalid(
      () => validateInputs(strings, [bytes([0xff, 0xfe])], []),
      "model 'str': input 'INPUT0': BYTES element is not valid UTF-8, which ONNX Runtime strings require",
    );
  });
});
