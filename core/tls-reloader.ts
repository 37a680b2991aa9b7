// Certificates rotate without a restart: each public TLS listener (gRPC, and
// HTTP with /metrics), and each end of the gateway↔worker link, reads its
// files again when one of them changes (a stat every --tls-poll-secs:
// cert-manager, a Kubernetes secret mount or certbot replace them in place)
// and on SIGHUP. The new files pass the startup checks (PEM, the key belongs
// to the certificate, OpenSSL takes them) before any handshake sees them;
// files that do not keep the previous certificate in force, with one log
// line naming the flag and the file, until they change again. Handshakes
// from then on get the new certificate; connections already open keep
// theirs, so nothing in flight is cut.
import { stat } from 'node:fs/promises';
import { type Logger } from 'pino';
import { type LoadedCertificate } from './tls.js';

/** What a file looked like when last read: a change in any of these is a new file (a mount's symlink swap changes the inode). */
export type FileStamp = string;

export async function stampOf(path: string): Promise<FileStamp> {
  try {
    const s = await stat(path);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch (error) {
    return `missing: ${(error as NodeJS.ErrnoException).code ?? String(error)}`;
  }
}

export interface TlsReloaderOptions<T extends LoadedCertificate> {
  /** The listener, for the log and the metrics: 'grpc', 'http' or 'worker' (the gateway↔worker link). */
  readonly listener: string;
  /** The files to watch (core/tls.ts tlsPaths). */
  readonly paths: readonly string[];
  /** What was loaded at startup. */
  readonly loaded: T;
  /** Reads and checks the files (the startup checks: loadListenerTls, loadWorkerTls); throws naming the flag and the file. */
  readonly load: () => Promise<T>;
  /** Puts new files in force (setSecureContext, the credentials' reload). */
  readonly apply: (tls: T) => void;
  readonly log: Logger;
  /** Tests: the stamps. */
  readonly stamp?: (path: string) => Promise<FileStamp>;
}

/** A TlsReloader whatever it loads: what SIGHUP, the shutdown and the metrics need. */
export interface CertificateWatch {
  readonly listener: string;
  readonly current: LoadedCertificate;
  readonly reloads: number;
  readonly failures: number;
  baseline(): Promise<void>;
  start(intervalMs: number): void;
  stop(): void;
  reload(): Promise<boolean>;
}

export class TlsReloader<T extends LoadedCertificate> implements CertificateWatch {
  readonly listener: string;
  readonly #paths: readonly string[];
  readonly #apply: (tls: T) => void;
  readonly #log: Logger;
  readonly #stamp: (path: string) => Promise<FileStamp>;
  readonly #load: () => Promise<T>;
  /** The files' stamps when last read, whether or not they were put in force. */
  #stamps: FileStamp[] | undefined;
  #current: T;
  #reloads = 0;
  #failures = 0;
  /** One check or reload at a time. */
  #busy: Promise<unknown> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;

  constructor(options: TlsReloaderOptions<T>) {
    this.listener = options.listener;
    this.#paths = options.paths;
    this.#current = options.loaded;
    this.#apply = options.apply;
    this.#log = options.log;
    this.#stamp = options.stamp ?? stampOf;
    this.#load = options.load;
  }

  /** The certificate in force. */
  get current(): T {
    return this.#current;
  }

  /** Times new files were put in force, and times files that changed could not be. */
  get reloads(): number {
    return this.#reloads;
  }

  get failures(): number {
    return this.#failures;
  }

  /** Takes the files' stamps as they are now: what was loaded at startup. */
  async baseline(): Promise<void> {
    this.#stamps = await Promise.all(this.#paths.map(this.#stamp));
  }

  /** Checks the files every `intervalMs` (0: never; SIGHUP still reloads). */
  start(intervalMs: number): void {
    if (intervalMs <= 0 || this.#timer !== undefined) return;
    this.#timer = setInterval(() => void this.check(), intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Reads the files again if any changed since they were last read; true when new ones were put in force. */
  check(): Promise<boolean> {
    return this.#serial(async () => {
      const stamps = await Promise.all(this.#paths.map(this.#stamp));
      if (this.#stamps !== undefined && stamps.every((s, i) => s === this.#stamps?.[i])) return false;
      return this.#reload(stamps, 'changed');
    });
  }

  /** Reads the files again whatever their stamps (SIGHUP); true when they were put in force. */
  reload(): Promise<boolean> {
    return this.#serial(async () => this.#reload(await Promise.all(this.#paths.map(this.#stamp)), 'SIGHUP'));
  }

  #serial(task: () => Promise<boolean>): Promise<boolean> {
    const run = this.#busy.then(task, task);
    this.#busy = run.catch(() => undefined);
    return run;
  }

  async #reload(stamps: FileStamp[], why: string): Promise<boolean> {
    // Taken before reading: a file replaced while it is read is read again at the next check.
    this.#stamps = stamps;
    let tls: T;
    try {
      tls = await this.#load();
      this.#apply(tls);
    } catch (error) {
      this.#failures += 1;
      const reason = error instanceof Error ? error.message : String(error);
      this.#log.error(
        { listener: this.listener, why, reason, serial: this.#current.serial, notAfter: this.#current.notAfter.toISOString() },
        'TLS files not reloaded: the previous certificate stays in force',
      );
      return false;
    }
    const previous = this.#current;
    this.#current = tls;
    this.#reloads += 1;
    this.#log.info(
      { listener: this.listener, why, subject: tls.subject, serial: tls.serial, notAfter: tls.notAfter.toISOString(), previousSerial: previous.serial },
      'TLS certificate reloaded',
    );
    return true;
  }
}
