import { type Datatype } from '../../core/datatypes.js';
import { InferTensorContents } from '../../proto/gen/inference.js';

/** Deterministic sample values for a datatype, as the JS values ORT uses. */
export interface Sample {
  readonly raw: Uint8Array;
  readonly contents: InferTensorContents | undefined;
}

const contents = (partial: Partial<InferTensorContents>): InferTensorContents => InferTensorContents.fromPartial(partial);

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** Length-prefixed raw form of BYTES elements. */
export function rawBytesElements(elements: readonly string[]): Uint8Array {
  const parts = elements.map((e) => Buffer.from(e, 'utf8'));
  const out = Buffer.alloc(parts.reduce((n, p) => n + 4 + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.writeUInt32LE(p.length, o);
    p.copy(out, o + 4);
    o += 4 + p.length;
  }
  return out;
}

/** `count` values of `datatype` in raw and typed form (typed undefined for FP16). */
export function sample(datatype: Datatype, count: number): Sample {
  const idx = Array.from({ length: count }, (_, i) => i);
  switch (datatype) {
    case 'BOOL': {
      const v = idx.map((i) => i % 3 === 0);
      return { raw: Uint8Array.from(v, (b) => (b ? 1 : 0)), contents: contents({ boolContents: v }) };
    }
    case 'UINT8':
      return { raw: Uint8Array.from(idx, (i) => (i * 37) % 256), contents: contents({ uintContents: idx.map((i) => (i * 37) % 256) }) };
    case 'UINT16': {
      const a = Uint16Array.from(idx, (i) => (i * 7919) % 65536);
      return { raw: bytesOf(a), contents: contents({ uintContents: [...a] }) };
    }
    case 'UINT32': {
      const a = Uint32Array.from(idx, (i) => (i * 2654435761) % 2 ** 32);
      return { raw: bytesOf(a), contents: contents({ uintContents: [...a] }) };
    }
    case 'UINT64': {
      const a = BigUint64Array.from(idx, (i) => 2n ** 63n + BigInt(i) * 1_000_003n);
      return { raw: bytesOf(a), contents: contents({ uint64Contents: [...a] }) };
    }
    case 'INT8': {
      const a = Int8Array.from(idx, (i) => ((i * 37) % 256) - 128);
      return { raw: bytesOf(a), contents: contents({ intContents: [...a] }) };
    }
    case 'INT16': {
      const a = Int16Array.from(idx, (i) => ((i * 7919) % 65536) - 32768);
      return { raw: bytesOf(a), contents: contents({ intContents: [...a] }) };
    }
    case 'INT32': {
      const a = Int32Array.from(idx, (i) => (i % 2 === 0 ? -1 : 1) * i * 100_003);
      return { raw: bytesOf(a), contents: contents({ intContents: [...a] }) };
    }
    case 'INT64': {
      const a = BigInt64Array.from(idx, (i) => (i % 2 === 0 ? -1n : 1n) * (2n ** 40n + BigInt(i)));
      return { raw: bytesOf(a), contents: contents({ int64Contents: [...a] }) };
    }
    case 'FP16': {
      // Bit patterns of 0, 1, -2, 0.5, … : FP16 travels raw only.
      const a = Uint16Array.from(idx, (i) => [0x0000, 0x3c00, 0xc000, 0x3800, 0x7bff][i % 5] ?? 0);
      return { raw: bytesOf(a), contents: undefined };
    }
    case 'FP32': {
      const a = Float32Array.from(idx, (i) => Math.sin(i) * 10);
      return { raw: bytesOf(a), contents: contents({ fp32Contents: [...a] }) };
    }
    case 'FP64': {
      const a = Float64Array.from(idx, (i) => Math.cos(i) * 1e10);
      return { raw: bytesOf(a), contents: contents({ fp64Contents: [...a] }) };
    }
    case 'BYTES': {
      const v = idx.map((i) => (i % 4 === 0 ? '' : `élément-${i}-${'x'.repeat(i % 7)}`));
      return { raw: rawBytesElements(v), contents: contents({ bytesContents: v.map((s) => Buffer.from(s, 'utf8')) }) };
    }
    case 'BF16':
      throw new Error('BF16 has no sample: ONNX Runtime for Node cannot run it');
  }
}
