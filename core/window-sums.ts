// Sums of two figures over the last `size` samples (a ring): what a rate over
// a sliding window needs, one add and one subtract per sample.

export class WindowSums {
  readonly #a: Float64Array;
  readonly #b: Float64Array;
  #next = 0;
  #count = 0;
  #sumA = 0;
  #sumB = 0;

  constructor(readonly size: number) {
    this.#a = new Float64Array(size);
    this.#b = new Float64Array(size);
  }

  /** Samples held (at most `size`). */
  get count(): number {
    return this.#count;
  }
  get sumA(): number {
    return this.#sumA;
  }
  get sumB(): number {
    return this.#sumB;
  }

  /** Adds a sample, dropping the oldest once full. */
  push(a: number, b: number): void {
    const i = this.#next;
    if (this.#count === this.size) {
      this.#sumA -= this.#a[i] as number;
      this.#sumB -= this.#b[i] as number;
    } else {
      this.#count += 1;
    }
    this.#a[i] = a;
    this.#b[i] = b;
    this.#sumA += a;
    this.#sumB += b;
    this.#next = (i + 1) % this.size;
  }
}
