// Bytes that do not decode as the method's request message. grpc-js answers
// a throwing deserializer with INTERNAL "Error deserializing request" and,
// on a stream, ends the whole stream. The bytes are the client's fault, so
// the deserializer here hands the handler adapters a MalformedRequest
// instead, and they answer INVALID_ARGUMENT saying why (a stream answers
// that message's error_message and goes on).
import { type MethodDefinition, type ServiceDefinition } from '@grpc/grpc-js';
import { invalidArgument, type ServingError } from '../../core/errors.js';

export class MalformedRequest {
  constructor(readonly error: ServingError) {}
}

/** The error to answer for a request that did not decode; undefined for one that did. */
export function malformed(request: unknown): ServingError | undefined {
  return request instanceof MalformedRequest ? request.error : undefined;
}

/** The service with every request deserializer wrapped: decode errors become MalformedRequest values. */
export function withMalformedRequests<S extends ServiceDefinition>(service: S): S {
  const wrapped: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service) as [string, MethodDefinition<unknown, unknown>][]) {
    const rpc = method.path.slice(method.path.lastIndexOf('/') + 1);
    wrapped[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return method.requestDeserialize(bytes);
        } catch (error) {
          const why = error instanceof Error ? error.message : String(error);
          return new MalformedRequest(invalidArgument(`${rpc}: the request is not a valid protobuf message (${why})`));
        }
      },
    };
  }
  return wrapped as S;
}
