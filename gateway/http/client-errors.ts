// Requests node:http cannot parse (a broken request line, Content-Length
// with Transfer-Encoding, a negative length, headers past the size limit, a
// body cut short) never reach the router. Node answers them with a bare 400
// and no body; here they get the same JSON error form as every other
// answer, saying what was wrong.
import { maxHeaderSize, type Server, type ServerResponse, STATUS_CODES } from 'node:http';
import { type Server as HttpsServer } from 'node:https';
import { type Duplex } from 'node:stream';
import { boundedMessage } from '../../core/errors.js';

interface ParseError extends Error {
  readonly code?: string;
  /** llhttp's words, e.g. "Content-Length can't be present with Transfer-Encoding". */
  readonly reason?: string;
}

/** Status and message for a request node could not parse. */
export function clientErrorAnswer(error: ParseError): { status: number; message: string } {
  switch (error.code) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, message: `the request headers are larger than the server accepts (${maxHeaderSize} bytes)` };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, message: 'the request did not arrive in time' };
    case 'HPE_INVALID_EOF_STATE':
      return { status: 400, message: 'the client closed the connection before the end of the body' };
    default:
      return { status: 400, message: `malformed HTTP request: ${error.reason ?? error.message}` };
  }
}

/**
 * The response node has in flight on a connection. Node's own clientError
 * fallback checks this internal field; it is set even when the parse error
 * comes before the 'request' event (node then answers 400 through it itself).
 */
function inFlight(socket: Duplex): ServerResponse | null | undefined {
  return (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
}

export function answerClientErrors(server: Server | HttpsServer): void {
  server.on('clientError', (error: ParseError, socket: Duplex) => {
    // Once a response has started on the connection, another answer would corrupt it.
    if (error.code === 'ECONNRESET' || !socket.writable || inFlight(socket)?.headersSent) {
      socket.destroy();
      return;
    }
    const { status, message } = clientErrorAnswer(error);
    const body = JSON.stringify({ error: boundedMessage(message) });
    // The connection cannot carry another request: answer, then close it.
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\ncontent-type: application/json\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      () => socket.destroy(),
    );
  });
}
