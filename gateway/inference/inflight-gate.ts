import { status as GrpcStatus } from '@grpc/grpc-js';
import { resourceExhausted, ServingError } from '../../core/errors.js';
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
//
// With or without that flag it also learns, from outcomes, how much to
// hold: a request it admitted that then passed its deadline, was shed by
// it, or found its queue full before it ran should not have been admitted
// (its body was received and decoded for nothing). While a tenth or more
// of the recent releases are late, each cuts the bytes it admits to three
// quarters of what it held then (not below 16 typical requests), at most
// once per 100 ms; answers grow it back, by one request per limit's worth
// of answers, and by half after 2 s without a late release. A closed loop
// without deadlines never fails late, so it is never refused by this; a 5x
// overload with deadlines no longer admits the bytes its queues then shed
// (measured before: 219 images/s of capacity, 53 answered under 5x, all
// late). The learned bound holds only callers up to twice as patient as
// those that failed late: impatient callers' expiries do not refuse
// patient ones.

/**
 * How an admitted request ended: answered; late (admitted, then shed, timed
 * out or refused by a full queue before it ran: the gate admitted more than
 * the queues keep); or failed otherwise (bad input, cancelled, an error).
 */
export type ReleaseOutcome = 'answered' | 'late' | 'failed';

/** One admitted request's hold on the gate; `settle` corrects the bytes once known, `release` ends it. */
export interface InflightHold {
  settle(bytes: number): void;
  release(outcome?: ReleaseOutcome): void;
}

export interface InflightGateOptions {
  /** Bound on the time the held bytes take to drain at the recent answer rate; 0 = none. */
  readonly maxWaitMs?: number;
  /** Monotonic clock in ns. */
  readonly now?: () => bigint;
}

