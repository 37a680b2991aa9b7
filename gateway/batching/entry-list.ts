/** Links an entry carries so it can leave the middle of its list in O(1) (a cancel, a timeout). */
export interface ListLinks<N> {
  prev: N | undefined;
  next: N | undefined;
  /** The list it is in, compared by identity. */
  list: object | undefined;
}

/**
 * An intrusive doubly linked FIFO: push at the tail, remove anywhere, walk
 * from the head. Each entry is in at most one list at a time.
 */
export class EntryList<N extends ListLinks<N>> implements Iterable<N> {
  #head: N | undefined;
  #tail: N | undefined;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  push(node: N): void {
    if (node.list !== undefined) throw new Error('entry is already in a list');
    node.list = this;
    node.prev = this.#tail;
    node.next = undefined;
    if (this.#tail) this.#tail.next = node;
    else this.#head = node;
    this.#tail = node;
    this.#size++;
  }

  /** Takes `node` out; false if it was not in this list. */
  remove(node: N): boolean {
    if (node.list !== this) return false;
    if (node.prev) node.prev.next = node.next;
    else this.#head = node.next;
    if (node.next) node.next.prev = node.prev;
    else this.#tail = node.prev;
    node.prev = undefined;
    node.next = undefined;
    node.list = undefined;
    this.#size--;
    return true;
  }

  shift(): N | undefined {
    const head = this.#head;
    if (head) this.remove(head);
    return head;
  }

  *[Symbol.iterator](): Iterator<N> {
    for (let node = this.#head; node !== undefined; node = node.next) yield node;
  }
}
