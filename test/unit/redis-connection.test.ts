import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadRedisSecrets, PASSWORD_ENV, redactUrl, redisError, redisTarget, sentinelUrl } from '../../core/redis-connection.js';
import { parseServeOptions } from '../../gateway/options.js';
import { quotaKeys } from '../../gateway/tenants/redis-scripts.js';
import { parseWorkerArgs } from '../../worker/cli-args.js';

const dir = mkdtempSync(join(tmpdir(), 'fabriek-redis-conn-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('redisTarget', () => {
  it('standalone: host, port, db, user; the display never holds the password', () => {
    const t = redisTarget('redis://app:s3cret@10.0.0.5:6380/2');
    expect(t).toMatchObject({ mode: 'standalone', display: 'redis://app:***@10.0.0.5:6380/2', passwordInUrl: true, secrets: ['s3cret'] });
    expect(t.options).toMatchObject({ host: '10.0.0.5', port: 6380, db: 2, username: 'app', password: 's3cret' });
    expect(redisTarget('redis://r').options).toMatchObject({ host: 'r', port: 6379 });
    expect(redisTarget('redis://:pw@r:1').display).toBe('redis://:***@r:1');
    expect(redisTarget('redis://[::1]:7000').options).toMatchObject({ host: '::1', port: 7000 });
  });

  it('a password from the file or environment goes into the options, never into the display', () => {
    const t = redisTarget('rediss://app@redis.prod:6380', { password: 'p@ss:w/rd', ca: Buffer.from('CA') });
    expect(t.display).toBe('rediss://app:***@redis.prod:6380');
    expect(t.passwordInUrl).toBe(false);
    expect(t.options).toMatchObject({ username: 'app', password: 'p@ss:w/rd', tls: { servername: 'redis.prod', ca: Buffer.from('CA') } });
    // No TLS server name for an address: SNI carries host names only (RFC 6066), and Node 26 refuses an IP there.
    expect(redisTarget('rediss://127.0.0.1:6380').options.tls).toEqual({});
    expect(redisTarget('rediss://[::1]:6380').options.tls).toEqual({});
    expect(() => redisTarget('redis://:a@r:1', { password: 'b' })).toThrow('a registry password came both in the URL and from --registry-password-file');
    expect(() => redisTarget('redis://r:1', { ca: Buffer.from('x') })).toThrow('--registry-tls-* need a rediss:// URL, got redis://');
    expect(() => redisTarget('rediss://r:1', { cert: Buffer.from('x') })).toThrow('--registry-tls-cert and --registry-tls-key go together');
  });

  it('sentinel and cluster URLs', () => {
    const s = redisTarget('redis-sentinel://:pw@s1:26379,s2:26380/mymaster/3');
    expect(s.mode).toBe('sentinel');
    expect(s.display).toBe('redis-sentinel://:***@s1:26379,s2:26380/mymaster/3');
    expect(s.options).toMatchObject({ sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26380 }], name: 'mymaster', db: 3, password: 'pw' });
    expect(sentinelUrl('a:1, b:2', 'm')).toBe('redis-sentinel://a:1,b:2/m');
    const c = redisTarget('redis-cluster://n1:7000,n2:7001');
    expect(c.mode).toBe('cluster');
    expect(c.nodes).toEqual([{ host: 'n1', port: 7000 }, { host: 'n2', port: 7001 }]);
  });

  it('says what is wrong, without the password', () => {
    expect(() => redisTarget('http://u:secret@r:1')).toThrow("expected a redis://, rediss://, redis-sentinel:// or redis-cluster:// URL, got 'http://u:***@r:1'");
    expect(() => redisTarget('redis://a:1,b:2')).toThrow('expected one host:port in redis://');
    expect(() => redisTarget('redis-sentinel://:secret@s:1')).toThrow("got 'redis-sentinel://:***@s:1': no master name");
    expect(() => redisTarget('redis://r:99999')).toThrow("expected host:port in redis://r:99999, got 'r:99999'");
    expect(() => redisTarget('redis://r:1/x')).toThrow("expected a database number after the last / of redis://r:1/x, got 'x'");
    expect(() => sentinelUrl('a:1', 'bad name')).toThrow("--registry-sentinel-name: expected letters, digits, _ . -, got 'bad name'");
    expect(redactUrl('redis://user:pw@h:1')).toBe('redis://user:***@h:1');
  });
});

