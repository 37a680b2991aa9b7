// Seeded randomness and a bounded-concurrency runner for the hostile-input
// tests. The seed is printed with every failure so a run can be replayed
// with FABRIEK_FUZZ_SEED.
import { mulberry32 } from '../../models/build/seeded-random.js';

export class Random {
  readonly seed: number;
  readonly #next: () => number;

  constructor(seed: number) {
    this.seed = seed;
    this.#next = mulberry32(seed);
  }

  /** [0, 1) */
  float(): number {
    return this.#next();
  }

  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.#next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.#next() < p;
  }

  pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.#next() * items.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }

  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(this.#next() * 256);
    return out;
  }

  /** Printable ASCII. */
  ascii(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += String.fromCharCode(32 + Math.floor(this.#next() * 95));
    return s;
  }

  /** A few random edits: flipped, replaced, inserted or deleted bytes, or a cut. */
  mutate(input: Buffer): Buffer {
    let b = Buffer.from(input);
    const edits = this.int(1, 8);
    for (let e = 0; e < edits; e++) {
      const at = this.int(0, Math.max(0, b.length - 1));
      switch (this.int(0, 5)) {
        case 0:
          if (b.length > 0) b[at] = (b[at] ?? 0) ^ (1 << this.int(0, 7));
          break;
        case 1:
          if (b.length > 0) b[at] = this.int(0, 255);
          break;
        case 2:
          b = Buffer.concat([b.subarray(0, at), this.bytes(this.int(1, 16)), b.subarray(at)]);
          break;
        case 3:
          b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + this.int(1, 16)))]);
          break;
        case 4:
          b = b.subarray(0, at);
          break;
        default:
          b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + this.int(1, 32)), b.subarray(at)]);
      }
    }
    return b;
  }
}

/** FABRIEK_FUZZ_SEED, else a fixed seed: the same inputs every run unless asked otherwise. */
export function fuzzSeed(): number {
  const raw = process.env['FABRIEK_FUZZ_SEED'];
  const n = raw === undefined ? 0x5eed_f00d : Number(raw);
  if (!Number.isInteger(n)) throw new Error(`FABRIEK_FUZZ_SEED must be an integer, got '${raw}'`);
  return n >>> 0;
}

/** Runs `fn` over `items` with at most `concurrency` at once; results in item order. */
export async function runBounded<T, R>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let nextIndex = 0;
  const lane = async (): Promise<void> => {
    for (;;) {
      const i = nextIndex++;
      if (i >= items.length) return;
      results[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, lane));
  return results;
}
