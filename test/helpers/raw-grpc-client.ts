// A grpc-js Client that sends bytes as they are, for the hostile-input tests:
// any method, any payload, optional cancellation.
import { Client, credentials, Metadata, status as GrpcStatus } from '@grpc/grpc-js';

export const SERVICE = '/inference.GRPCInferenceService/';
export const MODEL_INFER = `${SERVICE}ModelInfer`;
export const MODEL_STREAM_INFER = `${SERVICE}ModelStreamInfer`;

export interface GrpcAnswer {
  readonly code: string;
  readonly details: string;
  readonly response: Buffer | undefined;
}

export interface GrpcCase {
  readonly kind: string;
  readonly bytes: Buffer;
  /** Status names this case may get. */
  readonly codes: readonly string[];
  /** What an error's details must match. */
  readonly message?: RegExp;
  /** For a valid request: the raw output bytes it must echo. */
  readonly echo?: Buffer;
  readonly timeoutMs?: number;
  /** The method; ModelInfer when absent. */
  readonly path?: string;
  /** The client cancels the call this long after starting it. */
  readonly cancelAfterMs?: number;
}

/** Unary calls over a plain grpc-js Client with Buffer passthrough: the bytes go on the wire as they are. */
export class RawGrpcClient {
  readonly client: Client;

  constructor(address: string) {
    this.client = new Client(address, credentials.createInsecure(), {
      'grpc.max_send_message_length': -1,
      'grpc.max_receive_message_length': -1,
    });
  }

  infer(bytes: Buffer, timeoutMs = 60_000): Promise<GrpcAnswer> {
    return this.call({ bytes, timeoutMs });
  }

  call(c: Pick<GrpcCase, 'bytes' | 'path' | 'timeoutMs' | 'cancelAfterMs'>): Promise<GrpcAnswer> {
    return new Promise((resolve) => {
      const call = this.client.makeUnaryRequest<Buffer, Buffer>(
        c.path ?? MODEL_INFER,
        (b) => b,
        (b) => b,
        c.bytes,
        new Metadata(),
        { deadline: Date.now() + (c.timeoutMs ?? 60_000) },
        (error, response) => {
          if (error) resolve({ code: GrpcStatus[error.code] ?? String(error.code), details: error.details, response: undefined });
          else resolve({ code: 'OK', details: '', response });
        },
      );
      if (c.cancelAfterMs !== undefined) setTimeout(() => call.cancel(), c.cancelAfterMs);
    });
  }

  close(): void {
    this.client.close();
  }
}
