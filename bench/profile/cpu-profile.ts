// Where a server's CPU goes per request, from V8 CPU profiles (`node
// --cpu-prof`, one file per thread): each sample is charged to a stage of the
// request path by the nearest frame up its stack that belongs to a known
// place (a Fabriek module or a package); Node's own internals (HTTP/2,
// streams, buffers) count for the caller that got there. Pure: the runner
// (profile-run.ts) collects the files and the request count.

/** What V8 writes for `--cpu-prof` (the fields used here). */
export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  /** µs, on the host's monotonic clock (the clock of process.hrtime). */
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  /** µs since the sample before (the first: since startTime). */
  readonly timeDeltas: readonly number[];
}

export interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string };
  readonly children?: readonly number[];
}

/** The stages, in the order a gRPC request meets them. */
export const STAGES = [
  'grpc-js (calls, metadata, message framing)',
  'Node HTTP/2, HTTP and sockets (no caller of ours)',
  'handlers and infer pipeline',
  'admission, tenants, in-flight bound',
  'decode and encode (protobuf, JSON, tensors)',
  'validate',
  'queue, batching, scheduling',
  'worker link (frames, socket writes)',
  'worker: frames, checks, merge',
  'hand-off to ONNX Runtime threads',
  'ONNX Runtime (run, tensors)',
  'response cache',
  'metrics, statistics, load reports',
  'logging and tracing',
  'other (Fabriek)',
  'other packages',
  'garbage collection',
  'V8 and native (program)',
] as const;
export type Stage = (typeof STAGES)[number];

/** Path patterns, in order: the first whose pattern the frame's URL contains names its stage. */
const PLACES: readonly (readonly [string, Stage])[] = [
  ['node_modules/@grpc/grpc-js/', 'grpc-js (calls, metadata, message framing)'],
  ['node_modules/onnxruntime', 'ONNX Runtime (run, tensors)'],
  ['/worker/ort-pool', 'hand-off to ONNX Runtime threads'],
  ['/worker/ort-thread', 'hand-off to ONNX Runtime threads'],
  ['/worker/thread-', 'hand-off to ONNX Runtime threads'],
  ['/worker/ort-', 'ONNX Runtime (run, tensors)'],
  ['node_modules/prom-client/', 'metrics, statistics, load reports'],
  ['node_modules/pino', 'logging and tracing'],
  ['node_modules/@opentelemetry/', 'logging and tracing'],
  ['node_modules/@bufbuild/', 'decode and encode (protobuf, JSON, tensors)'],
  ['node_modules/', 'other packages'],
  ['/proto/gen/', 'decode and encode (protobuf, JSON, tensors)'],
  ['/gateway/grpc/infer-codec', 'decode and encode (protobuf, JSON, tensors)'],
  ['/gateway/tensor/', 'decode and encode (protobuf, JSON, tensors)'],
  ['/gateway/http/json-tensors', 'decode and encode (protobuf, JSON, tensors)'],
  ['/gateway/http/body', 'decode and encode (protobuf, JSON, tensors)'],
  ['/gateway/parse-json', 'decode and encode (protobuf, JSON, tensors)'],
  ['/gateway/validate-request', 'validate'],
  ['/gateway/inference/reshape', 'validate'],
  ['/gateway/inference/request-parameters', 'validate'],
  ['/gateway/inference/admission', 'admission, tenants, in-flight bound'],
  ['/gateway/inference/inflight-gate', 'admission, tenants, in-flight bound'],
  ['/gateway/inference/grpc-inflight', 'admission, tenants, in-flight bound'],
  ['/gateway/tenants/', 'admission, tenants, in-flight bound'],
  ['/gateway/batching/', 'queue, batching, scheduling'],
  ['/gateway/scheduling/dispatcher', 'queue, batching, scheduling'],
  ['/gateway/scheduling/direct-scheduler', 'queue, batching, scheduling'],
  ['/gateway/scheduling/instance-slots', 'queue, batching, scheduling'],
  ['/gateway/scheduling/execution', 'queue, batching, scheduling'],
  ['/core/pipelining', 'queue, batching, scheduling'],
  ['/gateway/scheduling/', 'worker link (frames, socket writes)'],
  ['/core/worker-frames', 'worker link (frames, socket writes)'],
  ['/core/execute-frame', 'worker link (frames, socket writes)'],
  ['/core/tick-cork', 'worker link (frames, socket writes)'],
  ['/worker/', 'worker: frames, checks, merge'],
  ['/gateway/cache/', 'response cache'],
  ['/gateway/metrics/', 'metrics, statistics, load reports'],
  ['/gateway/stats/', 'metrics, statistics, load reports'],
  ['/gateway/load/', 'metrics, statistics, load reports'],
  ['/core/window-sums', 'metrics, statistics, load reports'],
  ['/gateway/logger', 'logging and tracing'],
  ['/gateway/inference/request-log', 'logging and tracing'],
  ['/gateway/inference/trace-headers', 'logging and tracing'],
  ['/core/tracing', 'logging and tracing'],
  ['/gateway/grpc/', 'handlers and infer pipeline'],
  ['/gateway/http/', 'handlers and infer pipeline'],
  ['/gateway/inference/', 'handlers and infer pipeline'],
  ['/gateway/', 'other (Fabriek)'],
  ['/core/', 'other (Fabriek)'],
];

