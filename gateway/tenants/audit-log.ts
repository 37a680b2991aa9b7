import { once } from 'node:events';
import { pino } from 'pino';

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
    ms: round3(r.ms),
    ...(r.id !== '' ? { id: clip(r.id) } : {}),
  });
}

/**
 * The audit log (--audit-log FILE, or - for stdout): one JSON line per
 * request, appended through an asynchronous buffered writer so a request
 * never waits on the disk.
 */
export class AuditLog {
  readonly #out: ReturnType<typeof pino.destination>;
  readonly #toStdout: boolean;

  constructor(target: string) {
    this.#toStdout = target === '-';
    this.#out = pino.destination(this.#toStdout ? { fd: 1, sync: false } : { dest: target, sync: false, mkdir: true, append: true });
  }

  /** Resolves once the file is open (so a bad path fails at start, not at the first request). */
  async ready(): Promise<void> {
    const out = this.#out as unknown as NodeJS.EventEmitter & { fd: number };
    if (out.fd >= 0) return;
    await Promise.race([
      once(out, 'ready'),
      once(out, 'error').then(([error]) => {
        throw error;
      }),
    ]);
  }

  write(record: AuditRecord): void {
    this.#out.write(`${auditLine(record, new Date())}\n`);
  }

  /** Writes what is buffered; closes the file (stdout stays open). */
  async close(): Promise<void> {
    const out = this.#out;
    if (this.#toStdout) {
      out.flushSync();
      return;
    }
    const closed = once(out as unknown as NodeJS.EventEmitter, 'close');
    out.end();
    await closed;
  }
}
