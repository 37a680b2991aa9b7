// The HTTP/2 receive window each gRPC stream starts with, following admission.
//
// A client sends a request's body as soon as its HEADERS are out, up to the
// stream's window, before the gateway has read them. While the gateway admits
// everything, a wide window (16 MB) lets a 600 KB request arrive in one go;
// 64 KB ones need ten window updates, each a round trip through both event
// loops, and cost a closed loop of 16 callers a quarter of its throughput.
// Under overload the same wide window lets every refused request's body in:
// 1,300 images/s offered to a gateway answering 300 made it read 557-623 MB/s,
// nine tenths of it bodies of requests it had refused from their headers, and
// the admitted ones' bodies shared the connection with them, so each took
// longer to arrive than it then took to compute.
//
// HTTP/2 lets a receiver change every stream's window at once (RFC 9113
// §6.9.2: SETTINGS_INITIAL_WINDOW_SIZE applies to open streams too), and Node
// has no call for one stream's window. So a session on which calls are
// refused before their messages are read (by the in-flight gate, or the
// tenants' check: grpc/refuse-unread.ts) announces HTTP/2's default window
// (64 KB): a refused request costs at most that much of the connection, an
// admitted one is still read as fast as the gateway consumes it. After
// QUIET_NS without a refusal on it, the session announces the wide window
// again. Only the sessions refused narrow: another tenant's connection,
// admitted, keeps the wide window while a flood's is refused.
//
// A session narrows at its REFUSALS_TO_NARROW-th refusal within QUIET_NS,
// not at its first. Behind a proxy that pools many callers onto one upstream
// connection (Envoy, a service mesh), one caller refused now and then (a
// tenant at its quota) would otherwise keep the shared connection narrow for
// all the others, whose large bodies then take a window round trip per
// 64 KB; a few refused bodies a second cost the connection less. A flood is
// narrowed after its first few refusals. (The bodies' sizes are not known
// here: a gRPC call's size is known only once its message is read, and the
// gate's mean is the admitted requests', not a flood's.)
//
// Measured on 2 cores (resnet_small, Poisson 1,300/s against a capacity of
// 244-399, 300 ms deadlines, `fabriek bench overload --offered-rate 1300
// --deadline-ms 300`, one connection), fixed batching: with the window fixed
// at 16 MB 32-47 % of capacity answered within 300 ms, at 64 KB 68-78 %;
// narrowed at the first refusal, 50-82 % (docs/performance.md, *Overload on two cores*).

/** The window while everything is admitted. */
export const WIDE_WINDOW_BYTES = 16 << 20;
/** The window of a session whose calls are being refused: HTTP/2's initial one. */
export const NARROW_WINDOW_BYTES = 65_535;
/** This long without a refusal, the window widens again. */
export const QUIET_NS = 1_000_000_000n;
/** A session narrows at this many refusals within QUIET_NS. */
export const REFUSALS_TO_NARROW = 8;

/** The part of an HTTP/2 session the windows need (an Http2Session, or a fake in unit tests). */
export interface WindowSession {
  readonly closed: boolean;
  readonly destroyed: boolean;
  settings(settings: { initialWindowSize: number }): void;
}

export interface StreamWindowOptions {
  /** Monotonic clock in ns. */
  readonly now?: () => bigint;
  /** Called when a session refused the new settings (too many unacknowledged SETTINGS: a client not answering them). */
  readonly onError?: (error: unknown) => void;
}

/** Refusals on a session not (yet) narrowed: since when they are counted, and how many. */
interface Refusals {
  sinceNs: bigint;
  count: number;
}

export class StreamWindows {
  /** The sessions whose window is narrow, and when a call was last refused on each (a closed one leaves at the next check). */
  readonly #narrowed = new Map<WindowSession, bigint>();
  /** Sessions refused, not narrow yet: what their refusals within QUIET_NS came to. */
  readonly #counting = new Map<WindowSession, Refusals>();
  readonly #now: () => bigint;
  readonly #onError: (error: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  /** Times a session's window narrowed. */
  #narrowings = 0;

  constructor(options: StreamWindowOptions = {}) {
    this.#now = options.now ?? process.hrtime.bigint;
    this.#onError = options.onError ?? (() => undefined);
  }

  /** Sessions whose stream window narrowed within the last QUIET_NS (or a little more: see #check). */
  get narrowSessions(): number {
    return this.#narrowed.size;
  }

  get narrowings(): number {
    return this.#narrowings;
  }

  /**
   * A call on `session` was refused before its message was read: at the
   * REFUSALS_TO_NARROW-th such call within QUIET_NS, narrow its window, until
   * QUIET_NS pass without another.
   */
  refused(session: WindowSession): void {
    if (session.closed || session.destroyed) return;
    const now = this.#now();
    if (this.#narrowed.has(session)) {
      this.#narrowed.set(session, now);
      return;
    }
    let refusals = this.#counting.get(session);
    if (refusals === undefined || now - refusals.sinceNs >= QUIET_NS) {
      refusals = { sinceNs: now, count: 0 };
      this.#counting.set(session, refusals);
    }
    refusals.count += 1;
    if (refusals.count >= REFUSALS_TO_NARROW) {
      this.#counting.delete(session);
      this.#narrowed.set(session, now);
      this.#narrowings += 1;
      this.#announce(session, NARROW_WINDOW_BYTES);
    }
    if (this.#timer === undefined) this.#arm(QUIET_NS);
  }

  /** Stops the timer (shutdown); the sessions keep what they announced. */
  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(delayNs: bigint): void {
    this.#timer = setTimeout(() => this.#check(), Number(delayNs / 1_000_000n) + 1);
    this.#timer.unref();
  }

  /** The timer: widen the sessions quiet for QUIET_NS, forget counts as old, drop those closed, and look again when the next will have been. */
  #check(): void {
    this.#timer = undefined;
    const now = this.#now();
    let next: bigint | undefined;
    for (const [session, refusals] of this.#counting) {
      const since = now - refusals.sinceNs;
      if (session.closed || session.destroyed || since >= QUIET_NS) this.#counting.delete(session);
      else if (next === undefined || QUIET_NS - since < next) next = QUIET_NS - since;
    }
    for (const [session, lastNs] of this.#narrowed) {
      const since = now - lastNs;
      if (session.closed || session.destroyed) {
        this.#narrowed.delete(session);
      } else if (since >= QUIET_NS) {
        this.#narrowed.delete(session);
        this.#announce(session, WIDE_WINDOW_BYTES);
      } else if (next === undefined || QUIET_NS - since < next) {
        next = QUIET_NS - since;
      }
    }
    if (next !== undefined) this.#arm(next);
  }

  #announce(session: WindowSession, bytes: number): void {
    if (session.closed || session.destroyed) return;
    try {
      session.settings({ initialWindowSize: bytes });
    } catch (error) {
      this.#onError(error);
    }
  }
}
