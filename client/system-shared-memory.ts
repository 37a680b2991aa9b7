// POSIX shared memory objects for Triton's system shared memory, made,
// filled and read from Node (tritonclient.utils.shared_memory does this for
// Python). On Linux the object '/name' is the file /dev/shm/name; Node has
// no shm_open or mmap, so it is written and read as that file. Register a
// region of it with registerSystemSharedMemory, then name the region in an
// input's or output's parameters.
import { open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

const SHM_DIR = '/dev/shm';

function pathOf(key: string): string {
  if (!/^\/[^/\0]+$/.test(key) || key === '/.' || key === '/..') throw new TypeError(`'${key}' is not a POSIX shared memory name ('/' and a name without another '/')`);
  return join(SHM_DIR, key.slice(1));
}

/** Makes the object `key` of `byteSize` zero bytes (owner read/write only), or resizes it. */
export async function createSharedMemoryRegion(key: string, byteSize: number): Promise<void> {
  const handle = await open(pathOf(key), 'a+', 0o600);
  try {
    await handle.truncate(byteSize);
  } finally {
    await handle.close();
  }
}

/** Writes `data` into the object `key` at `offset`. */
export async function writeSharedMemory(key: string, data: Uint8Array, offset = 0): Promise<void> {
  const handle = await open(pathOf(key), 'r+');
  try {
    await handle.write(data, 0, data.byteLength, offset);
  } finally {
    await handle.close();
  }
}

/** `byteSize` bytes of the object `key` from `offset` (all of it without a size). */
export async function readSharedMemory(key: string, byteSize?: number, offset = 0): Promise<Buffer> {
  if (byteSize === undefined) return (await readFile(pathOf(key))).subarray(offset);
  const handle = await open(pathOf(key), 'r');
  try {
    const out = Buffer.alloc(byteSize);
    const { bytesRead } = await handle.read(out, 0, byteSize, offset);
    return out.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Removes the object `key` (shm_unlink); regions registered on it stay readable on the server until unregistered. */
export async function destroySharedMemoryRegion(key: string): Promise<void> {
  await rm(pathOf(key), { force: true });
}
