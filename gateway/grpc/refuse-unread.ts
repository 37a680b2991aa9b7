import { constants, type ServerHttp2Stream } from 'node:http2';
import { type ServerInterceptingCallInterface } from '@grpc/grpc-js';
import { type StreamWindows } from './stream-window.js';

// A call refused from its metadata, before its message is read. The client
// may still be sending that message, and goes on after the status arrives
// (grpc-js resets a stream only when it ends the call itself; plain HTTP/2
// clients just finish their request): each refused 600 KB request then
// crosses the connection anyway, sharing its bandwidth with the calls that
// were admitted. So after the trailers-only answer the stream is reset with
// NO_ERROR, which HTTP/2 defines for exactly this (RFC 9113 §8.1: a complete
// response sent before the whole request; the client must not discard the
// response). Node sends the reset once the answer is written, but only when
// asked outside nghttp2's callbacks: a refusal decided from the metadata runs
// inside the one that received the request's HEADERS, and there Node 22
// (22.23.5; 20 and 24 do not) submits the reset ahead of the answer still
// queued, and nghttp2 then drops the answer: every refused client saw
// "Received RST_STREAM with code 0" instead of its status. So the reset is
// asked for at the loop's next check phase, after Node has written what the
// callback queued (a write still in progress then makes Node hold the reset
// until it ends). The session's stream window narrows too (stream-window.ts):
// its next calls' bodies cross it only 64 KB at a time until they are read.

/**
 * The HTTP/2 stream under a server call. grpc-js offers no accessor; its
 * base call keeps the stream as `stream` and each interceptor's call the
 * next one as `nextCall` (grpc-js 1.14; the refusal tests fail if that moves).
 */
function http2StreamOf(call: ServerInterceptingCallInterface): ServerHttp2Stream | undefined {
  let c: unknown = call;
  for (let depth = 0; depth < 16 && typeof c === 'object' && c !== null; depth++) {
    const stream = (c as { stream?: unknown }).stream;
    if (typeof stream === 'object' && stream !== null && typeof (stream as ServerHttp2Stream).close === 'function' && 'rstCode' in stream) return stream as ServerHttp2Stream;
    c = (c as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}

/** Resets a refused stream whose answer went out (a reset before it would leave the client without a status). */
function resetAnswered(stream: ServerHttp2Stream): void {
  if (stream.headersSent && !stream.closed && !stream.destroyed) stream.close(constants.NGHTTP2_NO_ERROR);
}

export function refuseUnread(call: ServerInterceptingCallInterface, status: Parameters<ServerInterceptingCallInterface['sendStatus']>[0], windows: StreamWindows): void {
  const stream = http2StreamOf(call);
  // Taken before the answer: a stream that ends drops its session.
  const session = stream?.session;
  call.sendStatus(status);
  if (stream !== undefined && stream.headersSent && !stream.closed) setImmediate(resetAnswered, stream);
  if (session !== undefined) windows.refused(session);
}
