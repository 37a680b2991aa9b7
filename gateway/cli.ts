#!/usr/bin/env node
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createLogger } from './logger.js';
import { type RunningGateway, startGateway, StartupError } from './main.js';
import { parseServeOptions, SERVE_USAGE, type ServeOptions, UsageError } from './options.js';
import { type Logger } from 'pino';
import { resolveGatewayProcesses, usableCores } from './cluster/gateway-processes.js';
import { isGatewayChild, type ReadySummary } from './cluster/messages.js';
import { FABRIEK_VERSION } from '../core/version.js';
import { USAGE as WORKER_USAGE } from '../worker/cli-args.js';
import { describeTls } from '../core/tls.js';
import { NOT_LOADED_ON_DEMAND } from './repository/model-manager.js';
import { formatAmount } from './repository/memory-budget.js';
import { avoidPretenuring } from './v8-heap.js';

const USAGE = `fabriek ${FABRIEK_VERSION}: inference serving over the KServe v2 protocol

Usage:
  fabriek serve --model-repository DIR [options]   start a gateway with local workers
  fabriek serve --registry redis://H:P [options]   start a gateway serving registered workers' models
  fabriek worker --registry redis://H:P --model-repository DIR [options]
                                                   start a worker that registers in Redis
                                                   (see fabriek worker --help)
  fabriek bench -m MODEL [options] | suite | compare A B   benchmarks (see fabriek bench --help)
  fabriek tenants <hash-key|new-key|check> …       API key hashes and tenants files (see fabriek tenants --help)
  fabriek top [--metrics-url URL] [--once]         live view of a gateway: models, rates, latency, tenants
                                                   (see fabriek top --help)
  fabriek --version

${SERVE_USAGE}`;

/** What the ready line says of one gateway (a cluster child sends it to the primary). */
function summaryOf(gateway: RunningGateway): ReadySummary {
  const list = gateway.models.list();
  const budget = gateway.models.onDemand?.budget;
  return {
    grpcPort: gateway.grpcPort,
    httpPort: gateway.httpPort,
    metricsPort: gateway.metricsPort,
    ready: list.filter((v) => v.state === 'READY').map((v) => `${v.name}/${v.version}`),
    onDemand: list.filter((v) => v.reason === NOT_LOADED_ON_DEMAND).map((v) => `${v.name}/${v.version}`),
    failed: list.filter((v) => v.state !== 'READY' && v.reason !== NOT_LOADED_ON_DEMAND).map((v) => v.name),
    budget: budget ? formatAmount(budget, budget.limit) : undefined,
    tenants: gateway.tenants,
  };
}

function writeReadyLine(options: ServeOptions, s: ReadySummary, processes: number): void {
  process.stdout.write(
    `fabriek ${FABRIEK_VERSION} ready: gRPC on ${options.grpcAddress}:${s.grpcPort}${describeTls(options.grpcTls)}; ` +
      (options.allowHttp ? `HTTP on ${options.httpAddress}:${s.httpPort}${describeTls(options.httpTls)}; ` : '') +
      (options.allowMetrics ? `metrics on ${options.httpAddress}:${s.metricsPort}${describeTls(options.httpTls)}; ` : '') +
      `${s.ready.length} model versions ready (${s.ready.join(', ')})` +
      (s.budget ? `; on demand within ${s.budget} per worker: ${s.onDemand.length} model versions (${s.onDemand.join(', ')})` : '') +
      (s.failed.length > 0 ? `; unavailable: ${s.failed.join(', ')}` : '') +
      (processes > 1 ? `; ${processes} gateway processes` : '') +
      (options.localWorkers === 'in-process' ? '; workers in the gateway process' : '') +
      (s.tenants === 'open' ? '; open: no --tenants, no API keys' : `; ${s.tenants} tenants, API keys required`) +
      '\n',
  );
}

