import * as ort from 'onnxruntime-node';
import { type Datatype, ortTypeOf } from '../../core/datatypes.js';
import { rawBytesElements } from './tensor-data.js';

/** Raw KServe bytes → the value ORT expects for that type (copied, aligned). */
function toOrtData(datatype: Datatype, raw: Uint8Array): ort.Tensor['data'] {
  const buf = raw.slice().buffer;
  switch (datatype) {
    case 'BOOL':
    case 'UINT8':
      return new Uint8Array(buf);
    case 'INT8':
      return new Int8Array(buf);
    case 'UINT16':
    case 'FP16':
      return new Uint16Array(buf);
    case 'INT16':
      return new Int16Array(buf);
    case 'UINT32':
      return new Uint32Array(buf);
    case 'INT32':
      return new Int32Array(buf);
    case 'UINT64':
      return new BigUint64Array(buf);
    case 'INT64':
      return new BigInt64Array(buf);
    case 'FP32':
      return new Float32Array(buf);
    case 'FP64':
      return new Float64Array(buf);
    case 'BYTES': {
      const b = Buffer.from(raw);
      const out: string[] = [];
      for (let o = 0; o < b.length; ) {
        const n = b.readUInt32LE(o);
        out.push(b.subarray(o + 4, o + 4 + n).toString('utf8'));
        o += 4 + n;
      }
      return out;
    }
    case 'BF16':
      throw new Error('BF16 is not supported by onnxruntime-node');
  }
}

/**
 * The package's Tensor, as its own session runs it. On a Node with
 * Float16Array (24 and later) onnxruntime-node's Tensor turns a float16
 * tensor's Uint16Array into a Float16Array, which its binding cannot read, so
 * its own session cannot run FP16 there: the raw bits are put back as the
 * tensor's data, the one property the binding reads them from (the worker
 * hands it plain objects: worker/ort-binding.ts Feed).
 */
export function packageTensor(type: ort.Tensor.Type, data: ort.Tensor['data'], dims: readonly number[]): ort.Tensor {
  const t = new ort.Tensor(type, data as never, dims);
  if (type === 'float16' && data instanceof Uint16Array && !(t.data instanceof Uint16Array)) Object.defineProperty(t, 'data', { value: data });
  return t;
}

function toRaw(t: ort.Tensor): Uint8Array {
  if (t.type === 'string') return rawBytesElements(t.data as string[]);
  const d = t.data as ArrayBufferView;
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

export interface RefTensor {
  readonly name: string;
  readonly datatype: Datatype;
  readonly shape: readonly number[];
  readonly raw: Uint8Array;
}

const sessions = new Map<string, Promise<ort.InferenceSession>>();

/** Runs a model in this process with onnxruntime-node: the reference every served answer must equal. */
export async function runReference(modelPath: string, inputs: readonly RefTensor[]): Promise<Map<string, { shape: number[]; raw: Uint8Array }>> {
  let session = sessions.get(modelPath);
  if (!session) {
    session = ort.InferenceSession.create(modelPath, { intraOpNumThreads: 1 });
    sessions.set(modelPath, session);
  }
  const s = await session;
  const feeds: Record<string, ort.Tensor> = {};
  for (const t of inputs) feeds[t.name] = packageTensor(ortTypeOf(t.datatype) as ort.Tensor.Type, toOrtData(t.datatype, t.raw), t.shape);
  const out = await s.run(feeds);
  const result = new Map<string, { shape: number[]; raw: Uint8Array }>();
  for (const [name, t] of Object.entries(out)) result.set(name, { shape: [...t.dims], raw: toRaw(t) });
  return result;
}
