// What the request path needs of a call's cancellation: whether it was
// cancelled, and a way to be told. An AbortSignal fits it (HTTP's calls pass
// one, as do tests); a gRPC call passes a Cancellation, which costs an
// object where an AbortController costs an EventTarget, its Map of
// listeners and an event per abort. That was 4 % of a gateway's busy time
// serving small requests, for calls that are almost never cancelled.

/** The subset of AbortSignal the schedulers, loader and pipeline use. */
export interface CancelSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options?: { readonly once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/**
 * A call's cancellation: `abort()` once (later calls do nothing) tells every
 * listener added before it, once. As with AbortSignal, a listener added
 * after the abort is never called: callers check `aborted` first.
 */
export class Cancellation implements CancelSignal {
  #aborted = false;
  /** Nearly always none or one (the scheduler's queue entry while it waits). */
  #listeners: (() => void)[] | undefined;

  get aborted(): boolean {
    return this.#aborted;
  }

  /** Listeners are told once whatever the options: a call is aborted once. */
  addEventListener(_type: 'abort', listener: () => void, _options?: { readonly once?: boolean }): void {
    if (this.#aborted) return;
    (this.#listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const ls = this.#listeners;
    if (ls === undefined) return;
    const i = ls.indexOf(listener);
    if (i >= 0) ls.splice(i, 1);
  }

  /** Cancels the call; bound, so it can be handed to an emitter or a timer as it is. */
  readonly abort = (): void => {
    if (this.#aborted) return;
    this.#aborted = true;
    const ls = this.#listeners;
    this.#listeners = undefined;
    if (ls !== undefined) for (const l of ls) l();
  };
}
