import { resourceExhausted, type ServingError } from '../../core/errors.js';
import { OPEN_TENANT } from '../tenants/tenant.js';
import { AnswerRate } from './answer-rate.js';

// Bounds the request bytes a gateway holds at once (bodies being received,
// queued, running). Past the bound a new inference is refused at once with
// RESOURCE_EXHAUSTED (HTTP 429), from its headers, before its body is read:
// under overload the excess costs the gateway almost nothing, and its memory
// stays bounded whatever the clients keep outstanding. Without it, thousands
// of 600 KB gRPC calls were all received at once, interleaved on one HTTP/2
// connection, none complete before its deadline (issue 15).
//
// With --max-inflight-wait-ms it also bounds the time the held bytes take to
// drain at the rate the gateway has answered lately (answer-rate.ts): a bound
// in bytes fits one request size and one model's speed; a bound in time holds
// the queueing delay of whoever is admitted, so that under any overload the
// requests admitted are answered about as fast as at capacity, and the excess
// is refused from its headers.

/** One admitted request's hold on the gate; `settle` corrects the bytes once known, `release` ends it (`answered`: successfully). */
export interface InflightHold {
  settle(bytes: number): void;
  release(answered?: boolean): void;
}

export interface InflightGateOptions {
  /** Bound on the time the held bytes take to drain at the recent answer rate; 0 = none. */
  readonly maxWaitMs?: number;
  /** Monotonic clock in ns. */
  readonly now?: () => bigint;
}

const INITIAL_TYPICAL = 1 << 20;

/** Who asks the gate: the tenant's name and its weight (its share of the time bound); the open tenant without tenants. */
export interface GateTenant {
  readonly name: string;
  readonly weight: number;
}

interface TenantHold {
  bytes: number;
  requests: number;
  readonly weight: number;
}

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

  readonly maxWaitMs: number;
  readonly #maxWaitNs: number;
  readonly #now: () => bigint;
  readonly #rate = new AnswerRate();
  /** With the time bound: what each tenant holds, while it holds anything. */
  readonly #tenants = new Map<string, TenantHold>();
  /** Sum of the weights of the tenants in #tenants. */
  #activeWeight = 0;

  constructor(maxBytes: number, options: InflightGateOptions = {}) {
    if (!(maxBytes > 0)) throw new RangeError(`Expected the in-flight byte bound to be > 0, got ${maxBytes}`);
    this.maxBytes = maxBytes;
    this.maxWaitMs = options.maxWaitMs ?? 0;
    this.#maxWaitNs = this.maxWaitMs * 1e6;
    this.#now = options.now ?? process.hrtime.bigint;
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
  enter(declared: number | undefined, tenant: GateTenant = OPEN_TENANT): InflightHold | ServingError {
    const bytes = declared ?? this.#typical;
    if (this.#requests > 0 && this.#bytes + bytes > this.maxBytes) {
      return resourceExhausted(
        `server overloaded: ${this.#requests} requests hold ${this.#bytes} bytes in flight; ` +
          `admitting ${declared === undefined ? 'another' : `${declared} more`} would pass --max-inflight-bytes ${this.maxBytes}`,
        100,
      );
    }
    let mine: TenantHold | undefined;
    if (this.#maxWaitNs > 0) {
      mine = this.#tenants.get(tenant.name);
      if (this.#requests > 0) {
        const refusal = this.#overWait(bytes, declared, tenant, mine);
        if (refusal) return refusal;
      }
      if (!mine) {
        mine = { bytes: 0, requests: 0, weight: tenant.weight };
        this.#tenants.set(tenant.name, mine);
        this.#activeWeight += tenant.weight;
      }
      mine.requests += 1;
      mine.bytes += bytes;
    }
    this.#requests += 1;
    this.#bytes += bytes;
    let held = bytes;
    let open = true;
    return {
      settle: (actual) => {
        if (!open) return;
        this.#bytes += actual - held;
        if (mine) mine.bytes += actual - held;
        held = actual;
        // Exponential mean over roughly the last 16 requests.
        this.#typical = this.#seen ? this.#typical + (actual - this.#typical) / 16 : actual;
        this.#seen = true;
      },
      release: (answered = false) => {
        if (!open) return;
        open = false;
        this.#requests -= 1;
        this.#bytes -= held;
        if (!mine) return;
        mine.requests -= 1;
        mine.bytes -= held;
        if (mine.requests === 0) {
          this.#tenants.delete(tenant.name);
          this.#activeWeight -= mine.weight;
        }
        this.#rate.released(this.#now(), held, answered, this.#requests > 0);
      },
    };
  }

  /**
   * The refusal when the bytes held, and `bytes` more, would take longer than
   * the bound to drain, and the tenant already holds its share of the bound
   * and its share of the bytes now held (its weight over the weights of the
   * tenants holding bytes, itself included): a flooding tenant is refused
   * while the others are still admitted up to theirs. The share of what is
   * held matters once the rate has fallen since a flood was admitted: the
   * flood then holds several times the bound, and a quiet tenant refused at
   * its share of the bound would wait behind it and be refused too (seen
   * with a tenant flooding from the same two cores). Undefined while the rate
   * is unknown.
   */
  #overWait(bytes: number, declared: number | undefined, tenant: GateTenant, mine: TenantHold | undefined): ServingError | undefined {
    const perNs = this.#rate.bytesPerNs(this.#now());
    if (perNs === undefined) return undefined;
    const waitNs = (this.#bytes + bytes) / perNs;
    if (waitNs <= this.#maxWaitNs) return undefined;
    const weights = this.#activeWeight + (mine ? 0 : tenant.weight);
    const shareBytes = (Math.max(this.#maxWaitNs * perNs, this.#bytes) * tenant.weight) / weights;
    const own = mine?.bytes ?? 0;
    if (own + bytes <= shareBytes) return undefined;
    const waitMs = waitNs / 1e6;
    // Named only when others hold bytes too: alone, its share is the whole bound.
    const others = this.#tenants.size - (mine ? 1 : 0);
    const whose = others > 0 ? `; tenant '${tenant.name}' holds ${own} bytes of its share of ${Math.round(shareBytes)}` : '';
    return resourceExhausted(
      `server overloaded: ${this.#requests} requests hold ${this.#bytes} bytes in flight, about ${Math.round(waitMs)} ms of work ` +
        `at the ${(perNs * 1e3).toFixed(1)} MB/s the gateway answers${whose}; admitting ${declared === undefined ? 'another' : `${declared} more bytes`} ` +
        `would pass --max-inflight-wait-ms ${this.maxWaitMs}`,
      Math.max(1, Math.round(waitMs - this.maxWaitMs)),
    );
  }
}

export function isHold(x: InflightHold | ServingError): x is InflightHold {
  return typeof (x as InflightHold).release === 'function';
}
