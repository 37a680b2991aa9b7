import { type ServerHttp2Session } from 'node:http2';

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
// has no call for one stream's window. So while the in-flight gate refuses,
// the gateway's gRPC sessions announce HTTP/2's default window (64 KB): a
// refused request costs at most that much of the connection, an admitted one
// is still read as fast as the gateway consumes it. After QUIET_NS without a
// refusal they announce the wide window again.
//
// Measured on 2 cores (resnet_small, Poisson 1,300/s against a capacity of
// 244-399, 300 ms deadlines, `fabriek bench overload --offered-rate 1300
// --deadline-ms 300`), fixed batching: with the window fixed at 16 MB 32-47 %
// of capacity answered within 300 ms, at 64 KB 68-78 %; narrowed while
// refusing, 50-82 % (docs/performance.md, *Overload on two cores*).

/** The window while everything is admitted. */
export const WIDE_WINDOW_BYTES = 16 << 20;
/** The window while the gate refuses: HTTP/2's initial one. */
export const NARROW_WINDOW_BYTES = 65_535;
/** This long without a refusal, the window widens again. */
export const QUIET_NS = 1_000_000_000n;

/** The part of an HTTP/2 session the windows need (a ServerHttp2Session, or a fake in unit tests). */
export type WindowSession = Pick<ServerHttp2Session, 'settings' | 'once' | 'closed' | 'destroyed'>;

export interface StreamWindowOptions {
  /** Monotonic clock in ns. */
  readonly now?: () => bigint;
  /** Called when a session refused the new settings (too many unacknowledged SETTINGS: a client not answering them). */
  readonly onError?: (error: unknown) => void;
}

export class StreamWindows {
  readonly #sessions = new Set<WindowSession>();
  readonly #now: () => bigint;
  readonly #onError: (error: unknown) => void;
  #narrow = false;
  #lastRefusalNs = 0n;
  #timer: NodeJS.Timeout | undefined;
  /** Times the windows narrowed: how often the gateway met an overload. */
  #narrowings = 0;

  constructor(options: StreamWindowOptions = {}) {
    this.#now = options.now ?? process.hrtime.bigint;
    this.#onError = options.onError ?? (() => undefined);
  }

  /** The window the sessions announce now. */
  get bytes(): number {
    return this.#narrow ? NARROW_WINDOW_BYTES : WIDE_WINDOW_BYTES;
  }

  get narrowings(): number {
    return this.#narrowings;
  }

  /** A new session: it takes the current window, and leaves the set when it closes. */
  add(session: WindowSession): void {
    this.#sessions.add(session);
    session.once('close', () => this.#sessions.delete(session));
    if (this.#narrow) this.#announce(session, NARROW_WINDOW_BYTES);
  }

  /** The gate refused a request: narrow every session's window, until QUIET_NS pass without another refusal. */
  refused(): void {
    this.#lastRefusalNs = this.#now();
    if (this.#narrow) return;
    this.#narrow = true;
    this.#narrowings += 1;
    for (const s of this.#sessions) this.#announce(s, NARROW_WINDOW_BYTES);
    this.#arm(QUIET_NS);
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

  /** The timer: widen once QUIET_NS passed since the last refusal, or look again when they will have. */
  #check(): void {
    this.#timer = undefined;
    const since = this.#now() - this.#lastRefusalNs;
    if (since < QUIET_NS) {
      this.#arm(QUIET_NS - since);
      return;
    }
    this.#narrow = false;
    for (const s of this.#sessions) this.#announce(s, WIDE_WINDOW_BYTES);
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
