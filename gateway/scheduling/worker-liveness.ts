// Application-level liveness of one worker socket. A worker that hangs with
// its socket open (SIGSTOP, a wedged main thread, a partition without RST)
// sends nothing; TCP keepalive does not notice (the kernel still answers) and
// deadlines only fail the requests one by one. So the gateway sends a PING
// frame whenever it heard nothing for an interval, and gives up on the socket
// when nothing at all (a pong or any other frame) arrived for `timeoutMs`.
//
// A gateway whose own event loop stalled (a tick much later than planned)
// may not have read what the worker sent meanwhile: that tick judges
// nothing and the silence counts again from then.

export interface LivenessOptions {
  /** Silence after which the worker is unresponsive. */
  readonly timeoutMs: number;
  /** How often to check (and ping when nothing was heard); default timeoutMs / 3, at most 1 s. */
  readonly intervalMs?: number;
  readonly now?: () => number;
}

/** The check interval for a timeout: a third of it, between 10 ms and 1 s. */
export function pingIntervalFor(timeoutMs: number): number {
  return Math.max(10, Math.min(1_000, Math.floor(timeoutMs / 3)));
}

export class Liveness {
  readonly #timeoutMs: number;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #ping: () => void;
  readonly #onTimeout: (silentMs: number) => void;
  #lastHeard: number;
  #lastTick: number;
  #timer: NodeJS.Timeout | undefined;
  #gaveUp = false;

  constructor(options: LivenessOptions, ping: () => void, onTimeout: (silentMs: number) => void) {
    this.#timeoutMs = options.timeoutMs;
    this.#intervalMs = options.intervalMs ?? pingIntervalFor(options.timeoutMs);
    this.#now = options.now ?? Date.now;
    this.#ping = ping;
    this.#onTimeout = onTimeout;
    this.#lastHeard = this.#now();
    this.#lastTick = this.#lastHeard;
  }

  /** Starts checking; the timer does not keep the process alive. */
  start(): void {
    if (this.#timer || this.#gaveUp) return;
    this.#lastHeard = this.#lastTick = this.#now();
    this.#timer = setInterval(() => this.tick(), this.#intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Something arrived from the worker. */
  heard(): void {
    this.#lastHeard = this.#now();
  }

  /** One check (the timer calls it; tests may too). */
  tick(): void {
    if (this.#gaveUp) return;
    const now = this.#now();
    const stalled = now - this.#lastTick > 2 * this.#intervalMs + 100;
    this.#lastTick = now;
    if (stalled) {
      // What arrived during our stall is read after this tick: judge later.
      this.#lastHeard = Math.max(this.#lastHeard, now - this.#intervalMs);
    } else if (now - this.#lastHeard >= this.#timeoutMs) {
      this.stop();
      this.#gaveUp = true;
      this.#onTimeout(now - this.#lastHeard);
      return;
    }
    if (now - this.#lastHeard >= this.#intervalMs) this.#ping();
  }
}
