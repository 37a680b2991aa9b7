import { type BatchSlots } from '../../gateway/batching/dynamic-batcher.js';

/** One instance's slot for a batcher under test: taken from the start when `held` (work from before), freed by release(). */
export function oneSlot(held: boolean): BatchSlots<number> {
  let busy = held;
  const listeners = new Set<() => void>();
  return {
    get free() {
      return busy ? 0 : 1;
    },
    get idle() {
      return busy ? 0 : 1;
    },
    acquire: () => (busy ? undefined : ((busy = true), 1)),
    release: () => {
      busy = false;
      for (const l of listeners) l();
    },
    onFree: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  };
}
