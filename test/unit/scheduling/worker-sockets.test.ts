import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { nobodyListens, processExists, removeStaleWorkerSockets, workerSocketPath } from '../../../gateway/scheduling/worker-sockets.js';

// The worker sockets a killed gateway leaves in the temporary directory, and
// which of them the next gateway may remove: real sockets, real processes.

/**
 * A child process that listens as a gateway's worker would (a socket named
 * after the child's own pid), then is SIGKILLed: its socket file stays, with
 * nobody listening. Resolves with its pid.
 */
async function killedListener(dir: string): Promise<number> {
  const script = `const p = require('node:path').join(${JSON.stringify(dir)}, 'fabriek-' + process.pid + '-cpu0.sock'); require('node:net').createServer().listen(p, () => console.log('up'))`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`listener exited (${code}) before it listened`)));
  });
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  return child.pid as number;
}

function listen(path: string): Promise<Server> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(path, () => resolve(server));
  });
}

describe('worker sockets left behind', () => {
  let dir: string;
  const servers: Server[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fabriek-sockets-'));
  });

  afterEach(async () => {
    for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it('names a worker socket by the gateway pid and worker id', () => {
    expect(workerSocketPath('/tmp', 1234, 'cpu0')).toBe('/tmp/fabriek-1234-cpu0.sock');
  });

  it('removes the socket of a killed process, and leaves live, foreign and unrelated files', async () => {
    const stalePid = await killedListener(dir);
    const stale = workerSocketPath(dir, stalePid, 'cpu0');
    expect(existsSync(stale)).toBe(true);
    expect(await nobodyListens(stale)).toBe(true);
    // A gateway in another pid namespace: its pid is unknown here, yet its worker listens.
    const foreign = workerSocketPath(dir, stalePid, 'gpu1');
    servers.push(await listen(foreign));
    // The running gateway's own worker, and a gateway that still runs.
    const own = workerSocketPath(dir, process.pid, 'cpu0');
    await writeFile(own, '');
    const running = workerSocketPath(dir, process.ppid, 'cpu0');
    await writeFile(running, '');
    await writeFile(join(dir, 'fabriek-bench-slo-x.sock'), '');
    await writeFile(join(dir, 'other.sock'), '');

    expect(await removeStaleWorkerSockets(dir)).toEqual([`fabriek-${stalePid}-cpu0.sock`]);
    expect((await readdir(dir)).sort()).toEqual(
      ['fabriek-bench-slo-x.sock', `fabriek-${process.pid}-cpu0.sock`, `fabriek-${process.ppid}-cpu0.sock`, `fabriek-${stalePid}-gpu1.sock`, 'other.sock'].sort(),
    );
  });

  it('does not probe the files of a pid that runs', async () => {
    const file = workerSocketPath(dir, 4_000_000, 'cpu0');
    await writeFile(file, '');
    const asked: number[] = [];
    expect(await removeStaleWorkerSockets(dir, (pid) => (asked.push(pid), true))).toEqual([]);
    expect(asked).toEqual([4_000_000]);
    expect(existsSync(file)).toBe(true);
    // The same file once its pid is gone: a plain file is no listener either.
    expect(await removeStaleWorkerSockets(dir, () => false)).toEqual(['fabriek-4000000-cpu0.sock']);
  });

  it('returns nothing for a directory that cannot be read', async () => {
    expect(await removeStaleWorkerSockets(join(dir, 'missing'))).toEqual([]);
  });

  it('tells a running process from one that is gone', async () => {
    expect(processExists(process.pid)).toBe(true);
    const gone = await killedListener(dir);
    expect(processExists(gone)).toBe(false);
  });
});
