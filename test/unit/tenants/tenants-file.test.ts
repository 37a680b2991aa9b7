import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../../../gateway/tenants/key-hash.js';
import { loadTenantsFile, parseTenants, TenantsFileError } from '../../../gateway/tenants/tenants-file.js';
import { tenantPriority } from '../../../gateway/tenants/tenant.js';

const A = hashKey('key-a');
const B = hashKey('key-b');

const fails = (raw: unknown): string => {
  try {
    parseTenants(raw, 'tenants.yaml');
  } catch (error) {
    expect(error).toBeInstanceOf(TenantsFileError);
    return (error as Error).message;
  }
  throw new Error('expected the tenants to be refused');
};

describe('tenants file', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fabriek-tenants-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads YAML: keys, model globs, quotas with their default bursts, weights and queue shares', async () => {
    const file = join(dir, 'tenants.yaml');
    await writeFile(
      file,
      [
        'tenants:',
        '  city-app:',
        `    keys: [ "${A}" ]`,
        '    models: [ "mlp*", add_sub ]',
        '    weight: 3',
        '    default_priority: 2',
        '    highest_priority: 1',
        '    quotas:',
        '      requests_per_second: 2.5',
        '      concurrent_requests: 4',
        '      batch_items_per_second: 100',
        '      batch_item_burst: 400',
        '  lab:',
        `    keys: [ "${B}" ]`,
        '    models: [ "*" ]',
        '    admin: true',
      ].join('\n'),
    );
    const config = await loadTenantsFile(file);
    const [city, lab] = config.tenants;
    expect(city?.name).toBe('city-app');
    expect(city?.models.allows('mlp_large')).toBe(true);
    expect(city?.models.allows('add_sub')).toBe(true);
    expect(city?.models.allows('simple_cnn')).toBe(false);
    expect(city?.quotas).toEqual({ requestsPerSecond: 2.5, requestBurst: 3, concurrentRequests: 4, batchItemsPerSecond: 100, batchItemBurst: 400 });
    expect(city?.weight).toBe(3);
    expect(city?.queueShare).toBe(0.75);
    expect(city?.admin).toBe(false);
    expect(lab?.quotas.requestsPerSecond).toBeUndefined();
    expect(lab?.weight).toBe(1);
    expect(lab?.queueShare).toBe(0.25);
    expect(lab?.admin).toBe(true);
    expect(config.keyHashes).toEqual(new Map([[A, 'city-app'], [B, 'lab']]));
  });

  it('reads JSON by its extension', async () => {
    const file = join(dir, 'tenants.json');
    await writeFile(file, JSON.stringify({ tenants: { a: { keys: [A], models: ['*'] } } }));
    expect((await loadTenantsFile(file)).tenants.map((t) => t.name)).toEqual(['a']);
  });

  it('names the file and the field, says what was expected and what came', () => {
    const base = { keys: [A], models: ['*'] };
    expect(fails({ tenants: { a: { ...base, quotas: { requests_per_second: -1 } } } })).toBe(
      'tenants.yaml: tenants.a.quotas.requests_per_second: expected a number > 0, got -1',
    );
    expect(fails({ tenants: { a: { ...base, weight: 'heavy' } } })).toBe('tenants.yaml: tenants.a.weight: expected a number, got "heavy"');
    expect(fails({ tenants: { a: { ...base, quotas: { concurrent_requests: 1.5 } } } })).toBe(
      'tenants.yaml: tenants.a.quotas.concurrent_requests: expected an integer, got 1.5',
    );
    expect(fails({ tenants: { a: { ...base, qoutas: {} } } })).toBe("tenants.yaml: tenants.a: unknown field 'qoutas'");
    expect(fails({ tenants: { a: { ...base, models: [] } } })).toBe(
      'tenants.yaml: tenants.a.models: expected at least one model pattern ("*" for every model), got []',
    );
    expect(fails({ tenants: { a: { models: ['*'] } } })).toBe('tenants.yaml: tenants.a.keys: expected a list of key hashes');
    expect(fails({ tenantz: {} })).toMatch(/^tenants\.yaml: tenants: expected a map of tenant name to tenant, got nothing; \(top level\): unknown field 'tenantz'$/);
    expect(fails({ tenants: {} })).toBe('tenants.yaml: tenants: expected at least one tenant');
  });

  it('never echoes what is under keys: it may be a key in clear by mistake', () => {
    const message = fails({ tenants: { a: { keys: ['my-secret-key'], models: ['*'] } } });
    expect(message).toBe('tenants.yaml: tenants.a.keys[0]: expected "sha256:" and 64 lowercase hex digits');
    expect(message).not.toContain('my-secret-key');
  });

  it('refuses a key hash given to two tenants, bad tenant names, and inconsistent priorities and bursts', () => {
    expect(fails({ tenants: { a: { keys: [A], models: ['*'] }, b: { keys: [B, A], models: ['*'] } } })).toBe(
      "tenants.yaml: tenants.b.keys[1]: the same key hash is already given to tenant 'a'",
    );
    expect(fails({ tenants: { 'bad name': { keys: [A], models: ['*'] } } })).toMatch(/^tenants\.yaml: tenants\.bad name: a tenant name has 1 to 64/);
    expect(fails({ tenants: { a: { keys: [A], models: ['*'], default_priority: 1, highest_priority: 2 } } })).toBe(
      'tenants.yaml: tenants.a.default_priority: expected a level at or below highest_priority 2 (1 is the highest), got 1',
    );
    expect(fails({ tenants: { a: { keys: [A], models: ['*'], quotas: { request_burst: 5 } } } })).toBe(
      'tenants.yaml: tenants.a.quotas.request_burst: only meaningful with requests_per_second',
    );
  });

  it('reports YAML syntax errors and duplicate keys with the line, and unreadable files', async () => {
    const broken = join(dir, 'broken.yaml');
    await writeFile(broken, 'tenants:\n  a:\n    keys: [ "x"\n');
    await expect(loadTenantsFile(broken)).rejects.toThrow(/^.*broken\.yaml:\d+:\d+: not valid YAML: /);
    const dup = join(dir, 'dup.yaml');
    await writeFile(dup, `tenants:\n  a:\n    keys: ["${A}"]\n    models: ["*"]\n  a:\n    keys: ["${B}"]\n    models: ["*"]\n`);
    await expect(loadTenantsFile(dup)).rejects.toThrow(/dup\.yaml:5:\d+: not valid YAML: Map keys must be unique/);
    await expect(loadTenantsFile(join(dir, 'missing.yaml'))).rejects.toThrow(/missing\.yaml: cannot read the tenants file: ENOENT/);
    const json = join(dir, 'bad.json');
    await writeFile(json, '{"tenants":');
    await expect(loadTenantsFile(json)).rejects.toThrow(/bad\.json: not valid JSON: /);
  });

  it("a request's priority: its own, else the tenant's default, never above the tenant's highest", () => {
    const t = parseTenants({ tenants: { a: { keys: [A], models: ['*'], default_priority: 3, highest_priority: 2 } } }, 'f').tenants[0];
    const open = parseTenants({ tenants: { a: { keys: [A], models: ['*'] } } }, 'f').tenants[0];
    if (!t || !open) throw new Error('no tenant');
    expect(tenantPriority(t, undefined)).toBe(3);
    expect(tenantPriority(t, 1)).toBe(2);
    expect(tenantPriority(t, 4)).toBe(4);
    expect(tenantPriority(open, undefined)).toBeUndefined();
    expect(tenantPriority(open, 1)).toBe(1);
  });
});
