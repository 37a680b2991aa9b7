// Where a gateway's local workers listen: a Unix socket file per worker in
// the temporary directory, named after the gateway's pid. A worker that ends
// normally removes its file; one killed (SIGKILL, the OOM killer, a gateway
// killed with its process group) leaves it behind. The supervisor removes a
// worker's file when it exits, and at start the files of gateways that no
// longer run: otherwise every crash adds files to /tmp for good.
import { readdir, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';

const PATTERN = /^fabriek-(\d+)-.+\.sock$/;

export function workerSocketPath(dir: string, gatewayPid: number, workerId: string): string {
  return join(dir, `fabriek-${gatewayPid}-${workerId}.sock`);
}

/** Whether a process with this pid exists (EPERM: it does, as another user's). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** How long a connection to a socket file may take before it counts as in use (a listener too busy to accept). */
const PROBE_MS = 1_000;

/** Whether nothing listens on the socket file at `path`: connecting is refused (not merely slow). */
export function nobodyListens(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    const done = (refused: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(refused);
    };
    const timer = setTimeout(() => done(false), PROBE_MS);
    socket.once('connect', () => done(false));
    socket.once('error', (error: NodeJS.ErrnoException) => done(error.code === 'ECONNREFUSED'));
  });
}

/**
 * Removes the worker sockets in `dir` left by gateways that no longer run:
 * the pid in the name is gone and nothing listens on the file (a gateway in
 * another pid namespace sharing /tmp keeps its files). Returns the names
 * removed; those this user may not remove (another user's, in a sticky
 * /tmp) stay.
 */
export async function removeStaleWorkerSockets(dir: string, exists: (pid: number) => boolean = processExists): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const pid = PATTERN.exec(name)?.[1];
    if (pid === undefined || Number(pid) === process.pid || exists(Number(pid))) continue;
    const path = join(dir, name);
    if (!(await nobodyListens(path))) continue;
    try {
      await rm(path, { force: true });
      removed.push(name);
    } catch {
      // Not ours to remove.
    }
  }
  return removed;
}
