// Triton's system shared memory extension: a client on the same host puts a
// tensor in a POSIX shared memory object (/dev/shm/<key>), registers a part
// of it as a named region, and names the region in its request instead of
// sending the bytes; an output may be written to a region too. Node has no
// mmap: a region is read and written through the object's file handle
// (pread and pwrite on tmpfs), one copy through the kernel and no socket,
// protobuf or HTTP framing on the way. Off unless --system-shared-memory:
// a caller names any object in /dev/shm, which the gateway then reads and
// writes as itself.
import { status as GrpcStatus } from '@grpc/grpc-js';
import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import { invalidArgument, notFound, ServingError } from '../../core/errors.js';

/** Where POSIX shared memory objects live on Linux: shm_open("/name") is this directory's file "name". */
export const SHM_DIR = '/dev/shm';

export interface RegionStatus {
  readonly name: string;
  readonly key: string;
  readonly offset: number;
  readonly byteSize: number;
}

/** A registration or unregistration, as the gateway processes pass it on ('' unregisters every region). */
export type SharedMemoryChange = ({ readonly op: 'register' } & RegionStatus) | { readonly op: 'unregister'; readonly name: string };

interface Region extends RegionStatus {
  readonly handle: FileHandle;
  /** Reads and writes under way: the handle closes after the last, once unregistered. */
  uses: number;
  unregistered: boolean;
}

/** A POSIX shared memory name: one leading slash, then a name without one. */
function checkKey(name: string, key: string): void {
  if (!/^\/[^/\0]+$/.test(key) || key === '/.' || key === '/..') {
    throw invalidArgument(`failed to register shared memory region '${name}': key '${key}' is not a POSIX shared memory name ('/' and a name without another '/')`);
  }
}

/** Bytes an offset or a size may hold: a whole number from 0 to 2^53-1. */
function checkSize(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw invalidArgument(`${what} must be a whole number from 0 to 2^53-1, got ${value}`);
}

/**
 * Several gateway processes: the primary holds the names registered, so two
 * processes cannot register one name at once (each would keep its own).
 */
export interface SharedMemoryPeers {
  /** Holds `name` for this process's registration; refuses (Triton's words) one registered or held elsewhere. */
  claim(name: string): Promise<void>;
  /** The claim is given up: the registration failed here. */
  unclaim(name: string): Promise<void>;
  /** A change made here, for the other processes to apply (a register ends its claim). */
  changed(change: SharedMemoryChange): Promise<void>;
}

/**
 * The regions one gateway process has registered, by name. With several
 * gateway processes each holds its own handles: `peers` passes a call's
 * change to the others (through the primary), which `apply` it.
 */
export class SystemSharedMemory {
  readonly #regions = new Map<string, Region>();
  readonly #dir: string;
  readonly #peers: SharedMemoryPeers | undefined;

  /** `dir`: where the objects live (tests may point it elsewhere). */
  constructor(o: { readonly dir?: string; readonly peers?: SharedMemoryPeers } = {}) {
    this.#dir = o.dir ?? SHM_DIR;
    this.#peers = o.peers;
  }

