import type ort from 'onnxruntime-node';
import { datatypeFromOrtType, ortTypeOf, type Datatype } from '../core/datatypes.js';
import { decodeBytesElements, encodeBytesElements } from './bytes-elements.js';
import { type Feed } from './ort-binding.js';
import { type ThreadTensor } from './thread-protocol.js';

// ThreadTensor (raw bytes in a whole ArrayBuffer) → the binding's input
// (ort-binding.ts Feed), and its output back, on the thread that runs the
// session. Numeric tensors are views over the received buffer (no copy); only
// BYTES are decoded to / encoded from string[].

type NumericData = Exclude<ort.Tensor.DataType, string[]>;

function typedView(datatype: Datatype, buffer: ArrayBuffer): NumericData {
  switch (datatype) {
    case 'BOOL':
    case 'UINT8':
      return new Uint8Array(buffer);
    case 'INT8':
      return new Int8Array(buffer);
    case 'UINT16':
    case 'FP16':
      // The binding takes float16 as its raw bits in a Uint16Array, on every Node.
      return new Uint16Array(buffer);
    case 'INT16':
      return new Int16Array(buffer);
    case 'UINT32':
      return new Uint32Array(buffer);
    case 'INT32':
      return new Int32Array(buffer);
    case 'UINT64':
      return new BigUint64Array(buffer);
    case 'INT64':
      return new BigInt64Array(buffer);
    case 'FP32':
      return new Float32Array(buffer);
    case 'FP64':
      return new Float64Array(buffer);
    case 'BF16':
    case 'BYTES':
      throw new Error(`datatype ${datatype} has no typed-array form in onnxruntime-node`);
  }
}

/** An input the session can run on; numeric data is not copied. */
export function toFeed(tensor: ThreadTensor): Feed {
  if (tensor.datatype === 'BYTES') {
    return { type: 'string', dims: tensor.shape, location: 'cpu', data: decodeBytesElements(tensor.data) };
  }
  const type = ortTypeOf(tensor.datatype);
  if (type === 'bfloat16') throw new Error('datatype BF16 is not supported by onnxruntime-node');
  return { type, dims: tensor.shape, location: 'cpu', data: typedView(tensor.datatype, tensor.data) };
}

/**
 * An output as a ThreadTensor. Its ArrayBuffer is pushed onto `transfer`;
 * ORT's output arrays normally own a whole buffer, which is then moved as is.
 */
export function fromOrtTensor(name: string, value: ort.OnnxValue, transfer: ArrayBuffer[]): ThreadTensor {
  const datatype = datatypeFromOrtType(value.type);
  if (datatype === undefined) {
    throw new Error(`output "${name}" has ONNX Runtime type ${value.type}, which has no KServe datatype`);
  }
  const shape = [...value.dims];
  let data: ArrayBuffer;
  if (datatype === 'BYTES') {
    const strings = value.data;
    if (!Array.isArray(strings)) throw new Error(`output "${name}" is a string tensor without string data`);
    data = encodeBytesElements(strings.map(String));
  } else {
    const view = value.data;
    if (!ArrayBuffer.isView(view)) throw new Error(`output "${name}" (${value.type}) has no typed-array data`);
    data = wholeBuffer(view);
  }
  transfer.push(data);
  return { name, datatype, shape, data };
}

function wholeBuffer(view: ArrayBufferView): ArrayBuffer {
  const { buffer } = view;
  if (buffer instanceof ArrayBuffer && view.byteOffset === 0 && view.byteLength === buffer.byteLength) return buffer;
  return new Uint8Array(buffer, view.byteOffset, view.byteLength).slice().buffer;
}
