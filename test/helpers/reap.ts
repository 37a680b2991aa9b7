import { type ChildProcess } from 'node:child_process';

// Processes a test file started that have not exited. A test that times out
// while awaiting never reaches its `finally`, and vitest goes on without it:
// its gateway outlived the run (two such gateways were found still serving
// during later benchmarks). When the file's process ends (vitest ends its
// forks with SIGTERM), whatever is left gets SIGTERM too (its whole process
// group when it leads one).

const live = new Map<ChildProcess, boolean>();
let hooked = false;

/** Signals `child` (its process group when `group`) if it is still running when this process exits. */
export function reapAtExit(child: ChildProcess, group = false): void {
  live.set(child, group);
  child.once('exit', () => live.delete(child));
  if (!hooked) {
    hooked = true;
    process.once('exit', reapAll);
    // A listener replaces Node's default exit on SIGTERM, so it exits itself.
    process.once('SIGTERM', () => {
      reapAll();
      process.exit(143);
    });
  }
}

function reapAll(): void {
  for (const [child, group] of live) {
    const pid = child.pid;
    if (pid === undefined) continue;
    try {
      process.kill(group ? -pid : pid, 'SIGTERM');
    } catch {
      // Gone already.
    }
  }
}