async function serve(argv: readonly string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${SERVE_USAGE}\n`);
    return;
  }
  const options = parseServeOptions(argv);
  // Before the first request: see v8-heap.ts.
  avoidPretenuring();
  const log = createLogger(options.logLevel, 'fabriek');
  if (isGatewayChild()) return serveChild(options, log);
  const processes = resolveGatewayProcesses(options.gatewayProcesses, usableCores());
  if (processes > 1) return servePrimary(options, processes, log);
  const gateway = await startGateway(options, log);
  writeReadyLine(options, summaryOf(gateway), 1);
  exitOnSignal(log, () => gateway.shutdown(), 'kills');
}

/**
 * SIGTERM or SIGINT: shut down, then exit 0, or 1 when the shutdown failed.
 * A second signal `kills` (Node's default: Ctrl-C twice ends a single
 * gateway at once) or is `ignored` (several gateway processes: SIGTERM comes
 * to the process group and again from the primary).
 */
function exitOnSignal(log: Logger, shutdown: (signal: string) => Promise<void>, second: 'kills' | 'ignored' = 'ignored'): void {
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'signal received');
    shutdown(signal).then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  const listen = second === 'kills' ? process.once.bind(process) : process.on.bind(process);
  listen('SIGTERM', () => stop('SIGTERM'));
  listen('SIGINT', () => stop('SIGINT'));
}

/** The primary of several gateway processes: workers and children; prints the ready line once every child is ready. */
async function servePrimary(options: ServeOptions, processes: number, log: Logger): Promise<void> {
  const { startPrimary } = await import('./cluster/primary.js');
  const primary = await startPrimary(options, processes, log);
  writeReadyLine(options, primary.summary, processes);
  exitOnSignal(log, (signal) => primary.shutdown(signal));
}

/** One of several gateway processes: a gateway on the primary's workers; its ready summary goes to the primary. */
async function serveChild(options: ServeOptions, log: Logger): Promise<void> {
  const { GatewayChild } = await import('./cluster/child.js');
  const child = new GatewayChild();
  const gateway = await startGateway(options, log, child);
  child.ready(summaryOf(gateway));
  exitOnSignal(log, () => gateway.shutdown());
}

/** The benchmarks live in their own entry (dist/bench/cli.js); run it as a child with our terminal. */
function bench(argv: readonly string[]): Promise<void> {
  const entry = fileURLToPath(new URL('../bench/cli.js', import.meta.url));
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [entry, ...argv], { stdio: 'inherit' });
    child.once('exit', (code, signal) => {
      process.exitCode = code ?? (signal ? 1 : 0);
      resolve();
    });
  });
}

async function main(argv: readonly string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === '--version' || command === '-v') {
    process.stdout.write(`${FABRIEK_VERSION}\n`);
    return;
  }
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  if (command === 'serve') return serve(rest);
  if (command === 'bench') return bench(rest);
  if (command === 'tenants') {
    const { runTenantsCli } = await import('./tenants/tenants-cli.js');
    process.exitCode = await runTenantsCli(rest, (s) => process.stdout.write(s), (s) => process.stderr.write(s));
    return;
  }
  if (command === 'top') {
    const { parseTopOptions, runTop, TOP_USAGE } = await import('./top/top-cli.js');
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(TOP_USAGE);
      return;
    }
    const options = parseTopOptions(rest, (message) => new UsageError(message));
    const stop = new AbortController();
    process.once('SIGINT', () => stop.abort());
    process.once('SIGTERM', () => stop.abort());
    process.exitCode = await runTop(options, (s) => process.stdout.write(s), process.stdout.isTTY === true, stop.signal);
    return;
  }
  if (command === 'worker') {
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(`${WORKER_USAGE}\n`);
      return;
    }
    // Loaded only here: a gateway does not need the worker's modules.
    const { runWorker } = await import('../worker/main.js');
    runWorker(rest);
    return;
  }
  throw new UsageError(`unknown command '${command}'`);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError) {
    process.stderr.write(`fabriek: ${error.message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (error instanceof StartupError) {
    process.stderr.write(`fabriek: ${error.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`fabriek: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
