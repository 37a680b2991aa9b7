// Seeded pseudo-random numbers for model weights. Only integer arithmetic
// (Math.imul, shifts) feeds the float conversion, so every run and platform
// produces the same sequence and therefore byte-identical model files.

/** mulberry32: a tiny 32-bit PRNG; returns a function giving floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a hash of a string: stable seeds from names such as 'mlp/fc1.weight'. */
export function seedFromString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** `count` floats uniform in [-scale, scale), from a generator seeded by `seed`. */
export function uniformFloat32(seed: number | string, count: number, scale: number): Float32Array {
  const next = mulberry32(typeof seed === 'string' ? seedFromString(seed) : seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = (next() * 2 - 1) * scale;
  return out;
}
