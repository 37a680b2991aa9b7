// `fabriek top`: a live terminal view of a running gateway, from its
// Prometheus endpoint. On a terminal it redraws in place; otherwise (a pipe,
// a log file) it prints one plain view per interval. --once prints one view
// over one interval and exits, for scripts.
import { parseArgs } from 'node:util';
import { parseExposition } from './exposition.js';
import { type Scrape, topView } from './top-view.js';

export const TOP_USAGE = `Usage: fabriek top [--metrics-url URL] [--interval-secs N] [--once]

  --metrics-url URL   a gateway's Prometheus endpoint (default http://127.0.0.1:8002/metrics;
                      host:port is enough)
  --interval-secs N   seconds between refreshes, and the window rates are taken over (default 2)
  --once              print one view over one interval and exit (exit 1 if the gateway cannot be read)
`;

export interface TopOptions {
  readonly url: string;
  readonly intervalMs: number;
  readonly once: boolean;
}

export function parseTopOptions(argv: readonly string[], usage: (message: string) => Error): TopOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      options: { 'metrics-url': { type: 'string' }, 'interval-secs': { type: 'string' }, once: { type: 'boolean' } },
    }));
  } catch (error) {
    throw usage((error as Error).message);
  }
  const raw = values['metrics-url'] ?? 'http://127.0.0.1:8002/metrics';
  const withScheme = /^https?:\/\//.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw usage(`--metrics-url: expected a URL such as http://host:8002/metrics, got '${raw}'`);
  }
  if (url.pathname === '/') url.pathname = '/metrics';
  const secs = values['interval-secs'] === undefined ? 2 : Number(values['interval-secs']);
  if (!Number.isFinite(secs) || secs < 0.2 || secs > 3600) throw usage(`--interval-secs: expected a number from 0.2 to 3600, got '${values['interval-secs']}'`);
  return { url: url.toString(), intervalMs: Math.round(secs * 1000), once: values.once ?? false };
}

async function scrape(url: string): Promise<Scrape> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  if (!response.ok) throw new Error(`${url} answered HTTP ${response.status}`);
  return { at: Date.now(), samples: parseExposition(await response.text()) };
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });

/** Runs until `signal` aborts (or once); resolves with the exit code. */
export async function runTop(o: TopOptions, write: (text: string) => void, tty: boolean, signal: AbortSignal): Promise<number> {
  let before: Scrape | undefined;
  while (!signal.aborted) {
    let now: Scrape;
    try {
      now = await scrape(o.url);
    } catch (error) {
      const message = `fabriek top: cannot read ${o.url}: ${(error as Error).message}\n`;
      if (o.once) {
        write(message);
        return 1;
      }
      write(tty ? `\x1b[H\x1b[2J${message}` : message);
      before = undefined;
      await sleep(o.intervalMs, signal);
      continue;
    }
    if (before !== undefined || !o.once) {
      const view = topView(before, now, o.url);
      write(tty ? `\x1b[H\x1b[2J${view}` : `${view}\n`);
      if (o.once) return 0;
    }
    before = now;
    await sleep(o.intervalMs, signal);
  }
  return 0;
}
