import { type handleUnaryCall, Server, ServerCredentials } from '@grpc/grpc-js';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { GRPCInferenceServiceService, type ModelInferRequest, type ModelInferResponse } from '../../proto/gen/inference.js';
import { type ChildServer, startChildServer } from '../load/child-server.js';

// The ceiling of any Node gRPC server on this machine: the KServe v2 service
// definition with only ModelInfer, answering each request with its own
// inputs as outputs. Everything else answers UNIMPLEMENTED (grpc-js's
// default for methods without a handler).

const modelInfer: handleUnaryCall<ModelInferRequest, ModelInferResponse> = (call, callback) => {
  const r = call.request;
  callback(null, {
    modelName: r.modelName,
    modelVersion: r.modelVersion,
    id: r.id,
    parameters: {},
    outputs: r.inputs.map((i) => ({ name: i.name, datatype: i.datatype, shape: i.shape, parameters: {} })),
    rawOutputContents: r.rawInputContents,
  });
};

export interface EchoServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Starts the echo server in this process (same message limits as the gateway). */
export function startEchoServer(host = '127.0.0.1', port = 0): Promise<EchoServer> {
  const server = new Server({ 'grpc.max_receive_message_length': 1 << 30, 'grpc.max_send_message_length': 1 << 30 });
  server.addService(GRPCInferenceServiceService, { modelInfer });
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, ServerCredentials.createInsecure(), (error, bound) => {
      if (error) return reject(error);
      resolve({ port: bound, close: () => new Promise<void>((done) => server.tryShutdown(() => done())) });
    });
  });
}

const SCRIPT = fileURLToPath(import.meta.url);

/** The echo server as its own process, like the gateway (so it does not share the load generator's event loop). */
export function spawnEchoServer(): Promise<ChildServer> {
  return startChildServer(SCRIPT, ['--port', '0'], /^grpc-echo ready: gRPC on 127\.0\.0\.1:(\d+)/, 30_000);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { port: { type: 'string', default: '0' } } });
  // Loopback only: this is a measuring tool, not a service.
  const echo = await startEchoServer('127.0.0.1', Number(values.port));
  process.stdout.write(`grpc-echo ready: gRPC on 127.0.0.1:${echo.port}\n`);
  const stop = (): void => void echo.close().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(SCRIPT)) {
  main().catch((error: unknown) => {
    process.stderr.write(`grpc-echo failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
