// The one message a worker sends its parent over the IPC channel (when it was
// spawned with one), as soon as its gRPC server is bound. Importing this file
// has no side effects, so the gateway can use the guard.

export interface WorkerReadyMessage {
  readonly type: 'ready';
  /** Address to dial with grpc-js: "unix:/path" as given, or host:port with the real port. */
  readonly address: string;
  readonly workerId: string;
  readonly pid: number;
}

export function isWorkerReadyMessage(message: unknown): message is WorkerReadyMessage {
  if (typeof message !== 'object' || message === null) return false;
  const m = message as Record<string, unknown>;
  return m['type'] === 'ready' && typeof m['address'] === 'string' && typeof m['workerId'] === 'string' && typeof m['pid'] === 'number';
}
