import { type ClientHttp2Session, connect, constants, createServer, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { releaseClosedStreams } from '../../gateway/grpc/release-streams.js';

// A real HTTP/2 server and client on loopback: the server's stream is
// inspected after it closed.

const servers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of servers.splice(0)) await close();
});

/** Listens on loopback and connects a client; both are closed after the test. */
async function connected(server: Http2Server): Promise<ClientHttp2Session> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  servers.push(async () => {
    client.destroy();
    await new Promise((r) => server.close(r));
  });
  return client;
}

async function serveOnce(release: boolean): Promise<ServerHttp2Stream> {
  const server = createServer();
  if (release) releaseClosedStreams(server);
  const seen = new Promise<ServerHttp2Stream>((resolve) => {
    server.on('stream', (stream) => {
      stream.on('data', () => undefined);
      stream.on('end', () => {
        stream.respond({ ':status': 200 });
        stream.end('answer');
      });
      resolve(stream);
    });
  });
  const client = await connected(server);
  const req = client.request({ ':method': 'POST', ':path': '/' });
  req.end('request');
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (d: string) => (body += d));
  await new Promise((r) => req.on('close', r));
  expect(body).toBe('answer');
  const stream = await seen;
  if (!stream.closed) await new Promise((r) => stream.once('close', r));
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  return stream;
}

describe('releaseClosedStreams', () => {
  it('takes a closed stream’s listeners off it, leaving one that ignores errors', async () => {
    const stream = await serveOnce(true);
    expect(stream.closed).toBe(true);
    expect(stream.listenerCount('data')).toBe(0);
    expect(stream.listenerCount('end')).toBe(0);
    expect(stream.listenerCount('close')).toBe(0);
    expect(stream.listenerCount('error')).toBe(1);
    // A late error on it is heard, not thrown.
    expect(() => stream.emit('error', new Error('late'))).not.toThrow();
  });

  it('leaves them without it (what the release is for)', async () => {
    const stream = await serveOnce(false);
    expect(stream.listenerCount('data')).toBeGreaterThan(0);
    expect(stream.listenerCount('end')).toBeGreaterThan(0);
  });

  it('does not touch a stream still open', async () => {
    const server = createServer();
    releaseClosedStreams(server);
    const opened = new Promise<ServerHttp2Stream>((resolve) => server.on('stream', resolve));
    const client = await connected(server);
    const req = client.request({ ':method': 'POST', ':path': '/' });
    req.write('part');
    const stream = await opened;
    const onData = (): void => undefined;
    stream.on('data', onData);
    await new Promise((r) => setImmediate(r));
    expect(stream.closed).toBe(false);
    expect(stream.listeners('data')).toContain(onData);
    req.close(constants.NGHTTP2_CANCEL);
  });
});
