import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AuditLog, type AuditRecord, auditLine } from '../../../gateway/tenants/audit-log.js';

const record: AuditRecord = {
  tenant: 'city-app',
  protocol: 'grpc',
  op: 'infer',
  model: 'mlp',
  version: '1',
  status: 'OK',
  bytesIn: 3136,
  bytesOut: 40,
  items: 1,
  computeMs: 0.51234,
  queueMs: 0.12345,
  ms: 2.34567,
  id: 'req-7',
};

describe('audit log', () => {
  it('writes one JSON line per record, in a fixed field order, with times rounded to µs', () => {
    expect(auditLine(record, new Date('2026-01-02T03:04:05.678Z'))).toBe(
      '{"time":"2026-01-02T03:04:05.678Z","tenant":"city-app","protocol":"grpc","op":"infer","model":"mlp","version":"1",' +
        '"status":"OK","bytes_in":3136,"bytes_out":40,"items":1,"compute_ms":0.512,"queue_ms":0.123,"ms":2.346,"id":"req-7"}',
    );
  });

  it('records an unidentified caller as null and clips what a client made up', () => {
    const line = JSON.parse(auditLine({ ...record, tenant: undefined, model: 'm'.repeat(10_000), id: '' }, new Date(0))) as Record<string, unknown>;
    expect(line.tenant).toBeNull();
    expect((line.model as string).length).toBe(257);
    expect('id' in line).toBe(false);
  });

  it('appends to a file (creating its folder) and flushes on close', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fabriek-audit-'));
    try {
      const file = join(dir, 'nested', 'audit.log');
      const log = await AuditLog.open(file);
      log.write(record);
      log.write({ ...record, status: 'RESOURCE_EXHAUSTED' });
      await log.close();
      log.write(record); // after close: dropped, not an error
      const again = await AuditLog.open(file);
      again.write({ ...record, tenant: 'lab' });
      await again.close();
      const lines = (await readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { status: string; tenant: string });
      expect(lines.map((l) => [l.tenant, l.status])).toEqual([
        ['city-app', 'OK'],
        ['city-app', 'RESOURCE_EXHAUSTED'],
        ['lab', 'OK'],
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reopen (SIGHUP after logrotate): lines written before go to the moved file, lines after to a new one by the name', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fabriek-audit-'));
    try {
      const file = join(dir, 'audit.log');
      const log = await AuditLog.open(file);
      log.write({ ...record, id: 'before' });
      await rename(file, `${file}.1`);
      // Written after the move, before the reopen: still the old file's.
      log.write({ ...record, id: 'moved' });
      await log.reopen();
      log.write({ ...record, id: 'after' });
      await log.close();
      const ids = async (path: string): Promise<string[]> =>
        (await readFile(path, 'utf8')).trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id);
      expect(await ids(`${file}.1`)).toEqual(['before', 'moved']);
      expect(await ids(file)).toEqual(['after']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a reopen that cannot open the file rejects, and lines go on to the file open before', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fabriek-audit-'));
    try {
      const file = join(dir, 'logs', 'audit.log');
      const log = await AuditLog.open(file);
      // Its folder moved away and a plain file in its place: the name cannot be opened (root or not).
      await rename(join(dir, 'logs'), join(dir, 'logs.1'));
      await writeFile(join(dir, 'logs'), '');
      await expect(log.reopen()).rejects.toThrow(/EEXIST|ENOTDIR/);
      log.write({ ...record, id: 'kept' });
      await log.close();
      expect((await readFile(join(dir, 'logs.1', 'audit.log'), 'utf8')).trim()).toMatch(/"id":"kept"/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reopen does nothing for stdout, or once closed', async () => {
    const out = await AuditLog.open('-');
    await expect(out.reopen()).resolves.toBeUndefined();
    const dir = await mkdtemp(join(tmpdir(), 'fabriek-audit-'));
    try {
      const log = await AuditLog.open(join(dir, 'audit.log'));
      await log.close();
      await rm(join(dir, 'audit.log'));
      await log.reopen();
      await expect(readFile(join(dir, 'audit.log'))).rejects.toThrow(/ENOENT/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('fails at start for a file it cannot open', async () => {
    await expect(AuditLog.open('/etc/hostname/audit.log')).rejects.toThrow(/EEXIST|ENOTDIR/);
    await expect(AuditLog.open('/etc/hostname/x/audit.log')).rejects.toThrow(/ENOTDIR/);
  });
});
