import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { InferenceGrpcClient } from '../../client/grpc-client.js';
import { reapAtExit } from './reap.js';

export const CLI = fileURLToPath(new URL('../../dist/gateway/cli.js', import.meta.url));

export interface GatewayProcess {
  readonly child: ChildProcess;
  readonly grpcPort: number;
  readonly address: string;
  readonly readyLine: string;
  readonly client: InferenceGrpcClient;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** A CLI process (`fabriek serve` or `fabriek worker`) that printed its ready line. */
export interface ReadyCli {
  readonly child: ChildProcess;
  readonly readyLine: string;
  readonly exited: Promise<number | null>;
  stderr(): string;
}

/** Spawns `fabriek ARGS…` and waits for the stdout line containing ' ready: '. */
export async function spawnReadyCli(args: readonly string[], what: string, timeoutMs: number, detached = false): Promise<ReadyCli> {
  // detached: the CLI leads its own process group (as under systemd or SLURM), so a test can signal the whole group.
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached });
  reapAtExit(child, detached);
  let out = '';
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const readyLine = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} not ready in ${timeoutMs} ms; stderr:\n${err}`)), timeoutMs);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.includes(' ready: '));
      if (line) {
        clearTimeout(timer);
        resolve(line);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code} before ready; stderr:\n${err}`));
    });
  });
  return { child, readyLine, exited, stderr: () => err };
}

/**
 * FABRIEK_TEST_GATEWAY_PROCESSES=N runs every gateway the tests start with
 * `--gateway-processes N` (unless a test gives the flag itself), to run
 * existing tests against several gateway processes. Unset: 1, so that the
 * tests see one gateway process on every host (the default, auto, is more
 * than one on hosts with 8 cores or more).
 */
export const GATEWAY_PROCESSES_ENV = 'FABRIEK_TEST_GATEWAY_PROCESSES';

/** Gateway processes each started gateway runs (FABRIEK_TEST_GATEWAY_PROCESSES, else 1). */
export const TEST_GATEWAY_PROCESSES = Number(process.env[GATEWAY_PROCESSES_ENV] || '1');

function gatewayProcessesArgs(args: readonly string[]): string[] {
  if (args.includes('--gateway-processes')) return [];
  const n = process.env[GATEWAY_PROCESSES_ENV];
  return ['--gateway-processes', n === undefined || n === '' ? '1' : n];
}

/**
 * FABRIEK_TEST_LOCAL_WORKERS=in-process runs every gateway the tests start
 * with `--local-workers in-process` (unless a test gives the flag itself), to
 * run existing tests against workers in the gateway's process. Tests that
 * kill or stop a worker process do not apply there.
 */
export const LOCAL_WORKERS_ENV = 'FABRIEK_TEST_LOCAL_WORKERS';

function localWorkersArgs(args: readonly string[]): string[] {
  const mode = process.env[LOCAL_WORKERS_ENV];
  if (args.includes('--local-workers') || mode === undefined || mode === '') return [];
  return ['--local-workers', mode];
}

/** The gateway's HTTP port, from its ready line. */
export function httpPortOf(gw: Pick<GatewayProcess, 'readyLine'>): number {
  const port = /HTTP on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1];
  if (port === undefined) throw new Error(`no HTTP port in ${gw.readyLine}`);
  return Number(port);
}

/** The gateway's HTTP base URL, from its ready line. */
export function httpUrlOf(gw: Pick<GatewayProcess, 'readyLine'>): string {
  return `http://127.0.0.1:${httpPortOf(gw)}`;
}

/** Starts the real `fabriek serve` CLI on a free port and waits for its ready line. */
export async function startGateway(args: readonly string[], timeoutMs = 90_000): Promise<GatewayProcess> {
  const { child, readyLine, exited, stderr } = await spawnReadyCli(
    ['serve', '--grpc-port', '0', '--grpc-address', '127.0.0.1', '--http-address', '127.0.0.1', '--http-port', '0', '--metrics-port', '0', ...gatewayProcessesArgs(args), ...localWorkersArgs(args), ...args],
    'gateway',
    timeoutMs,
  );
  const port = Number(/gRPC on [^ ;]+:(\d+)/.exec(readyLine)?.[1]);
  const address = `127.0.0.1:${port}`;
  const client = new InferenceGrpcClient(address);
  return {
    child,
    grpcPort: port,
    address,
    readyLine,
    client,
    stderr,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      client.close();
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}

/** Runs the CLI to completion (for startup failures). */
export function runCli(args: readonly string[], timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    reapAtExit(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`CLI did not exit within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