/** The stage a frame's URL names, or undefined for Node's internals and V8's pseudo-frames. */
export function placeOf(url: string): Stage | undefined {
  if (url === '' || url.startsWith('node:')) return undefined;
  for (const [pattern, stage] of PLACES) if (url.includes(pattern)) return stage;
  return undefined;
}

/** CPU time of one thread's profile by stage, µs, over samples taken within [fromUs, toUs]; idle apart. */
export interface StageTimes {
  readonly stages: ReadonlyMap<Stage, number>;
  readonly busyUs: number;
  readonly idleUs: number;
}

/**
 * Charges each sample within [fromUs, toUs] (the host's monotonic clock, µs)
 * to a stage: the first frame from the leaf up that has a place; without one,
 * V8's pseudo-frames by name, and Node's internals (a socket read, a timer)
 * to Node's HTTP/2 and sockets.
 */
export function stageTimes(profile: CpuProfile, fromUs: number, toUs: number): StageTimes {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const stageOfNode = new Map<number, Stage | 'idle'>();
  const resolve = (id: number): Stage | 'idle' => {
    const known = stageOfNode.get(id);
    if (known !== undefined) return known;
    const leaf = byId.get(id);
    let stage: Stage | 'idle' | undefined;
    const name = leaf?.callFrame.functionName;
    if (name === '(idle)') stage = 'idle';
    else if (name === '(garbage collector)') stage = 'garbage collection';
    else if (name === '(program)' || name === '(root)') stage = 'V8 and native (program)';
    for (let at: number | undefined = id; stage === undefined && at !== undefined; at = parent.get(at)) {
      stage = placeOf(byId.get(at)?.callFrame.url ?? '');
    }
    stage ??= 'Node HTTP/2, HTTP and sockets (no caller of ours)';
    stageOfNode.set(id, stage);
    return stage;
  };
  const stages = new Map<Stage, number>();
  let busyUs = 0;
  let idleUs = 0;
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    // A sample's time is the gap to the next one.
    const dt = profile.timeDeltas[i + 1] ?? 0;
    if (t < fromUs || t > toUs || dt <= 0) continue;
    const stage = resolve(profile.samples[i] as number);
    if (stage === 'idle') {
      idleUs += dt;
      continue;
    }
    busyUs += dt;
    stages.set(stage, (stages.get(stage) ?? 0) + dt);
  }
  return { stages, busyUs, idleUs };
}

/** Adds stage times (threads of one process, or processes of one role). */
export function addStageTimes(parts: readonly StageTimes[]): StageTimes {
  const stages = new Map<Stage, number>();
  let busyUs = 0;
  let idleUs = 0;
  for (const p of parts) {
    busyUs += p.busyUs;
    idleUs += p.idleUs;
    for (const [s, us] of p.stages) stages.set(s, (stages.get(s) ?? 0) + us);
  }
  return { stages, busyUs, idleUs };
}

/** What `--cpu-prof` names a file: CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile. */
export function profileFileInfo(file: string): { readonly pid: number; readonly thread: number } | undefined {
  const m = /^CPU\.\d+\.\d+\.(\d+)\.(\d+)\.\d+\.cpuprofile$/.exec(file);
  return m ? { pid: Number(m[1]), thread: Number(m[2]) } : undefined;
}
