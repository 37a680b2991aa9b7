import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type Writable } from 'node:stream';

/** One request as the audit log records it: who, what, how it ended, how much; never tensor data. */
export interface AuditRecord {
  /** Absent when the caller could not be identified. */
  readonly tenant: string | undefined;
  readonly protocol: 'grpc' | 'http';
  /** infer, metadata, config, ready, statistics, index, load, unload. */
  readonly op: string;
  readonly model: string;
  /** The version that served it, else the one asked for ("" = latest). */
  readonly version: string;
  /** gRPC status name (OK, UNAUTHENTICATED, RESOURCE_EXHAUSTED, …). */
  readonly status: string;
  /** Tensor bytes received and sent (0 for calls without tensors). */
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Rows along the batch dimension (infer only). */
  readonly items: number;
  /** This request's share of its batch's execution time. */
  readonly computeMs: number;
  /** Its wait in the model's queue (0 when it never queued). */
  readonly queueMs: number;
  readonly ms: number;
  /** The client's request id, if it gave one. */
  readonly id: string;
}

const MAX_TEXT = 256;
const clip = (s: string): string => (s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT)}…` : s);
const round3 = (x: number): number => Math.round(x * 1000) / 1000;

/** The JSON line of one record (stable field order, clipped client-given strings). */
export function auditLine(r: AuditRecord, now: Date): string {
  return JSON.stringify({
    time: now.toISOString(),
    tenant: r.tenant ?? null,
    protocol: r.protocol,
    op: r.op,
    model: clip(r.model),
    version: clip(r.version),
    status: r.status,
    bytes_in: r.bytesIn,
    bytes_out: r.bytesOut,
    items: r.items,
    compute_ms: round3(r.computeMs),
    queue_ms: round3(r.queueMs),
    ms: round3(r.ms),
    ...(r.id !== '' ? { id: clip(r.id) } : {}),
  });
}

/**
 * The audit log (--audit-log FILE, or - for stdout): one JSON line per
 * request, appended through a buffered stream so a request never waits on
 * the disk (writes that queue up go out together).
 */
export class AuditLog {
  #out: Writable;
  /** The file; undefined for stdout. */
  readonly #path: string | undefined;
  readonly #onError: (error: Error) => void;
  /** Error kinds already reported: a failing disk is said once per kind, not per line. */
  readonly #seen = new Set<string>();
  #closed = false;

  private constructor(out: Writable, path: string | undefined, onError: (error: Error) => void) {
    this.#path = path;
    this.#onError = onError;
    this.#out = this.#watch(out);
  }

  /** A failing disk must not take the server down: say so (once per error kind) and go on. */
  #watch(out: Writable): Writable {
    out.on('error', (error: NodeJS.ErrnoException) => {
      const kind = error.code ?? error.message;
      if (this.#seen.has(kind)) return;
      this.#seen.add(kind);
      this.#onError(error);
    });
    return out;
  }

  /**
   * Opens (appends to) the file, creating its folder; rejects when it cannot,
   * so a bad path fails at start. `onError` hears of later write errors.
   */
  static async open(target: string, onError: (error: Error) => void = () => undefined): Promise<AuditLog> {
    if (target === '-') return new AuditLog(process.stdout, undefined, onError);
    return new AuditLog(await appendTo(target), target, onError);
  }

  /**
   * Opens the file again by its name (SIGHUP, after logrotate moved it away),
   * and closes the old one once what was written to it is out: lines go to
   * the old file until the new one is open, none is lost. Rejects, keeping
   * the old file, when the new one cannot be opened. Nothing to do for stdout.
   */
  async reopen(): Promise<void> {
    if (this.#path === undefined || this.#closed) return;
    const next = await appendTo(this.#path);
    if (this.#closed) {
      next.end();
      return;
    }
    const old = this.#out;
    this.#out = this.#watch(next);
    this.#seen.clear();
    await new Promise<void>((resolve) => old.end(() => resolve()));
  }

  write(record: AuditRecord): void {
    // A request that ends after shutdown closed the log (forced exit) is not written.
    if (this.#closed) return;
    this.#out.write(`${auditLine(record, new Date())}\n`);
  }

  /** Writes what is buffered; closes the file (stdout stays open). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#path === undefined) return;
    const out = this.#out;
    await new Promise<void>((resolve) => out.end(() => resolve()));
  }
}

/** An append stream to `path`, open (its folder made); rejects when it cannot be opened. */
async function appendTo(path: string): Promise<Writable> {
  await mkdir(dirname(path), { recursive: true });
  const out = createWriteStream(path, { flags: 'a' });
  await new Promise<void>((resolve, reject) => {
    out.once('open', () => resolve());
    out.once('error', reject);
  });
  return out;
}
