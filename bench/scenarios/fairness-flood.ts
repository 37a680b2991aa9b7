import { InferenceGrpcClient } from '../../client/grpc-client.js';
import { type ModelInferRequest } from '../../proto/gen/inference.js';
import { codeName, isServiceError, type OpenLoop, openLoop } from './fairness-load.js';

// Tenant A of the fairness benchmark, in a process of its own, as another
// client on another machine would be: it sends at the rate it is given while
// the parent says `on`, and reports what it got when told `off`.

export type FloodCommand =
  | { readonly type: 'start'; readonly address: string; readonly key: string; readonly seed: number; readonly request: ModelInferRequest }
  | { readonly type: 'on'; readonly ratePerSecond: number }
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

let client: InferenceGrpcClient | undefined;
let start: Extract<FloodCommand, { type: 'start' }> | undefined;
let loop: OpenLoop | undefined;
let outcomes: Record<string, number> = {};
let floods = 0;
let since = 0;

function revive(request: ModelInferRequest): ModelInferRequest {
  // Buffers cross the (structured clone) IPC channel as plain Uint8Arrays.
  return { ...request, rawInputContents: request.rawInputContents.map((b) => Buffer.from(b)) };
}

process.on('message', (message: FloodCommand) => {
  void (async () => {
    switch (message.type) {
      case 'start':
        start = { ...message, request: revive(message.request) };
        client = new InferenceGrpcClient(message.address);
        process.send?.({ type: 'ready' });
        return;
      case 'on': {
        if (!client || !start || loop) return;
        const s = start;
        outcomes = {};
        since = performance.now();
        loop = openLoop(client, {
          ratePerSecond: message.ratePerSecond,
          seed: s.seed + floods++,
          request: () => s.request,
          metadata: { authorization: `Bearer ${s.key}` },
          onSettled: (_seq, _at, _us, outcome) => {
            const name = isServiceError(outcome) ? codeName(outcome) : 'OK';
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
