// Tenant A of the fairness benchmark, in a process of its own, as another
// client on another machine would be: it sends at the rate it is given while
// the parent says `on`, and reports what it got when told `off`. Its calls
// go out through RawGrpcUnary (one encoded request, written on node:http2),
// so that A's own client takes as little as possible of the cores it shares
// with the server.
import { status as GrpcStatus } from '@grpc/grpc-js';
import { ModelInferRequest } from '../../proto/gen/inference.js';
import { grpcFrame } from '../load/h2-grpc-infer.js';
import { type OpenLoop, openLoop } from './fairness-load.js';
import { RawGrpcUnary } from './raw-grpc-unary.js';

export type FloodCommand =
  | { readonly type: 'start'; readonly address: string; readonly key: string; readonly seed: number; readonly request: ModelInferRequest }
  /** Open loop at `ratePerSecond`, or a closed loop keeping `outstanding` requests in flight. */
  | { readonly type: 'on'; readonly ratePerSecond: number; readonly outstanding?: number }
  | { readonly type: 'off' }
  | { readonly type: 'exit' };

export interface FloodReport {
  readonly type: 'report';
  /** How long it flooded. */
  readonly seconds: number;
  readonly sent: number;
  /** Answers by gRPC status name. */
  readonly outcomes: Record<string, number>;
}

const MODEL_INFER = '/inference.GRPCInferenceService/ModelInfer';

let client: RawGrpcUnary | undefined;
let start: { readonly key: string; readonly seed: number; readonly frame: Buffer } | undefined;
let loop: Pick<OpenLoop, 'sent' | 'stop'> | undefined;
let outcomes: Record<string, number> = {};
let floods = 0;
let since = 0;

function revive(request: ModelInferRequest): ModelInferRequest {
  // Buffers cross the (structured clone) IPC channel as plain Uint8Arrays.
  return { ...request, rawInputContents: request.rawInputContents.map((b) => Buffer.from(b)) };
}

const statusName = (code: GrpcStatus): string => (code === GrpcStatus.OK ? 'OK' : (GrpcStatus[code] ?? `CODE_${code}`));

/** `outstanding` callers, each sending its next request when its last is answered. */
function closedLoop(outstanding: number, call: () => Promise<GrpcStatus>): Pick<OpenLoop, 'sent' | 'stop'> {
  let running = true;
  let sent = 0;
  const callers = Array.from({ length: outstanding }, async () => {
    while (running) {
      sent++;
      const code = await call();
      const name = statusName(code);
      outcomes[name] = (outcomes[name] ?? 0) + 1;
      // A refusal can come back at once (or a call fail before it is sent): without a turn of the event loop
      // between retries the callers would never let the parent's 'off' in.
      if (code !== GrpcStatus.OK) await new Promise((r) => setImmediate(r));
    }
  });
  return {
    get sent() {
      return sent;
    },
    stop: async () => {
      running = false;
      await Promise.all(callers);
    },
  };
}

process.on('message', (message: FloodCommand) => {
  void (async () => {
    switch (message.type) {
      case 'start':
        start = { key: message.key, seed: message.seed, frame: grpcFrame(ModelInferRequest.encode(revive(message.request)).finish()) };
        client = new RawGrpcUnary(message.address);
        process.send?.({ type: 'ready' });
        return;
      case 'on': {
        if (!client || !start || loop) return;
        const s = start;
        const c = client;
        const metadata = { authorization: `Bearer ${s.key}` };
        outcomes = {};
        since = performance.now();
        if (message.outstanding !== undefined) {
          loop = closedLoop(message.outstanding, () => c.call(MODEL_INFER, s.frame, metadata, 10_000));
          return;
        }
        loop = openLoop<GrpcStatus>({
          ratePerSecond: message.ratePerSecond,
          seed: s.seed + floods++,
          send: () => c.call(MODEL_INFER, s.frame, metadata, 10_000),
          onSettled: (_seq, _at, _us, code) => {
            const name = statusName(code);
            outcomes[name] = (outcomes[name] ?? 0) + 1;
          },
        });
        return;
      }
      case 'off': {
        const l = loop;
        loop = undefined;
        if (!l) return;
        const seconds = (performance.now() - since) / 1000;
        await l.stop();
        const report: FloodReport = { type: 'report', seconds, sent: l.sent, outcomes };
        process.send?.(report);
        return;
      }
      case 'exit':
        await loop?.stop();
        client?.close();
        process.exit(0);
    }
  })();
});
