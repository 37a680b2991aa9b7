// gRPC server reflection with --grpc-reflection, called as grpcurl calls it
// (grpc.reflection.v1 ServerReflectionInfo, the reflection package's own
// .proto): the services listed, and the KServe service and the health
// service described by file; without the flag, UNIMPLEMENTED.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { type Client, credentials, type ClientDuplexStream, loadPackageDefinition, type ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

interface ReflectionResponse {
  readonly list_services_response?: { service: { name: string }[] };
  readonly file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  readonly error_response?: { error_code: number; error_message: string };
}
type ReflectionRequest = { list_services: string } | { file_containing_symbol: string };
interface ReflectionClient extends Client {
  ServerReflectionInfo(): ClientDuplexStream<ReflectionRequest, ReflectionResponse>;
}

const reflectionProto = join(dirname(createRequire(import.meta.url).resolve('@grpc/reflection/package.json')), 'build/proto/grpc/reflection/v1/reflection.proto');
const definitions = loadSync(reflectionProto, { keepCase: true });
const Reflection = (loadPackageDefinition(definitions) as unknown as { grpc: { reflection: { v1: { ServerReflection: new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => ReflectionClient } } } })
  .grpc.reflection.v1.ServerReflection;

/** One request on a fresh stream, and its one answer (or the stream's error). */
function ask(gw: GatewayProcess, request: ReflectionRequest): Promise<ReflectionResponse> {
  const client = new Reflection(gw.address, credentials.createInsecure());
  return new Promise<ReflectionResponse>((resolve, reject) => {
    const call = client.ServerReflectionInfo();
    call.on('data', (r: ReflectionResponse) => {
      resolve(r);
      call.end();
    });
    call.on('error', reject);
    call.write(request);
  }).finally(() => client.close());
}

describe('gRPC server reflection', () => {
  let gw: GatewayProcess;

  beforeAll(async () => {
    gw = await startGateway(['--model-repository', TEST_REPOSITORY, '--workers', '1', '--log-level', 'warn', '--grpc-reflection', 'true']);
  });
  afterAll(async () => {
    await gw.stop();
  });

  it('lists the KServe, health and reflection services', async () => {
    const names = (await ask(gw, { list_services: '' })).list_services_response?.service.map((s) => s.name);
    expect(names).toEqual(expect.arrayContaining(['inference.GRPCInferenceService', 'grpc.health.v1.Health']));
  });

  it('describes the KServe service (with the types of model_config.proto: one package, one file) and the health service', async () => {
    const inference = Buffer.concat((await ask(gw, { file_containing_symbol: 'inference.GRPCInferenceService' })).file_descriptor_response?.file_descriptor_proto ?? []);
    for (const word of ['ModelInfer', 'ModelInferRequest', 'raw_input_contents', 'ModelDynamicBatching']) expect(inference.includes(word)).toBe(true);
    const health = Buffer.concat((await ask(gw, { file_containing_symbol: 'grpc.health.v1.Health' })).file_descriptor_response?.file_descriptor_proto ?? []);
    for (const word of ['HealthCheckRequest', 'Watch', 'SERVICE_UNKNOWN']) expect(health.includes(word)).toBe(true);
  });

  it('says NOT_FOUND for a symbol it does not have', async () => {
    expect((await ask(gw, { file_containing_symbol: 'nope.Nothing' })).error_response?.error_code).toBe(GrpcStatus.NOT_FOUND);
  });
});

describe('gRPC server reflection off (the default)', () => {
  it('answers UNIMPLEMENTED', async () => {
    const gw = await startGateway(['--model-repository', TEST_REPOSITORY, '--workers', '1', '--log-level', 'warn']);
    try {
      const error = (await ask(gw, { list_services: '' }).catch((e: unknown) => e)) as ServiceError;
      expect(error.code).toBe(GrpcStatus.UNIMPLEMENTED);
    } finally {
      await gw.stop();
    }
  });
});
