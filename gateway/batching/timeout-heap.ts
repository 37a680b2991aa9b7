/**
 * A binary min-heap of entries by their timeout instant, so queue timeouts
 * are found in O(log n) wherever the entry sits in the queue. Entries that
 * left the queue stay in the heap until they surface (`isLive` says which
 * count) and the heap is rebuilt when most of it is stale, so its size stays
 * within a small factor of the live timed entries.
 */
export class TimeoutHeap<E> {
  readonly #items: E[] = [];
  readonly #at: (e: E) => bigint;
  readonly #isLive: (e: E) => boolean;

  constructor(at: (e: E) => bigint, isLive: (e: E) => boolean) {
    this.#at = at;
    this.#isLive = isLive;
  }

  get size(): number {
    return this.#items.length;
  }

  push(e: E): void {
    this.#items.push(e);
    this.#up(this.#items.length - 1);
  }

  /** The live entry with the earliest instant, dropping stale ones on the way. */
  peek(): E | undefined {
    const items = this.#items;
    while (items.length > 0) {
      const top = items[0] as E;
      if (this.#isLive(top)) return top;
      this.#popTop();
    }
    return undefined;
  }

  /** Removes and returns the earliest live entry whose instant is ≤ now. */
  popDue(now: bigint): E | undefined {
    const top = this.peek();
    if (top === undefined || this.#at(top) > now) return undefined;
    this.#popTop();
    return top;
  }

  /** Drops stale entries when they outnumber the live ones `live` (O(n), amortised over their pushes). */
  compact(live: number): void {
    const items = this.#items;
    if (items.length < 64 || items.length <= 2 * live) return;
    let kept = 0;
    for (const e of items) if (this.#isLive(e)) items[kept++] = e;
    items.length = kept;
    for (let i = (items.length >> 1) - 1; i >= 0; i--) this.#down(i);
  }

  clear(): void {
    this.#items.length = 0;
  }

  #popTop(): void {
    const items = this.#items;
    const last = items.pop() as E;
    if (items.length > 0) {
      items[0] = last;
      this.#down(0);
    }
  }

  #up(i: number): void {
    const items = this.#items;
    const e = items[i] as E;
    const at = this.#at(e);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = items[parent] as E;
      if (this.#at(p) <= at) break;
      items[i] = p;
      i = parent;
    }
    items[i] = e;
  }

  #down(i: number): void {
    const items = this.#items;
    const n = items.length;
    const e = items[i] as E;
    const at = this.#at(e);
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      const right = child + 1;
      if (right < n && this.#at(items[right] as E) < this.#at(items[child] as E)) child = right;
      const c = items[child] as E;
      if (this.#at(c) >= at) break;
      items[i] = c;
      i = child;
    }
    items[i] = e;
  }
}
