import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../bench/fault/redis-process.js';
import { waitFor } from './processes.js';
import { reapAtExit } from './reap.js';

// Debian's real prometheus server on a loopback port, scraping the given
// targets every second and evaluating the given rule files; and promtool.

export interface PrometheusServer {
  readonly url: string;
  /** An instant query; the result vector (or a failure message). */
  query(expr: string): Promise<{ ok: true; result: unknown[] } | { ok: false; error: string }>;
  get(path: string): Promise<unknown>;
  output(): string;
  close(): Promise<void>;
}

/** `caFile`: scrape the targets over HTTPS, trusting that CA (a gateway with --http-use-ssl serves /metrics over TLS). */
export async function startPrometheus(targets: readonly string[], ruleFiles: readonly string[], o: { readonly caFile?: string } = {}): Promise<PrometheusServer> {
  const dir = mkdtempSync(join(tmpdir(), 'fabriek-prometheus-'));
  const port = await freePort();
  const config = [
    'global:',
    '  scrape_interval: 1s',
    '  scrape_timeout: 1s',
    '  evaluation_interval: 1s',
    'rule_files:',
    ...ruleFiles.map((f) => `  - ${JSON.stringify(f)}`),
    'scrape_configs:',
    '  - job_name: fabriek',
    ...(o.caFile === undefined ? [] : ['    scheme: https', '    tls_config:', `      ca_file: ${JSON.stringify(o.caFile)}`]),
    '    static_configs:',
    `      - targets: ${JSON.stringify(targets)}`,
    '',
  ].join('\n');
  writeFileSync(join(dir, 'prometheus.yml'), config);
  const child: ChildProcess = spawn(
    'prometheus',
    [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  reapAtExit(child);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const close = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}:\n${out}`);
        return (await fetch(`${url}/-/ready`).catch(() => undefined))?.ok === true;
      },
      20_000,
      'prometheus to be ready',
    );
  } catch (error) {
    await close();
    throw error;
  }
  const get = async (path: string): Promise<unknown> => (await fetch(`${url}${path}`)).json();
  return {
    url,
    get,
    query: async (expr) => {
      const body = (await get(`/api/v1/query?query=${encodeURIComponent(expr)}`)) as { status: string; error?: string; data?: { result: unknown[] } };
      return body.status === 'success' && body.data ? { ok: true, result: body.data.result } : { ok: false, error: body.error ?? JSON.stringify(body) };
    },
    output: () => out,
    close,
  };
}

const run = promisify(execFile);

/** Runs promtool; resolves with its output, rejects with it when it fails. */
export async function promtool(args: readonly string[], cwd?: string): Promise<string> {
  try {
    const { stdout, stderr } = await run('promtool', [...args], { cwd, timeout: 30_000 });
    return stdout + stderr;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`promtool ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? e.message}`);
  }
}
