// gRPC server reflection (grpc.reflection.v1 and v1alpha), with
// --grpc-reflection: grpcurl, Postman and other tools list the gateway's
// services and call them without the .proto files. Triton has none. It
// describes the KServe service (proto/inference.proto with
// model_config.proto) and the health service (proto/health.proto)
// from the same .proto files the clients are generated from. Off by
// default: loading and parsing them takes @grpc/proto-loader and about
// 0.1 s at start (measured here), and a public endpoint need not describe
// itself.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Server } from '@grpc/grpc-js';
import { StartupError } from '../../core/startup-error.js';

/** The repository's proto/ folder: two levels above this file in the source tree, three in dist/. */
export function protoDir(): string {
  for (const rel of ['../../../proto/', '../../proto/']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(`${dir}inference.proto`)) return dir;
  }
  throw new StartupError('--grpc-reflection: proto/inference.proto was not found beside the gateway (the reflection describes the services from the .proto files)');
}

/** Adds the reflection services to `server` (before it binds). */
export async function addReflection(server: Server): Promise<void> {
  const [{ ReflectionService }, protoLoader] = await Promise.all([import('@grpc/reflection'), import('@grpc/proto-loader')]);
  const dir = protoDir();
  const definitions = await protoLoader.load(['inference.proto', 'health.proto'], { includeDirs: [dir], keepCase: true });
  new ReflectionService(definitions).addToServer(server);
}
