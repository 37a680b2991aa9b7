import { type PbScalar } from './pbtxt.js';

/**
 * How one protobuf scalar type reads a text-format value. `expected` is the
 * phrase an error message uses ("expected <expected>, got …").
 */
export interface ScalarType<T> {
  readonly expected: string;
  /** The value, or undefined when the text does not fit the type. */
  read(value: PbScalar): T | undefined;
}

/** Decimal, hex (0x1F) and octal (017) integers, as protobuf's text format reads them. */
export function parseIntegerText(text: string): bigint | undefined {
  const m = /^(-?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
  const body = m?.[2];
  if (body === undefined) return undefined;
  const isOctal = body.length > 1 && body.startsWith('0') && !/^0[xX]/.test(body);
  const magnitude = isOctal ? BigInt(`0o${body.slice(1)}`) : BigInt(body);
  return m?.[1] === '-' ? -magnitude : magnitude;
}

export function integerType(min: bigint, max: bigint, expected: string): ScalarType<bigint> {
  return {
    expected,
    read(value) {
      if (value.kind !== 'number') return undefined;
      const n = parseIntegerText(value.text);
      return n !== undefined && n >= min && n <= max ? n : undefined;
    },
  };
}

/** An integer type narrowed further (e.g. dims: -1 or ≥ 1), with its own wording. */
export function refine(base: ScalarType<bigint>, ok: (n: bigint) => boolean, expected: string): ScalarType<bigint> {
  return {
    expected,
    read(value) {
      const n = base.read(value);
      return n !== undefined && ok(n) ? n : undefined;
    },
  };
}

/** Integers that fit in 32 bits come out as numbers, as ts-proto types them. */
export function asNumber(base: ScalarType<bigint>): ScalarType<number> {
  return {
    expected: base.expected,
    read(value) {
      const n = base.read(value);
      return n === undefined ? undefined : Number(n);
    },
  };
}

const INT32_MIN = -(2n ** 31n);
const INT32_MAX = 2n ** 31n - 1n;
const UINT32_MAX = 2n ** 32n - 1n;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

export const INT32 = asNumber(integerType(INT32_MIN, INT32_MAX, `an integer from ${INT32_MIN} to ${INT32_MAX}`));
export const NON_NEGATIVE_INT32 = asNumber(integerType(0n, INT32_MAX, `a non-negative integer up to ${INT32_MAX}`));
export const POSITIVE_INT32 = asNumber(integerType(1n, INT32_MAX, `a positive integer up to ${INT32_MAX}`));
export const UINT32 = asNumber(integerType(0n, UINT32_MAX, `a non-negative integer up to ${UINT32_MAX}`));
export const POSITIVE_UINT32 = asNumber(integerType(1n, UINT32_MAX, `a positive integer up to ${UINT32_MAX}`));
export const INT64 = integerType(INT64_MIN, INT64_MAX, `an integer from ${INT64_MIN} to ${INT64_MAX}`);
export const NON_NEGATIVE_INT64 = integerType(0n, INT64_MAX, 'a non-negative integer');
export const UINT64 = integerType(0n, UINT64_MAX, 'a non-negative integer');
/** A tensor dimension as config.pbtxt writes it (Triton rejects 0 and < -1). */
export const DIM = refine(INT64, (n) => n === -1n || n >= 1n, '-1 (any size) or a positive integer');

export const STRING: ScalarType<string> = {
  expected: 'a quoted string',
  read: (value) => (value.kind === 'string' ? value.value : undefined),
};

/** A float field (protobuf `float`): decimal or exponent text, an optional `f` suffix. */
export const FLOAT: ScalarType<number> = {
  expected: 'a number',
  read(value) {
    if (value.kind !== 'number') return undefined;
    const n = Number(value.text.replace(/[fF]$/, ''));
    return Number.isFinite(n) ? Math.fround(n) : undefined;
  },
};

export const BOOL: ScalarType<boolean> = {
  expected: 'true or false',
  read(value) {
    const text = value.kind === 'string' ? undefined : value.text;
    if (text === 'true' || text === 'True' || text === 't' || text === '1') return true;
    if (text === 'false' || text === 'False' || text === 'f' || text === '0') return false;
    return undefined;
  },
};

/**
 * An enum read by value name (`KIND_GPU`) or, as protobuf allows, by number.
 * Built from a ts-proto enum object; UNRECOGNIZED (-1) is not a value.
 */
export function enumType<E extends number>(values: Readonly<Record<string, string | E>>): ScalarType<E> {
  const byName = new Map<string, E>();
  for (const [key, v] of Object.entries(values)) {
    if (typeof v === 'number' && v >= 0) byName.set(key, v);
  }
  const byNumber = new Map<bigint, E>([...byName.values()].map((v) => [BigInt(v), v]));
  return {
    expected: `one of ${[...byName.keys()].join(', ')}`,
    read(value) {
      if (value.kind === 'identifier') return byName.get(value.text);
      if (value.kind === 'number') {
        const n = parseIntegerText(value.text);
        return n === undefined ? undefined : byNumber.get(n);
      }
      return undefined;
    },
  };
}
