import { resourceExhausted, type ServingError } from '../../core/errors.js';

// Bounds the request bytes a gateway holds at once (bodies being received,
// queued, running). Past the bound a new inference is refused at once with
// RESOURCE_EXHAUSTED (HTTP 429), from its headers, before its body is read:
// under overload the excess costs the gateway almost nothing, and its memory
// stays bounded whatever the clients keep outstanding. Without it, thousands
// of 600 KB gRPC calls were all received at once, interleaved on one HTTP/2
// connection, none complete before its deadline (issue 15).

/** One admitted request's hold on the gate; `settle` corrects the bytes once known, `release` ends it. */
export interface InflightHold {
  settle(bytes: number): void;
  release(): void;
}

const INITIAL_TYPICAL = 1 << 20;

export class InflightGate {
  readonly maxBytes: number;
  #bytes = 0;
  #requests = 0;
  /**
   * Running mean size of recent requests: what a call counts for before its
   * size is known. Until one was seen, 1 MiB, so even a first burst is bounded.
   */
  #typical = INITIAL_TYPICAL;
  #seen = false;

  constructor(maxBytes: number) {
    if (!(maxBytes > 0)) throw new RangeError(`Expected the in-flight byte bound to be > 0, got ${maxBytes}`);
    this.maxBytes = maxBytes;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get requests(): number {
    return this.#requests;
  }

  /**
   * Admits a request whose size is `declared` (a Content-Length) or not yet
   * known (undefined: it counts as a typical request until `settle`), or
   * answers the refusal. One request is always admitted on an empty gate, so
   * a request larger than the bound (but within --max-message-bytes) still runs.
   */
  enter(declared: number | undefined): InflightHold | ServingError {
    const bytes = declared ?? this.#typical;
    if (this.#requests > 0 && this.#bytes + bytes > this.maxBytes) {
      return resourceExhausted(
        `server overloaded: ${this.#requests} requests hold ${this.#bytes} bytes in flight; ` +
          `admitting ${declared === undefined ? 'another' : `${declared} more`} would pass --max-inflight-bytes ${this.maxBytes}`,
        100,
      );
    }
    this.#requests += 1;
    this.#bytes += bytes;
    let held = bytes;
    let open = true;
    return {
      settle: (actual) => {
        if (!open) return;
        this.#bytes += actual - held;
        held = actual;
        // Exponential mean over roughly the last 16 requests.
        this.#typical = this.#seen ? this.#typical + (actual - this.#typical) / 16 : actual;
        this.#seen = true;
      },
      release: () => {
        if (!open) return;
        open = false;
        this.#requests -= 1;
        this.#bytes -= held;
      },
    };
  }
}

export function isHold(x: InflightHold | ServingError): x is InflightHold {
  return typeof (x as InflightHold).release === 'function';
}
