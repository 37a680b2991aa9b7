// --model-control-mode poll: every N seconds, a fingerprint of each model
// directory (names, sizes and modification times of everything in it) is
// compared with the last one. New and changed models are loaded again through
// the same path as RepositoryModelLoad (new versions load while the old ones
// serve, then swap; requests in flight finish on the old ones), and removed
// ones are unloaded. Only stat calls on an unchanged repository.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type Logger } from 'pino';

export type Fingerprints = ReadonlyMap<string, string>;

export interface RepositoryChanges {
  readonly added: readonly string[];
  readonly changed: readonly string[];
  readonly removed: readonly string[];
}

/** What differs between two fingerprints of the repository. */
export function repositoryChanges(before: Fingerprints, after: Fingerprints): RepositoryChanges {
  const added: string[] = [];
  const changed: string[] = [];
  const removed: string[] = [];
  for (const [name, print] of after) {
    const old = before.get(name);
    if (old === undefined) added.push(name);
    else if (old !== print) changed.push(name);
  }
  for (const name of before.keys()) if (!after.has(name)) removed.push(name);
  return { added: added.sort(), changed: changed.sort(), removed: removed.sort() };
}

/** Model name → fingerprint of its directory, for every model directory (as scanRepository sees them). */
export async function fingerprintRepository(directory: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const names = (await readdir(directory, { withFileTypes: true })).filter((d) => d.isDirectory() && !d.name.startsWith('.'));
  await Promise.all(
    names.map(async (d) => {
      const print = await fingerprintTree(join(directory, d.name), '').catch(() => undefined);
      // A directory that vanished mid-scan is removed; the next poll sees it settled.
      if (print !== undefined) out.set(d.name, print);
    }),
  );
  return out;
}

async function fingerprintTree(path: string, prefix: string): Promise<string> {
  const entries = (await readdir(path, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
  const parts: string[] = [];
  for (const e of entries) {
    const full = join(path, e.name);
    if (e.isDirectory()) parts.push(`${prefix}${e.name}/{${await fingerprintTree(full, '')}}`);
    else {
      const s = await stat(full);
      parts.push(`${prefix}${e.name}:${s.size}:${s.mtimeMs}`);
    }
  }
  return parts.join(';');
}

/** What the poller needs of the model manager. */
export interface PolledModels {
  load(name: string): Promise<void>;
  unload(name: string): Promise<void>;
}

export interface RepositoryPollerOptions {
  readonly directory: string;
  readonly intervalMs: number;
  readonly models: PolledModels;
  readonly log: Logger;
}

export class RepositoryPoller {
  readonly #o: RepositoryPollerOptions;
  #last: Fingerprints = new Map();
  #timer: NodeJS.Timeout | undefined;
  #pass: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(options: RepositoryPollerOptions) {
    this.#o = options;
  }

  /** The state the server loaded from; take it before the first scan so no change is missed. */
  async baseline(): Promise<void> {
    this.#last = await fingerprintRepository(this.#o.directory);
  }

  start(): void {
    this.#schedule();
  }

  /** Stops polling; resolves when a pass in progress has finished. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#pass;
  }

  /** One pass now (also what the timer runs); changes are applied one model at a time. */
  poll(): Promise<void> {
    this.#pass = this.#pass.then(() => this.#apply());
    return this.#pass;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.poll().then(() => this.#schedule()), this.#o.intervalMs);
    this.#timer.unref();
  }

  async #apply(): Promise<void> {
    const { log, models } = this.#o;
    let now: Map<string, string>;
    try {
      now = await fingerprintRepository(this.#o.directory);
    } catch (error) {
      log.error({ err: error, repository: this.#o.directory }, 'repository poll failed; the models loaded stay as they are');
      return;
    }
    const { added, changed, removed } = repositoryChanges(this.#last, now);
    this.#last = now;
    if (added.length + changed.length + removed.length === 0) return;
    log.info({ added, changed, removed }, 'repository changed');
    for (const name of [...added, ...changed]) {
      if (this.#stopped) return;
      // A failed load leaves the model UNAVAILABLE with its reason (RepositoryIndex shows it).
      await models.load(name).catch((error: unknown) => log.error({ model: name, reason: (error as Error).message }, 'model not loaded'));
    }
    for (const name of removed) {
      if (this.#stopped) return;
      await models.unload(name).catch((error: unknown) => log.error({ model: name, reason: (error as Error).message }, 'model not unloaded'));
    }
  }
}
