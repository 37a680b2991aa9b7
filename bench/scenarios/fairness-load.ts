import { type ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { mulberry32 } from '../../models/build/seeded-random.js';
import { type ModelInferResponse } from '../../proto/gen/inference.js';

// The fairness benchmark's open loop: requests at Poisson arrival times of a
// given rate, whatever the answers do, so a slow server shows as latency and
// a refusing one as errors, never as a lower offered load. The arrival times
// come from a seeded generator: every run offers the same pattern.

export interface OpenLoopOptions<T> {
  readonly ratePerSecond: number;
  readonly seed: number;
  /** Sends request `seq`; resolves with its outcome, an answer or a failure (never rejects). */
  readonly send: (seq: number) => Promise<T>;
  /** Every outcome, with the latency from the call to its settling, in µs. */
  readonly onSettled: (seq: number, sentAt: number, latencyUs: number, outcome: T) => void;
}

export interface OpenLoop {
  /** Requests sent so far. */
  readonly sent: number;
  /** Sends what was due until now, stops; resolves when every request sent has settled. */
  stop(): Promise<void>;
}

export const codeName = (error: ServiceError): string => GrpcStatus[error.code] ?? `CODE_${error.code}`;

export function isServiceError(x: ModelInferResponse | ServiceError): x is ServiceError {
  return x instanceof Error;
}

export function openLoop<T>(o: OpenLoopOptions<T>): OpenLoop {
  const random = mulberry32(o.seed);
  const gapMs = (): number => (-Math.log(1 - random()) / o.ratePerSecond) * 1000;
  const inFlight = new Set<Promise<void>>();
  let running = true;
  let sent = 0;
  let next = performance.now() + gapMs();
  let timer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;

  const send = (): void => {
    const seq = sent++;
    const t0 = performance.now();
    const call = o.send(seq).then((outcome) => o.onSettled(seq, t0, (performance.now() - t0) * 1000, outcome));
    inFlight.add(call);
    void call.finally(() => inFlight.delete(call));
  };

  const loop = async (): Promise<void> => {
    while (running) {
      const now = performance.now();
      // Late timers send what is due at once: the offered load does not drop when the client lags.
      while (next <= now && running) {
        send();
        next += gapMs();
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, Math.max(0, next - performance.now()));
      });
    }
  };
  const done = loop();

  return {
    get sent() {
      return sent;
    },
    stop: async () => {
      const until = performance.now();
      running = false;
      if (timer) clearTimeout(timer);
      wake?.();
      await done;
      // Every arrival due before the stop is sent, however late the loop ran: the offered load is the schedule's.
      while (next <= until) {
        send();
        next += gapMs();
      }
      await Promise.all([...inFlight]);
    },
  };
}