describe('loadRedisSecrets', () => {
  it('reads the password file (one trailing newline dropped) or the environment, and removes the variable', async () => {
    const file = join(dir, 'pw');
    writeFileSync(file, 'from-file\n');
    expect((await loadRedisSecrets({ passwordFile: file }, {})).password).toBe('from-file');
    const env: NodeJS.ProcessEnv = { [PASSWORD_ENV]: 'from-env', OTHER: 'x' };
    expect((await loadRedisSecrets({}, env)).password).toBe('from-env');
    expect(env).toEqual({ OTHER: 'x' });
    expect((await loadRedisSecrets({}, {})).password).toBeUndefined();
  });

  it('refuses two sources, an empty password and unreadable files, naming the flag', async () => {
    const file = join(dir, 'pw2');
    writeFileSync(file, 'x');
    await expect(loadRedisSecrets({ passwordFile: file }, { [PASSWORD_ENV]: 'y' })).rejects.toThrow(
      `both --registry-password-file and ${PASSWORD_ENV} are set: give the password one way`,
    );
    writeFileSync(join(dir, 'empty'), '\n');
    await expect(loadRedisSecrets({ passwordFile: join(dir, 'empty') }, {})).rejects.toThrow('the file is empty');
    await expect(loadRedisSecrets({ passwordFile: join(dir, 'nope') }, {})).rejects.toThrow(`--registry-password-file ${join(dir, 'nope')}: cannot read the file (ENOENT)`);
    await expect(loadRedisSecrets({ tlsKey: join(dir, 'nokey') }, {})).rejects.toThrow('--registry-tls-key');
    await expect(loadRedisSecrets({}, { [PASSWORD_ENV]: '' })).rejects.toThrow(`${PASSWORD_ENV} is set but empty`);
  });
});

describe('redisError', () => {
  it('keeps the message, scrubs the password, and drops the command ioredis attaches (AUTH args are the password)', () => {
    const raw = Object.assign(new Error('WRONGPASS invalid username-password pair (hunter2)'), { command: { name: 'auth', args: ['hunter2'] } });
    const safe = redisError(raw, { secrets: ['hunter2'] });
    expect(safe.message).toBe('WRONGPASS invalid username-password pair (***)');
    expect(JSON.stringify({ ...safe, stack: safe.stack, message: safe.message })).not.toContain('hunter2');
    expect('command' in safe).toBe(false);
  });
});

describe('quota keys', () => {
  it('share one hash tag, so a script touching a tenant and the gateway set runs on Redis Cluster', () => {
    const k = quotaKeys('prod');
    const tag = (key: string): string | undefined => /\{([^}]+)\}/.exec(key)?.[1];
    const keys = [k.tenant('a', 'requests'), k.tenant('b', 'items'), k.tenant('c', 'inflight'), k.gateways];
    expect(new Set(keys.map(tag))).toEqual(new Set(['prod:quota']));
    expect(k.tenant('a', 'requests')).toBe('{prod:quota}:a:requests');
  });
});

describe('registry flags', () => {
  it('fabriek serve: Sentinel flags make a redis-sentinel:// URL; the secret flags carry paths only', () => {
    const o = parseServeOptions([
      '--model-repository', '/m',
      '--registry-sentinels', 's1:26379,s2:26379', '--registry-sentinel-name', 'fabriek',
      '--registry-password-file', '/run/secrets/redis',
    ]);
    expect(o.registry).toBe('redis-sentinel://s1:26379,s2:26379/fabriek');
    expect(o.registrySecrets).toEqual({ passwordFile: '/run/secrets/redis', tlsCa: undefined, tlsCert: undefined, tlsKey: undefined });
    const tls = parseServeOptions(['--model-repository', '/m', '--registry', 'rediss://r:6380', '--registry-tls-ca', '/ca.pem']);
    expect(tls.registrySecrets.tlsCa).toBe('/ca.pem');
    expect(() => parseServeOptions(['--model-repository', '/m', '--registry-password-file', '/p'])).toThrow('--registry-password-file needs --registry');
    expect(() => parseServeOptions(['--model-repository', '/m', '--registry', 'redis://r:1', '--registry-sentinels', 'a:1', '--registry-sentinel-name', 'm'])).toThrow(
      'give --registry or --registry-sentinels with --registry-sentinel-name, not both',
    );
    expect(() => parseServeOptions(['--model-repository', '/m', '--registry-sentinels', 'a:1'])).toThrow('--registry-sentinels and --registry-sentinel-name go together');
    expect(() => parseServeOptions(['--model-repository', '/m', '--registry', 'redis-cluster://a:1'])).toThrow('Redis Cluster cannot hold the worker registry');
    const quota = parseServeOptions(['--model-repository', '/m', '--quota-redis', 'redis-cluster://a:1,b:2', '--registry-password-file', '/p']);
    expect(quota).toMatchObject({ registry: undefined, quotaRedis: 'redis-cluster://a:1,b:2', registrySecrets: { passwordFile: '/p' } });
    expect(() => parseServeOptions(['--model-repository', '/m', '--quota-redis', 'mysql://x'])).toThrow("--quota-redis: expected a redis://, rediss://");
  });

  it('fabriek worker: the same flags', () => {
    const a = parseWorkerArgs(['--registry-sentinels', 's:1', '--registry-sentinel-name', 'm', '--model-repository', '/m', '--registry-password-file', '/p']);
    expect(a.registry).toMatchObject({ url: 'redis-sentinel://s:1/m', secrets: { passwordFile: '/p' } });
    expect(() => parseWorkerArgs(['--listen', 'x:1', '--registry-tls-ca', '/ca'])).toThrow('--registry-tls-ca needs --registry');
    expect(() => parseWorkerArgs(['--registry', 'redis://r:1', '--model-repository', '/m', '--registry-password-file', ''])).toThrow(
      '--registry-password-file needs a file path',
    );
  });
});