  /** Registers `byteSize` bytes from `offset` of the object `key` as region `name`. */
  async register(name: string, key: string, offset: number, byteSize: number): Promise<void> {
    const peers = this.#peers;
    if (peers === undefined) return this.#register(name, key, offset, byteSize);
    // An empty name or a taken one is refused here, before the primary is asked.
    if (name !== '' && !this.#regions.has(name)) await peers.claim(name);
    try {
      await this.#register(name, key, offset, byteSize);
    } catch (error) {
      if (name !== '') await peers.unclaim(name).catch(() => undefined);
      throw error;
    }
    await peers.changed({ op: 'register', name, key, offset, byteSize });
  }

  /** Unregisters region `name` ('': every region). A name not registered is no error, as in Triton. */
  async unregister(name: string): Promise<void> {
    await this.#unregister(name);
    await this.#peers?.changed({ op: 'unregister', name });
  }

  /** A change another gateway process made (passed on by the primary): applied here, not passed on again. */
  apply(change: SharedMemoryChange): Promise<void> {
    return change.op === 'register' ? this.#register(change.name, change.key, change.offset, change.byteSize) : this.#unregister(change.name);
  }

  async #register(name: string, key: string, offset: number, byteSize: number): Promise<void> {
    if (name === '') throw invalidArgument('failed to register shared memory region: the name is empty');
    checkKey(name, key);
    checkSize(offset, `shared memory region '${name}': offset`);
    checkSize(byteSize, `shared memory region '${name}': byte_size`);
    if (this.#regions.has(name)) throw alreadyExists(name);
    const path = join(this.#dir, key.slice(1));
    let handle: FileHandle;
    try {
      handle = await open(path, 'r+');
    } catch (error) {
      throw invalidArgument(`Unable to open shared memory region: '${key}' (${(error as NodeJS.ErrnoException).code ?? String(error)} on ${path})`);
    }
    try {
      const { size } = await handle.stat();
      if (offset + byteSize > size) {
        throw invalidArgument(`failed to register shared memory region '${name}': invalid args (offset ${offset} + byte_size ${byteSize} run past the ${size} bytes of ${key})`);
      }
      // Registered by another call while this one opened the object.
      if (this.#regions.has(name)) throw alreadyExists(name);
    } catch (error) {
      await handle.close();
      throw error;
    }
    this.#regions.set(name, { name, key, offset, byteSize, handle, uses: 0, unregistered: false });
  }

  async #unregister(name: string): Promise<void> {
    const names = name === '' ? [...this.#regions.keys()] : [name];
    await Promise.all(
      names.map(async (n) => {
        const region = this.#regions.get(n);
        if (region === undefined) return;
        this.#regions.delete(n);
        region.unregistered = true;
        if (region.uses === 0) await region.handle.close();
      }),
    );
  }

  /** The status of region `name` ('': every region). */
  status(name: string): RegionStatus[] {
    if (name === '') return [...this.#regions.values()].map(statusOf);
    const region = this.#regions.get(name);
    if (region === undefined) throw notFound(`Unable to find system shared memory region: '${name}'`);
    return [statusOf(region)];
  }

  /** `byteSize` bytes from `offset` within region `name`, in a buffer of their own. */
  async read(name: string, offset: number, byteSize: number): Promise<Uint8Array> {
    const region = this.#use(name, offset, byteSize);
    try {
      const data = Buffer.allocUnsafe(byteSize);
      let done = 0;
      while (done < byteSize) {
        const { bytesRead } = await region.handle.read(data, done, byteSize - done, region.offset + offset + done);
        if (bytesRead === 0) throw invalidArgument(`shared memory region '${name}': ${region.key} ends before offset ${offset + done} (was it truncated?)`);
        done += bytesRead;
      }
      return data;
    } finally {
      await this.#release(region);
    }
  }

  /** Writes `data` at `offset` within region `name`, which must have room for it. */
  async write(name: string, offset: number, data: Uint8Array): Promise<void> {
    const region = this.#use(name, offset, data.byteLength);
    try {
      let done = 0;
      while (done < data.byteLength) {
        const { bytesWritten } = await region.handle.write(data, done, data.byteLength - done, region.offset + offset + done);
        done += bytesWritten;
      }
    } finally {
      await this.#release(region);
    }
  }

  /** Throws unless region `name` is registered and holds `byteSize` bytes from `offset` (an output's region, before the run). */
  check(name: string, offset: number, byteSize: number): void {
    this.#within(name, offset, byteSize);
  }

  /** Closes every region (this process shuts down; the others keep theirs). */
  close(): Promise<void> {
    return this.#unregister('');
  }

  /** Region `name`, checked to hold `byteSize` bytes from `offset` (Triton's checks and words), counted as in use. */
  #use(name: string, offset: number, byteSize: number): Region {
    const region = this.#within(name, offset, byteSize);
    region.uses++;
    return region;
  }

  #within(name: string, offset: number, byteSize: number): Region {
    const region = this.#regions.get(name);
    if (region === undefined) throw unknown(name);
    if (offset >= region.byteSize && !(offset === 0 && byteSize === 0)) throw invalidArgument(`Invalid offset for shared memory region: '${name}'`);
    if (offset + byteSize > region.byteSize) throw invalidArgument(`Invalid offset + byte size for shared memory region: '${name}'`);
    return region;
  }

  async #release(region: Region): Promise<void> {
    region.uses--;
    if (region.unregistered && region.uses === 0) await region.handle.close();
  }
}

function statusOf(r: Region): RegionStatus {
  return { name: r.name, key: r.key, offset: r.offset, byteSize: r.byteSize };
}

function unknown(name: string): ServingError {
  return notFound(`Unable to find shared memory region: '${name}'`);
}

export function alreadyExists(name: string): ServingError {
  return new ServingError(GrpcStatus.ALREADY_EXISTS, `shared memory region '${name}' already in manager`);
}
