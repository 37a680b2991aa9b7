import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { machineBusySeconds, treeCpuSeconds } from '../../core/process-cpu.js';

/** dist/gateway/cli.js, next to dist/bench/. */
export const GATEWAY_CLI = fileURLToPath(new URL('../../gateway/cli.js', import.meta.url));

export interface ChildServer {
  /** 127.0.0.1:PORT */
  readonly address: string;
  readonly pid: number;
  /** The stdout line that said it was ready. */
  readonly readyLine: string;
  /** The last stderr the child wrote (warnings and errors worth reporting). */
  stderrTail(): string;
  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`; resolves with the exit code or signal. */
  stop(graceMs?: number): Promise<string>;
}

// Children still running and temp dirs still present when this process
// exits (a crash, Ctrl-C) are cleaned up here, synchronously.
const liveChildren = new Set<ChildProcess>();
const tempDirs = new Set<string>();
process.once('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** Kills `child` at exit (a crash, Ctrl-C) if it is still running then: for children with no ready line to wait for. */
export function killAtExit(child: ChildProcess): ChildProcess {
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  return child;
}

/** Removes `dir` at exit unless it was removed (and forgotten) before. */
export function removeAtExit(dir: string): () => void {
  tempDirs.add(dir);
  return () => tempDirs.delete(dir);
}

const STDERR_TAIL = 16_384;

/**
 * Starts `node script args…` and waits for a stdout line matching
 * `ready` whose first group is the port it listens on (127.0.0.1).
 * `wrapper`: a command that runs it, e.g. ['taskset', '-c', '0'] (it must
 * exec node, so that the pid is node's).
 */
export async function startChildServer(
  script: string,
  args: readonly string[],
  ready: RegExp,
  timeoutMs = 120_000,
  nodeArgs: readonly string[] = [],
  wrapper: readonly string[] = [],
): Promise<ChildServer> {
  const command = wrapper[0] ?? process.execPath;
  const wrapped = wrapper.length > 0 ? [...wrapper.slice(1), process.execPath] : [];
  const child = spawn(command, [...wrapped, ...nodeArgs, script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-STDERR_TAIL);
  });
  const exited = new Promise<string>((resolve) =>
    child.once('exit', (code, signal) => {
      liveChildren.delete(child);
      resolve(signal ?? String(code));
    }),
  );
  const readyLine = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} not ready within ${timeoutMs} ms; stderr:\n${stderr}`));
    }, timeoutMs);
    const onData = (d: Buffer): void => {
      stdout += d.toString();
      const line = stdout.split('\n').slice(0, -1).find((l) => ready.test(l)); // whole lines only
      if (line !== undefined) {
        clearTimeout(timer);
        child.stdout.off('data', onData);
        child.stdout.resume(); // keep draining, stop keeping
        resolve(line);
      }
    };
    child.stdout.on('data', onData);
    void exited.then((how) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited (${how}) before it was ready; stderr:\n${stderr}`));
    });
  });
  const port = Number(ready.exec(readyLine)?.[1]);
  let stopping: Promise<string> | undefined;
  return {
    address: `127.0.0.1:${port}`,
    readyLine,
    pid: child.pid ?? -1,
    stderrTail: () => stderr,
    stop: (graceMs = 35_000) => {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        const how = await exited;
        clearTimeout(timer);
        return how;
      })();
      return stopping;
    },
  };
}

/** `fabriek serve` flags for --max-inflight-wait-ms `ms` (none for 0, the default). */
export const inflightWaitArgs = (ms: number): string[] => (ms > 0 ? ['--max-inflight-wait-ms', String(ms)] : []);

/**
 * `fabriek serve` on free loopback ports (gRPC, HTTP and metrics), quiet unless something goes wrong.
 * `nodeArgs`: options for node itself (before the script), which the workers it forks inherit (fork's default execArgv).
 */
export function startGateway(repository: string, extraArgs: readonly string[] = [], o: { readonly nodeArgs?: readonly string[] } = {}): Promise<ChildServer> {
  return startChildServer(
    GATEWAY_CLI,
    [
      'serve',
      '--model-repository',
      repository,
      '--grpc-address',
      '127.0.0.1',
      '--grpc-port',
      '0',
      '--http-address',
      '127.0.0.1',
      '--http-port',
      '0',
      '--metrics-port',
      '0',
      '--log-level',
      'warn',
      ...extraArgs,
    ],
    / ready: gRPC on 127\.0\.0\.1:(\d+)/,
    120_000,
    o.nodeArgs,
  );
}

/** The gateway's HTTP base URL, from its ready line; undefined when it serves no HTTP. */
export function httpUrlOf(server: ChildServer): string | undefined {
  const port = / HTTP on [^ ;]+:(\d+)/.exec(server.readyLine)?.[1];
  return port === undefined ? undefined : `http://127.0.0.1:${port}`;
}

export interface CpuShare {
  /** Cores kept busy on average during the window by this process (the load generator)… */
  readonly client: number;
  /** …by the server's process tree (0 when there is none)… */
  readonly server: number;
  /** …and by everything else on the machine: other users' work that disturbs the figures. */
  readonly other: number;
}

/** Cumulative CPU seconds at one instant: this process, the server tree, the whole machine. */
export interface CpuReading {
  readonly at: number;
  readonly client: number;
  readonly server: number;
  readonly machine: number;
}

/** Reads the CPU counters now; `serverPid` undefined for in-process baselines. */
export function cpuReading(serverPid?: number): CpuReading {
  const c = process.cpuUsage();
  return {
    at: performance.now(),
    client: (c.user + c.system) / 1e6,
    server: serverPid === undefined ? 0 : treeCpuSeconds(serverPid),
    machine: machineBusySeconds(),
  };
}

/** How the cores were shared between two readings. */
export function cpuShare(a: CpuReading, b: CpuReading): CpuShare {
  const seconds = (b.at - a.at) / 1000;
  const client = (b.client - a.client) / seconds;
  const server = (b.server - a.server) / seconds;
  const machine = (b.machine - a.machine) / seconds;
  return { client, server, other: Math.max(0, machine - client - server) };
}

/** Measures how the cores were shared over a window. */
export function cpuMeter(serverPid?: number): { start(): void; stop(): CpuShare } {
  let a = cpuReading(serverPid);
  return {
    start: () => {
      a = cpuReading(serverPid);
    },
    stop: () => cpuShare(a, cpuReading(serverPid)),
  };
}

/** Other work above this share of a core makes a level's figures suspect. */
export const DISTURBED_CORES = 0.15;

/** ", DISTURBED (…)" for a progress line when other work shared the cores. */
export const disturbedNote = (cpu: CpuShare | undefined): string =>
  cpu !== undefined && cpu.other > DISTURBED_CORES ? `, DISTURBED: other processes used ${cpu.other.toFixed(2)} cores` : '';
