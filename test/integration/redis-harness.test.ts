import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';

describe('redis test harness', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis.close();
  });

  it('starts a real redis-server that forgets everything on restart', async () => {
    const client = redis.client();
    await client.set('k', 'v');
    expect(await client.get('k')).toBe('v');
    await redis.restart();
    const fresh = redis.client();
    expect(await fresh.get('k')).toBeNull();
  });
});
