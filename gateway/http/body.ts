// Request bodies: read whole (inference needs all inputs before it can start),
// decompressed per Content-Encoding, and capped at the server's max message
// size both before and after decompression, so a small gzip bomb cannot grow
// past the cap in memory.
import { type IncomingMessage } from 'node:http';
import { type Readable, type Transform } from 'node:stream';
import { createGunzip, createInflate } from 'node:zlib';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { cancelled, invalidArgument, resourceExhausted, ServingError } from '../../core/errors.js';

/** The body is larger than the server accepts: HTTP 413, outside Triton's gRPC-code mapping. */
export class BodyTooLargeError extends ServingError {
  override name = 'BodyTooLargeError';
}

function decoderFor(encoding: string | undefined): Transform | undefined {
  switch ((encoding ?? 'identity').trim().toLowerCase()) {
    case 'identity':
    case '':
      return undefined;
    case 'gzip':
    case 'x-gzip':
      return createGunzip();
    case 'deflate':
      return createInflate();
    default:
      throw invalidArgument(`unsupported Content-Encoding '${encoding}' (expected gzip, deflate or identity)`);
  }
}

/** The Content-Length, when the client gave a usable one. */
export function declaredLength(req: IncomingMessage): number | undefined {
  const n = Number(req.headers['content-length']);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** Reads and decodes the request body; rejects with BodyTooLargeError past `maxBytes`. */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = declaredLength(req);
  if (declared !== undefined && declared > maxBytes) {
    req.resume();
    return Promise.reject(tooLarge(maxBytes));
  }
  let source: Readable = req;
  let decoder: Transform | undefined;
  try {
    decoder = decoderFor(req.headers['content-encoding']);
  } catch (error) {
    req.resume();
    return Promise.reject(error);
  }
  // A plain body of declared length is copied into one buffer as it comes
  // (a large binary tensor is then held once, not as chunks plus their
  // concatenation). The buffer is taken when the first bytes arrive, not when
  // the headers do, so a client that declares a size and sends nothing holds nothing.
  const intoSize = decoder === undefined && declared !== undefined && declared >= LARGE_BODY ? declared : 0;
  let into: Buffer | undefined;
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let size = 0;
    let done = false;
    const fail = (error: unknown): void => {
      if (done) return;
      done = true;
      decoder?.destroy();
      req.resume(); // drain what is left so the socket can still carry the answer
      reject(error);
    };
    if (decoder) {
      req.on('data', (chunk: Buffer) => {
        received += chunk.byteLength;
        if (received > maxBytes) fail(tooLarge(maxBytes));
      });
      req.pipe(decoder);
      source = decoder;
      decoder.on('error', (e: Error) => fail(invalidArgument(`cannot decode the ${req.headers['content-encoding']} body: ${e.message}`)));
    }
    // The client went away mid-body: not a server fault, nothing to log.
    req.on('error', () => fail(cancelled('the client closed the connection before sending the whole body')));
    source.on('data', (chunk: Buffer) => {
      if (done) return;
      if (intoSize > 0) {
        // Node's parser never passes more than Content-Length bytes, so the body fits.
        try {
          into ??= Buffer.allocUnsafeSlow(intoSize);
        } catch {
          return fail(resourceExhausted(`cannot take ${intoSize} bytes for the request body now`));
        }
        chunk.copy(into, size);
        size += chunk.byteLength;
        return;
      }
      size += chunk.byteLength;
      if (size > maxBytes) return fail(tooLarge(maxBytes));
      chunks.push(chunk);
    });
    source.on('end', () => {
      if (done) return;
      done = true;
      if (intoSize > 0) resolve(into === undefined ? Buffer.alloc(0) : into.subarray(0, size));
      else resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
    });
  });
}

/** Bodies from this size on are read into one buffer of their declared length. */
const LARGE_BODY = 1 << 20;

function tooLarge(maxBytes: number): BodyTooLargeError {
  // RESOURCE_EXHAUSTED, as gRPC answers an over-large message; the server maps this class to 413.
  return new BodyTooLargeError(GrpcStatus.RESOURCE_EXHAUSTED, `request body is larger than the server's limit of ${maxBytes} bytes (--max-message-bytes)`);
}
