import { describe, expect, it } from 'vitest';
import { CacheConfigError, describeCache, parseCacheConfig } from '../../../gateway/cache/cache-config.js';
import { parseServeOptions, UsageError } from '../../../gateway/options.js';

describe('parseCacheConfig (--cache-config)', () => {
  it('is off without the flag', () => {
    expect(parseCacheConfig([])).toBeUndefined();
    expect(parseServeOptions(['--model-repository', 'm']).cache).toBeUndefined();
  });

  it("reads tritonserver's local form", () => {
    expect(parseCacheConfig(['local,size=1048576'])).toEqual({ kind: 'local', sizeBytes: 1048576, maxEntryBytes: 1048576 });
    expect(parseCacheConfig(['local,size=1000', 'local,max_entry_bytes=10'])).toEqual({ kind: 'local', sizeBytes: 1000, maxEntryBytes: 10 });
  });

  it("reads tritonserver's redis form, repeated or in one flag, with defaults", () => {
    const one = parseCacheConfig(['redis,host=127.0.0.1,port=6379']);
    const repeated = parseCacheConfig(['redis,host=127.0.0.1', 'redis,port=6379']);
    expect(one).toEqual(repeated);
    expect(one).toEqual({
      kind: 'redis',
      host: '127.0.0.1',
      port: 6379,
      user: undefined,
      password: undefined,
      db: 0,
      connectTimeoutMs: 0,
      socketTimeoutMs: 0,
      ttlSeconds: 3600,
      maxEntryBytes: 1 << 20,
      namespace: 'fabriek',
    });
    const full = parseCacheConfig(['redis,host=h,port=1,user=u,password=p=w,db=2,connect_timeout=10,socket_timeout=20,ttl=30,max_entry_bytes=40,namespace=x']);
    expect(full).toMatchObject({ user: 'u', password: 'p=w', db: 2, connectTimeoutMs: 10, socketTimeoutMs: 20, ttlSeconds: 30, maxEntryBytes: 40, namespace: 'x' });
    expect(JSON.stringify(describeCache(full!))).not.toContain('p=w');
  });

  const bad: [string, string[], string][] = [
    ['unknown cache', ['lokal,size=1'], "--cache-config: expected <cache>,<key>=<value> with cache local or redis (e.g. local,size=1048576), got 'lokal,size=1'"],
    ['no key', ['local'], "--cache-config: expected local,<key>=<value>, got 'local'"],
    ['no value sign', ['local,size'], "--cache-config local: expected <key>=<value>, got 'size'"],
    ['unknown option', ['local,sise=10'], "--cache-config local: unknown option 'sise'; expected one of size, max_entry_bytes"],
    ['size missing', ['local,max_entry_bytes=10'], '--cache-config local: needs size=<bytes> (e.g. local,size=1048576)'],
    ['size not a number', ['local,size=1MB'], "--cache-config local,size: expected an integer from 1 to 1099511627776, got '1MB'"],
    ['size zero', ['local,size=0'], "--cache-config local,size: expected an integer from 1 to 1099511627776, got '0'"],
    ['entry above size', ['local,size=10,max_entry_bytes=11'], "--cache-config local,max_entry_bytes: expected an integer from 1 to 10, got '11'"],
    ['two caches', ['local,size=10', 'redis,host=h'], '--cache-config: one cache at a time, got both local and redis'],
    ['redis without port', ['redis,host=h'], '--cache-config redis: needs host=<host> and port=<port> (e.g. redis,host=127.0.0.1,port=6379)'],
    ['redis bad port', ['redis,host=h,port=70000'], "--cache-config redis,port: expected an integer from 1 to 65535, got '70000'"],
    ['redis bad ttl', ['redis,host=h,port=1,ttl=-1'], "--cache-config redis,ttl: expected an integer from 1 to 31536000, got '-1'"],
    ['redis bad namespace', ['redis,host=h,port=1,namespace=a b'], "--cache-config redis,namespace: only letters, digits, _ . - are allowed, got 'a b'"],
  ];
  it.each(bad)('refuses %s, naming the flag and the value', (_what, flags, message) => {
    expect(() => parseCacheConfig(flags)).toThrow(new CacheConfigError(message));
    // fabriek serve turns it into a usage error (exit code 2).
    expect(() => parseServeOptions(['--model-repository', 'm', ...flags.flatMap((f) => ['--cache-config', f])])).toThrow(new UsageError(message));
  });
});