const INITIAL_TYPICAL = 1 << 20;
/** A late release cuts the admitted bytes to this share of the bytes then held … */
const CUT = 0.75;
/** … but not below this many typical requests: a few late ones at light load are the deadlines', not the gate's. */
const MIN_REQUESTS = 16;
/** … and only while at least this share of recent releases (about the last 32) were late. */
const LATE_SHARE = 0.1;
/** At most one cut per this long: the sheds of one burst are one event. */
const CUT_INTERVAL_NS = 100_000_000n;
/** This long without a late release, the admitted bytes grow by GROW (at most once per this long). */
const QUIET_NS = 2_000_000_000n;
const GROW = 1.5;
/** The learned bound holds callers up to this many times as patient as those that failed late. */
const PATIENCE_SPAN = 2;

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
  /** What each tenant holds, while it holds anything. */
  readonly #tenants = new Map<string, TenantHold>();
  /** Bytes admitted, as learned from late releases (maxBytes until the first). */
  #admitBytes: number;
  #lastCutNs: bigint | undefined;
  #lastGrowNs = 0n;
  /** Exponential mean of late (1) against other (0) releases, over about the last 32. */
  #lateShare = 0;
  /**
   * The longest deadline (ms left at admission; Infinity: none, for a full
   * queue) among the requests that failed late since the bound last was
   * whole: the learned bound holds callers up to PATIENCE_SPAN times as
   * patient. A caller with 20 s to spare is not refused because callers
   * with 1–8 ms expired (serve.test.ts sends both at once).
   */
  #latePatienceMs = 0;
  /** Sum of the weights of the tenants in #tenants. */
  #activeWeight = 0;

  constructor(maxBytes: number, options: InflightGateOptions = {}) {
    if (!(maxBytes > 0)) throw new RangeError(`Expected the in-flight byte bound to be > 0, got ${maxBytes}`);
    this.maxBytes = maxBytes;
    this.#admitBytes = maxBytes;
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

  /** The bytes it admits now, as learned from late releases (at most --max-inflight-bytes). */
  get admitBytes(): number {
    return this.#admitBytes;
  }

  /**
   * Admits a request whose size is `declared` (a Content-Length) or not yet
   * known (undefined: it counts as a typical request until `settle`), or
   * answers the refusal. One request is always admitted on an empty gate, so
   * a request larger than the bound (but within --max-message-bytes) still runs.
   */
  enter(declared: number | undefined, tenant: GateTenant = OPEN_TENANT, patienceMs = Infinity): InflightHold | ServingError {
    const bytes = declared ?? this.#typical;
    if (this.#requests > 0 && this.#bytes + bytes > this.maxBytes) {
      return resourceExhausted(
        `server overloaded: ${this.#requests} requests hold ${this.#bytes} bytes in flight; ` +
          `admitting ${declared === undefined ? 'another' : `${declared} more`} would pass --max-inflight-bytes ${this.maxBytes}`,
        100,
      );
    }
    let mine = this.#tenants.get(tenant.name);
    if (this.#requests > 0) {
      const refusal = this.#overSoftBound(bytes, declared, tenant, mine, patienceMs);
      if (refusal) return refusal;
    }
    if (!mine) {
      mine = { bytes: 0, requests: 0, weight: tenant.weight };
      this.#tenants.set(tenant.name, mine);
      this.#activeWeight += tenant.weight;
    }
    mine.requests += 1;
    mine.bytes += bytes;
    this.#requests += 1;
    this.#bytes += bytes;
    const own = mine;
    let held = bytes;
    let open = true;
    return {
      settle: (actual) => {
        if (!open) return;
        this.#bytes += actual - held;
        own.bytes += actual - held;
        held = actual;
        // Exponential mean over roughly the last 16 requests.
        this.#typical = this.#seen ? this.#typical + (actual - this.#typical) / 16 : actual;
        this.#seen = true;
      },
      release: (outcome = 'failed') => {
        if (!open) return;
        open = false;
        this.#lateShare += ((outcome === 'late' ? 1 : 0) - this.#lateShare) / 32;
        if (outcome === 'late') this.#cut(patienceMs);
        else if (outcome === 'answered' && this.#admitBytes < this.maxBytes) this.#grow(held);
        this.#requests -= 1;
        this.#bytes -= held;
        own.requests -= 1;
        own.bytes -= held;
        if (own.requests === 0) {
          this.#tenants.delete(tenant.name);
          this.#activeWeight -= own.weight;
        }
        if (this.#maxWaitNs > 0) this.#rate.released(this.#now(), held, outcome === 'answered', this.#requests > 0);
      },
    };
  }

  /** A late release of a request that had `patienceMs` to spare, with the bytes held still counting its own: admit less (once per CUT_INTERVAL_NS). */
  #cut(patienceMs: number): void {
    if (this.#lateShare < LATE_SHARE) return;
    if (patienceMs > this.#latePatienceMs) this.#latePatienceMs = patienceMs;
    const now = this.#now();
    if (this.#lastCutNs !== undefined && now - this.#lastCutNs < CUT_INTERVAL_NS) return;
    this.#lastCutNs = now;
    this.#lastGrowNs = now;
    const floor = Math.min(this.maxBytes, MIN_REQUESTS * this.#typical);
    this.#admitBytes = Math.max(floor, Math.min(this.#admitBytes, this.#bytes) * CUT);
  }

  /** An answer of `bytes` while admitting less than the bound: one typical request more per limit's worth of answers, and more after a quiet spell. */
  #grow(bytes: number): void {
    let next = this.#admitBytes + (this.#typical * bytes) / this.#admitBytes;
    const now = this.#now();
    if (now - this.#lastGrowNs >= QUIET_NS) {
      next *= GROW;
      this.#lastGrowNs = now;
    }
    this.#admitBytes = Math.min(this.maxBytes, next);
    if (this.#admitBytes === this.maxBytes) this.#latePatienceMs = 0;
  }

  /**
   * The refusal past the soft bound: the bytes learned from late releases,
   * and with --max-inflight-wait-ms what drains within it. Undefined while
   * neither binds.
   */
  #overSoftBound(bytes: number, declared: number | undefined, tenant: GateTenant, mine: TenantHold | undefined, patienceMs: number): ServingError | undefined {
    const learned = this.#admitBytes < this.maxBytes && this.#bytes + bytes > this.#admitBytes && patienceMs <= PATIENCE_SPAN * this.#latePatienceMs;
    if (learned) {
      const refusal = this.#overShare(this.#admitBytes, bytes, tenant, mine);
      if (refusal !== undefined) {
        const whom = Number.isFinite(this.#latePatienceMs) ? ` for requests with deadlines up to ${Math.round(PATIENCE_SPAN * this.#latePatienceMs)} ms` : '';
        return resourceExhausted(
          `server overloaded: ${this.#requests} requests hold ${this.#bytes} bytes in flight; requests it admitted lately were shed or timed out before they ran, ` +
            `so the gateway admits about ${Math.round(this.#admitBytes)} bytes now${whom} (of --max-inflight-bytes ${this.maxBytes})${refusal.whose}; ` +
            `admitting ${declared === undefined ? 'another' : `${declared} more bytes`} would pass that`,
          100,
        );
      }
    }
    return this.#maxWaitNs > 0 ? this.#overWait(bytes, declared, tenant, mine) : undefined;
  }

  /**
   * Whether the tenant holds its share of `boundBytes` and of the bytes now
   * held (its weight over the weights of the tenants holding bytes, itself
   * included): a flooding tenant is refused while the others are still
   * admitted up to theirs. The share of what is held matters once the bound
   * has fallen since a flood was admitted: the flood then holds several times
   * the bound, and a quiet tenant refused at its share of the bound would wait
   * behind it and be refused too (seen with a tenant flooding from the same
   * two cores). Undefined when it is under its share; else the words naming
   * the tenant, when others hold bytes too (alone, its share is the whole bound).
   */
  #overShare(boundBytes: number, bytes: number, tenant: GateTenant, mine: TenantHold | undefined): { readonly whose: string; readonly shareBytes: number } | undefined {
    const weights = this.#activeWeight + (mine ? 0 : tenant.weight);
    const shareBytes = (Math.max(boundBytes, this.#bytes) * tenant.weight) / weights;
    const own = mine?.bytes ?? 0;
    if (own + bytes <= shareBytes) return undefined;
    const others = this.#tenants.size - (mine ? 1 : 0);
    return { whose: others > 0 ? `; tenant '${tenant.name}' holds ${own} bytes of its share of ${Math.round(shareBytes)}` : '', shareBytes };
  }

  /** The refusal when the bytes held, and `bytes` more, would take longer than the bound to drain, and the tenant holds its share; undefined while the rate is unknown. */
  #overWait(bytes: number, declared: number | undefined, tenant: GateTenant, mine: TenantHold | undefined): ServingError | undefined {
    const perNs = this.#rate.bytesPerNs(this.#now());
    if (perNs === undefined) return undefined;
    const waitNs = (this.#bytes + bytes) / perNs;
    if (waitNs <= this.#maxWaitNs) return undefined;
    const over = this.#overShare(this.#maxWaitNs * perNs, bytes, tenant, mine);
    if (over === undefined) return undefined;
    const waitMs = waitNs / 1e6;
    return resourceExhausted(
      `server overloaded: ${this.#requests} requests hold ${this.#bytes} bytes in flight, about ${Math.round(waitMs)} ms of work ` +
        `at the ${(perNs * 1e3).toFixed(1)} MB/s the gateway answers${over.whose}; admitting ${declared === undefined ? 'another' : `${declared} more bytes`} ` +
        `would pass --max-inflight-wait-ms ${this.maxWaitMs}`,
      Math.max(1, Math.round(waitMs - this.maxWaitMs)),
    );
  }
}

/**
 * Whether a request that failed with this status and message was admitted
 * for nothing by overload: past its deadline, refused by a full queue, or,
 * when it carried a deadline of its own (`ownDeadline`), shed or timed out
 * in its queue (Triton's "Request timeout expired"). A request due only at
 * its model's SLO (batching_slo_ms) is shed by the batcher's estimate, which
 * errs early by design; learning from those refused requests the SLO mode
 * would have served (measured: 654 refusals at half load, goodput 0.69x).
 */
export function failedLate(code: number, message: string, ownDeadline: boolean): boolean {
  if (code === GrpcStatus.DEADLINE_EXCEEDED) return true;
  if (code !== GrpcStatus.UNAVAILABLE) return false;
  return message.startsWith('Exceeds maximum queue size') || (ownDeadline && message.startsWith('Request timeout expired'));
}

/** The outcome of a request that ended with `error` (a ServingError, or anything else: failed). */
export function outcomeOfError(error: unknown, ownDeadline: boolean): ReleaseOutcome {
  return error instanceof ServingError && failedLate(error.code, error.message, ownDeadline) ? 'late' : 'failed';
}

export function isHold(x: InflightHold | ServingError): x is InflightHold {
  return typeof (x as InflightHold).release === 'function';
}
