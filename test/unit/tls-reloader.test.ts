import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type ListenerTls, type ListenerTlsFiles, tlsPaths } from '../../core/tls.js';
import { type FileStamp, TlsReloader } from '../../core/tls-reloader.js';

const files: ListenerTlsFiles = {
  cert: { flag: '--grpc-server-cert', path: '/certs/tls.crt' },
  key: { flag: '--grpc-server-key', path: '/certs/tls.key' },
  rootCert: undefined,
  mutual: false,
};

const certificate = (serial: string): ListenerTls => ({
  cert: Buffer.from(`cert ${serial}`),
  key: Buffer.from(`key ${serial}`),
  ca: undefined,
  mutual: false,
  notAfter: new Date('2027-01-01T00:00:00Z'),
  serial,
  subject: 'CN=fabriek',
});

/** Files on a fake disk: their stamps, and what loading them gives (or the error it throws). */
class FakeDisk {
  stamps = new Map<string, FileStamp>([
    ['/certs/tls.crt', 'crt-1'],
    ['/certs/tls.key', 'key-1'],
  ]);
  next: ListenerTls | Error = certificate('01');
  loads = 0;
  stamp = async (path: string): Promise<FileStamp> => this.stamps.get(path) ?? 'missing';
  load = async (): Promise<ListenerTls> => {
    this.loads += 1;
    if (this.next instanceof Error) throw this.next;
    return this.next;
  };
}

describe('TlsReloader', () => {
  let disk: FakeDisk;
  let applied: string[];
  let lines: { msg: string; reason?: string; serial?: string; why?: string }[];
  let reloader: TlsReloader<ListenerTls>;

  beforeEach(async () => {
    disk = new FakeDisk();
    applied = [];
    lines = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string }) });
    reloader = new TlsReloader({ listener: 'grpc', paths: tlsPaths(files), loaded: certificate('01'), apply: (tls) => applied.push(tls.serial), log, stamp: disk.stamp, load: disk.load });
    await reloader.baseline();
  });
  afterEach(() => {
    reloader.stop();
    vi.useRealTimers();
  });

  it('reads nothing while the files are as they were at startup', async () => {
    expect(await reloader.check()).toBe(false);
    expect(disk.loads).toBe(0);
  });

  it('puts changed files in force, and logs the new certificate', async () => {
    disk.stamps.set('/certs/tls.crt', 'crt-2');
    disk.stamps.set('/certs/tls.key', 'key-2');
    disk.next = certificate('02');
    expect(await reloader.check()).toBe(true);
    expect(applied).toEqual(['02']);
    expect(reloader.current.serial).toBe('02');
    expect([reloader.reloads, reloader.failures]).toEqual([1, 0]);
    expect(lines.at(-1)).toMatchObject({ msg: 'TLS certificate reloaded', serial: '02' });
    // Read once: unchanged since.
    expect(await reloader.check()).toBe(false);
    expect(disk.loads).toBe(1);
  });

  it('keeps the certificate in force when the new files fail the checks, and tries again only when they change again', async () => {
    // A cert replaced before its key: the key no longer belongs to it.
    disk.stamps.set('/certs/tls.crt', 'crt-2');
    disk.next = new Error("--grpc-server-key: the key in '/certs/tls.key' does not belong to the certificate in '/certs/tls.crt' (--grpc-server-cert)");
    expect(await reloader.check()).toBe(false);
    expect(applied).toEqual([]);
    expect(reloader.current.serial).toBe('01');
    expect(reloader.failures).toBe(1);
    expect(lines.at(-1)).toMatchObject({ msg: 'TLS files not reloaded: the previous certificate stays in force', serial: '01' });
    expect(lines.at(-1)?.reason).toMatch(/does not belong to the certificate/);
    expect(await reloader.check()).toBe(false);
    expect(disk.loads).toBe(1);
    // Then the key comes.
    disk.stamps.set('/certs/tls.key', 'key-2');
    disk.next = certificate('02');
    expect(await reloader.check()).toBe(true);
    expect(applied).toEqual(['02']);
  });

  it('counts a certificate its listener refuses as a failure, the previous one still current', async () => {
    const log = pino({ level: 'silent' });
    const refusing = new TlsReloader({ listener: 'http', paths: tlsPaths(files), loaded: certificate('01'), apply: () => { throw new Error('setSecureContext failed'); }, log, stamp: disk.stamp, load: disk.load });
    await refusing.baseline();
    disk.stamps.set('/certs/tls.crt', 'crt-2');
    disk.next = certificate('02');
    expect(await refusing.check()).toBe(false);
    expect([refusing.current.serial, refusing.failures]).toEqual(['01', 1]);
  });

  it('SIGHUP reads the files whatever their stamps', async () => {
    disk.next = certificate('03');
    expect(await reloader.reload()).toBe(true);
    expect(applied).toEqual(['03']);
    expect(lines.at(-1)).toMatchObject({ msg: 'TLS certificate reloaded', why: 'SIGHUP' });
  });

  it('checks every interval once started, and not after stop; 0 never', async () => {
    vi.useFakeTimers();
    reloader.start(0);
    expect(vi.getTimerCount()).toBe(0);
    reloader.start(10_000);
    disk.stamps.set('/certs/tls.crt', 'crt-2');
    disk.next = certificate('02');
    await vi.advanceTimersByTimeAsync(10_000);
    expect(applied).toEqual(['02']);
    reloader.stop();
    disk.stamps.set('/certs/tls.crt', 'crt-3');
    disk.next = certificate('03');
    await vi.advanceTimersByTimeAsync(30_000);
    expect(applied).toEqual(['02']);
  });

  it('one read at a time: a check while a reload runs waits for it, and then sees the files unchanged', async () => {
    disk.stamps.set('/certs/tls.crt', 'crt-2');
    disk.next = certificate('02');
    const [a, b] = await Promise.all([reloader.reload(), reloader.check()]);
    expect([a, b]).toEqual([true, false]);
    expect(disk.loads).toBe(1);
  });
});
