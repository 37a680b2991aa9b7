// Requests node:http cannot parse get the JSON error form, and never a second answer after a response has started.
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerClientErrors } from '../../gateway/http/client-errors.js';

function exchange(port: number, raw: string, halfClose = false): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(raw);
      if (halfClose) socket.end();
    });
    let data = '';
    socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(data));
  });
}

const bodyOf = (answer: string): unknown => JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));

describe('answerClientErrors', () => {
  let server: Server;
  let port: number;

  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/stream') {
        // Starts its answer before reading the body.
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('started');
      }
      req.on('error', () => undefined);
      req.resume();
    });
    answerClientErrors(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(() => {
    server.close();
  });

  it.each([
    ['a broken request line', 'GARBAGE\r\n\r\n', 'malformed HTTP request: Invalid method encountered'],
    ['a negative Content-Length', 'POST / HTTP/1.1\r\nhost: x\r\ncontent-length: -5\r\n\r\n', 'malformed HTTP request: Invalid character in Content-Length'],
    ['Content-Length with Transfer-Encoding', 'POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n', "malformed HTTP request: Transfer-Encoding can't be present with Content-Length"],
  ])('answers %s with 400 and a JSON error', async (_, raw, message) => {
    const answer = await exchange(port, raw);
    expect(answer).toMatch(/^HTTP\/1\.1 400 Bad Request\r\ncontent-type: application\/json\r\n/);
    expect(bodyOf(answer)).toEqual({ error: message });
  });

  it('answers headers past the size limit with 431', async () => {
    const answer = await exchange(port, `GET / HTTP/1.1\r\nhost: x\r\nx-filler: ${'x'.repeat(20_000)}\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    expect(bodyOf(answer)).toEqual({ error: expect.stringMatching(/^the request headers are larger than the server accepts \(\d+ bytes\)$/) });
  });

  it('answers a body the client stopped sending', async () => {
    const answer = await exchange(port, 'POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{"a"', true);
    expect(bodyOf(answer)).toEqual({ error: 'the client closed the connection before the end of the body' });
  });

  it('adds nothing to a response already under way', async () => {
    const answer = await exchange(port, 'POST /stream HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n');
    // The connection is closed: what of the 200 got out, if anything, is all the client sees.
    expect(answer === '' || answer.startsWith('HTTP/1.1 200 OK\r\n')).toBe(true);
    expect(answer).not.toMatch(/HTTP\/1\.1 400/);
  });
});
