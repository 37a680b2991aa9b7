import { status } from '@grpc/grpc-js';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sharedMemoryRefOf } from '../../gateway/shared-memory/shared-memory-tensors.js';
import { SystemSharedMemory } from '../../gateway/shared-memory/system-shared-memory.js';

// The registry on a directory of its own standing in for /dev/shm (the integration test uses /dev/shm itself).

describe('SystemSharedMemory', () => {
  let dir: string;
  let shm: SystemSharedMemory;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fabriek-shm-'));
    await writeFile(join(dir, 'obj'), Buffer.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]));
    shm = new SystemSharedMemory({ dir });
  });
  afterEach(async () => {
    await shm.close();
    await rm(dir, { recursive: true, force: true });
  });

  const code = async (p: Promise<unknown> | (() => unknown)): Promise<[string, string]> => {
    try {
      await (typeof p === 'function' ? p() : p);
    } catch (error) {
      return [status[(error as { code: number }).code] ?? '?', (error as Error).message];
    }
    return ['OK', ''];
  };

  it('registers a region of an object and reads and writes within it, at its offset', async () => {
    await shm.register('r', '/obj', 4, 8);
    expect([...(await shm.read('r', 0, 4))]).toEqual([4, 5, 6, 7]);
    expect([...(await shm.read('r', 6, 2))]).toEqual([10, 11]);
    await shm.write('r', 2, Uint8Array.from([99, 98]));
    expect([...(await readFile(join(dir, 'obj')))].slice(4, 12)).toEqual([4, 5, 99, 98, 8, 9, 10, 11]);
    expect(shm.status('')).toEqual([{ name: 'r', key: '/obj', offset: 4, byteSize: 8 }]);
    expect(shm.status('r')).toEqual([{ name: 'r', key: '/obj', offset: 4, byteSize: 8 }]);
  });

  it("refuses what Triton refuses, in its words", async () => {
    await shm.register('r', '/obj', 0, 16);
    expect(await code(shm.register('r', '/obj', 0, 4))).toEqual(['ALREADY_EXISTS', "shared memory region 'r' already in manager"]);
    expect(await code(shm.register('s', '/obj', 8, 9))).toEqual(['INVALID_ARGUMENT', "failed to register shared memory region 's': invalid args (offset 8 + byte_size 9 run past the 16 bytes of /obj)"]);
    expect((await code(shm.register('s', '/missing', 0, 1)))[1]).toMatch(/^Unable to open shared memory region: '\/missing' \(ENOENT on /);
    expect((await code(shm.register('s', 'obj', 0, 1)))[0]).toBe('INVALID_ARGUMENT');
    expect((await code(shm.register('s', '/../etc/passwd', 0, 1)))[1]).toMatch(/is not a POSIX shared memory name/);
    expect((await code(shm.register('s', '/obj', -1, 1)))[0]).toBe('INVALID_ARGUMENT');
    expect(await code(shm.read('nope', 0, 1))).toEqual(['NOT_FOUND', "Unable to find shared memory region: 'nope'"]);
    expect(await code(shm.read('r', 16, 1))).toEqual(['INVALID_ARGUMENT', "Invalid offset for shared memory region: 'r'"]);
    expect(await code(shm.read('r', 10, 7))).toEqual(['INVALID_ARGUMENT', "Invalid offset + byte size for shared memory region: 'r'"]);
    expect(await code(() => shm.status('nope'))).toEqual(['NOT_FOUND', "Unable to find system shared memory region: 'nope'"]);
  });

  it('unregisters one region or all; an unknown name is no error; a read under way finishes first', async () => {
    await shm.register('a', '/obj', 0, 8);
    await shm.register('b', '/obj', 8, 8);
    const reading = shm.read('a', 0, 8);
    await shm.unregister('a');
    expect([...(await reading)]).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect((await code(shm.read('a', 0, 1)))[0]).toBe('NOT_FOUND');
    await shm.unregister('nope');
    expect(shm.status('').map((r) => r.name)).toEqual(['b']);
    await shm.unregister('');
    expect(shm.status('')).toEqual([]);
  });

  it('fails a read past the end of an object truncated after its registration', async () => {
    await shm.register('r', '/obj', 0, 16);
    await writeFile(join(dir, 'obj'), Buffer.alloc(4));
    expect((await code(shm.read('r', 0, 16)))[1]).toMatch(/ends before offset 4 \(was it truncated\?\)/);
  });
});

describe('sharedMemoryRefOf', () => {
  const of = (params: Record<string, unknown>): unknown => sharedMemoryRefOf((n) => params[n], "input 'x'");

  it('reads Triton\'s three parameters, the offset 0 when absent', () => {
    expect(of({})).toBeUndefined();
    expect(of({ shared_memory_region: 'r', shared_memory_byte_size: 64 })).toEqual({ region: 'r', offset: 0, byteSize: 64 });
    expect(of({ shared_memory_region: 'r', shared_memory_byte_size: 64n, shared_memory_offset: 8n })).toEqual({ region: 'r', offset: 8, byteSize: 64 });
  });

  it.each([
    [{ shared_memory_offset: 1 } as Record<string, unknown>, "input 'x': 'shared_memory_offset' can not be specified without 'shared_memory_region'"],
    [{ shared_memory_byte_size: 1 }, "input 'x': 'shared_memory_byte_size' can not be specified without 'shared_memory_region'"],
    [{ shared_memory_region: 'r' }, "input 'x': 'shared_memory_region' needs 'shared_memory_byte_size' too"],
    [{ shared_memory_region: 7, shared_memory_byte_size: 1 }, "input 'x': invalid value type for 'shared_memory_region' parameter, expected string_param (a JSON string)"],
    [{ shared_memory_region: 'r', shared_memory_byte_size: '1' }, "input 'x': invalid value type for 'shared_memory_byte_size' parameter, expected int64_param (a JSON integer)"],
    [{ shared_memory_region: 'r', shared_memory_byte_size: -1 }, "input 'x': 'shared_memory_byte_size' must be a whole number from 0 to 2^53-1, got -1"],
    [{ shared_memory_region: 'r', shared_memory_byte_size: 2n ** 64n - 1n }, "input 'x': 'shared_memory_byte_size' must be a whole number from 0 to 2^53-1, got 18446744073709552000"],
  ])('refuses %s', (params, message) => {
    expect(() => of(params)).toThrow(message);
  });
});
