import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../gateway/cli.js', import.meta.url));

export interface BenchGateway {
  readonly address: string;
  stop(): Promise<void>;
}

/** Starts `fabriek serve` on a free loopback port and waits for its ready line. */
export async function startBenchGateway(repository: string, extraArgs: readonly string[] = []): Promise<BenchGateway> {
  const child: ChildProcess = spawn(
    process.execPath,
    [CLI, 'serve', '--model-repository', repository, '--grpc-address', '127.0.0.1', '--grpc-port', '0', '--log-level', 'warn', ...extraArgs],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('gateway did not become ready within 120 s')), 120_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /gRPC on [^ ;]+:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    void exited.then(() => reject(new Error('gateway exited before it was ready')));
  });
  return {
    address: `127.0.0.1:${port}`,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
