import { status as GrpcStatus } from '@grpc/grpc-js';
import { createServer, type Server } from 'node:http';
import { type AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InferenceError } from '../../client/errors.js';
import { InferenceHttpClient } from '../../client/http-client.js';

// The HTTP client reading compressed answers from a server that misbehaves:
// an answer that decompresses past the client's limit, and one that says gzip
// but is not. Each fault gets its own status and words.

describe('InferenceHttpClient and Content-Encoding', () => {
  let server: Server;
  let url: string;
  const big = gzipSync(Buffer.from(JSON.stringify({ name: 'x'.repeat(4096), version: '1', extensions: [] })));

  beforeAll(async () => {
    server = createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.setHeader('content-encoding', 'gzip');
      res.end(req.url === '/v2/big' || req.url === '/v2' ? big : Buffer.from('not gzip at all'));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const failure = async (p: Promise<unknown>): Promise<InferenceError> => {
    try {
      await p;
    } catch (error) {
      return error as InferenceError;
    }
    throw new Error('expected the call to fail');
  };

  it('reads a gzip answer within its limit', async () => {
    const client = new InferenceHttpClient(url);
    expect((await client.getServerMetadata()).name).toHaveLength(4096);
    client.close();
  });

  it('says RESOURCE_EXHAUSTED when the answer decompresses past the limit, though its compressed size is within it', async () => {
    const client = new InferenceHttpClient(url, { maxMessageBytes: 1024 });
    expect(big.byteLength).toBeLessThan(1024);
    const error = await failure(client.getServerMetadata());
    expect(error.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(error.message).toMatch(/the gzip answer decompresses to more than the client's limit of 1024 bytes/);
    client.close();
  });

  it('says INTERNAL, not a size, when the answer is not the encoding it claims', async () => {
    const client = new InferenceHttpClient(url);
    const error = await failure(client.isServerLive());
    expect(error.code).toBe(GrpcStatus.INTERNAL);
    expect(error.message).toMatch(/the answer says Content-Encoding gzip but does not decompress: incorrect header check/);
    client.close();
  });
});
