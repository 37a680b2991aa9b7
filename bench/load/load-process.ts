// One load-generating process of `fabriek bench scaling`: closed-loop
// ModelInfer calls of identity_fp32 over its own HTTP/2 connections, timed
// over one window that every such process starts at the same instant. One
// process cannot load N gateway processes (its own event loop is one core),
// so the scaling bench starts several (load-process-main.ts); each prints
// one JSON line at the end.
import { H2GrpcInfer } from './h2-grpc-infer.js';
import * as hdr from 'hdr-histogram-js';
import { latencyHistogram, recordUs, summarize, type LatencySummary } from './histogram.js';
import { input } from '../../client/typed-tensors.js';

export interface LoadProcessPlan {
  /** host:port of the gateway's gRPC endpoint. */
  readonly address: string;
  readonly model: string;
  readonly connections: number;
  /** Calls in flight on each connection. */
  readonly concurrency: number;
  /** Epoch ms at which the window opens (the same for every process); the load starts at once. */
  readonly windowStartMs: number;
  readonly windowMs: number;
  readonly deadlineMs: number;
}

export interface LoadProcessResult {
  /** Answers that arrived inside the window, each checked to be the tensor sent. */
  readonly answered: number;
  readonly failed: number;
  readonly wrong: number;
  readonly firstError: string;
  readonly latency: LatencySummary;
  /** The latency histogram (µs), compressed, so the parent can merge the processes' percentiles. */
  readonly histogram: string;
  /** CPU seconds this process used in the window. */
  readonly cpuSeconds: number;
}

const WIDTH = 16; // identity_fp32 is [batch, 16]

export async function runLoadProcess(plan: LoadProcessPlan): Promise<LoadProcessResult> {
  const data = Float32Array.from({ length: WIDTH }, (_, i) => i + 0.5);
  const clients = Array.from({ length: plan.connections }, () => new H2GrpcInfer(plan.address));
  // Encoded and framed once: every connection writes the same frame.
  const prepared = (clients[0] as H2GrpcInfer).prepareInfer(plan.model, [input('INPUT0', 'FP32', [1, WIDTH], data)]);
  const histogram = latencyHistogram();
  const windowEnd = plan.windowStartMs + plan.windowMs;
  let answered = 0;
  let failed = 0;
  let wrong = 0;
  let firstError = '';
  let cpuAtStart: NodeJS.CpuUsage | undefined;
  let cpuAtEnd: NodeJS.CpuUsage | undefined;
  const startTimer = setTimeout(() => (cpuAtStart = process.cpuUsage()), Math.max(0, plan.windowStartMs - Date.now()));
  const endTimer = setTimeout(() => (cpuAtEnd = process.cpuUsage()), Math.max(0, windowEnd - Date.now()));

  const caller = async (client: H2GrpcInfer): Promise<void> => {
    for (;;) {
      const sentAt = Date.now();
      if (sentAt >= windowEnd) return;
      const t0 = performance.now();
      try {
        const result = await client.inferPrepared(prepared, { timeoutMs: plan.deadlineMs });
        const us = (performance.now() - t0) * 1000;
        const now = Date.now();
        if (sentAt < plan.windowStartMs || now > windowEnd) continue;
        const out = result.outputs[0]?.data;
        if (!sameFloats(out, data)) wrong++;
        else {
          answered++;
          recordUs(histogram, us);
        }
      } catch (error) {
        if (sentAt >= plan.windowStartMs && Date.now() <= windowEnd) failed++;
        firstError ||= error instanceof Error ? error.message : String(error);
        await new Promise((r) => setTimeout(r, 1)); // an error answered at once must not spin the loop
      }
    }
  };
  await Promise.all(clients.flatMap((c) => Array.from({ length: plan.concurrency }, () => caller(c))));
  clearTimeout(startTimer);
  clearTimeout(endTimer);
  for (const c of clients) c.close();
  const a = cpuAtStart ?? process.cpuUsage();
  const b = cpuAtEnd ?? process.cpuUsage();
  return { answered, failed, wrong, firstError, latency: summarize(histogram), histogram: hdr.encodeIntoCompressedBase64(histogram), cpuSeconds: (b.user - a.user + b.system - a.system) / 1e6 };
}

/** The identity model's answer: the tensor sent, element for element. */
function sameFloats(out: unknown, sent: Float32Array): boolean {
  if (!(out instanceof Float32Array) || out.length !== sent.length) return false;
  for (let i = 0; i < sent.length; i++) if (out[i] !== sent[i]) return false;
  return true;
}
