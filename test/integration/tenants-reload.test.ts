// `kill -HUP` re-reads the tenants file of a running gateway: a rotated key
// works at once and the old one stops, changed model globs apply, and a
// broken file is refused with the previous one still in force. It also
// reopens the audit log by its name, as logrotate expects.
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { type ModelInferRequest } from '../../proto/gen/inference.js';
import { outcomeOf, zerosRequest } from '../helpers/call-outcome.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { waitFor } from '../helpers/processes.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

const OLD_KEY = 'reload-test-old-key-0123456789';
const NEW_KEY = 'reload-test-new-key-0123456789';

const tenantsYaml = (key: string, models: string): string =>
  ['tenants:', '  app:', `    keys: [ "${hashKey(key)}" ]`, `    models: [ ${models} ]`, ''].join('\n');

const request = (model: string): ModelInferRequest => zerosRequest(model, model === 'add_sub' ? ['INPUT0', 'INPUT1'] : ['INPUT0'], 16);

describe('reloading the tenants file on SIGHUP', () => {
  let dir: string;
  let file: string;
  let gw: GatewayProcess;
  let open: GatewayProcess;

  const codeOf = (model: string, key: string): Promise<string> =>
    outcomeOf(gw.client.modelInfer(request(model), { metadata: { authorization: `Bearer ${key}` } }));

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fabriek-tenants-reload-'));
    file = join(dir, 'tenants.yaml');
    await writeFile(file, tenantsYaml(OLD_KEY, '"identity_fp32"'));
    gw = await startGateway(['--model-repository', TEST_REPOSITORY, '--workers', '1', '--log-level', 'info', '--tenants', file, '--audit-log', join(dir, 'audit.log')]);
    open = await startGateway(['--model-repository', TEST_REPOSITORY, '--workers', '1', '--log-level', 'info']);
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
    expect(await open?.stop()).toBe(0);
    await rm(dir, { recursive: true, force: true });
  });

  it('a rotated key and wider models apply after SIGHUP; the old key is refused', async () => {
    expect(await codeOf('identity_fp32', OLD_KEY)).toBe('OK');
    expect(await codeOf('add_sub', OLD_KEY)).toBe('PERMISSION_DENIED');
    expect(await codeOf('identity_fp32', NEW_KEY)).toBe('UNAUTHENTICATED');

    await writeFile(file, tenantsYaml(NEW_KEY, '"identity_fp32", "add_*"'));
    gw.child.kill('SIGHUP');
    await waitFor(async () => (await codeOf('identity_fp32', NEW_KEY)) === 'OK', 10_000, 'the new key to work');
    expect(await codeOf('add_sub', NEW_KEY)).toBe('OK');
    expect(await codeOf('identity_fp32', OLD_KEY)).toBe('UNAUTHENTICATED');
    expect(gw.stderr()).toMatch(/"msg":"tenants file reloaded"/);
  });

  it('a broken file is not taken: the error names the field, and the previous file stays in force', async () => {
    await writeFile(file, ['tenants:', '  app:', `    keys: [ "${hashKey(OLD_KEY)}" ]`, '    models: [ "*" ]', '    weight: -2', ''].join('\n'));
    gw.child.kill('SIGHUP');
    await waitFor(() => /tenants file not reloaded/.test(gw.stderr()), 10_000, 'the refusal in the log');
    expect(gw.stderr()).toContain('tenants.app.weight: expected a number > 0, got -2');
    expect(gw.stderr()).not.toContain(OLD_KEY);
    expect(await codeOf('identity_fp32', NEW_KEY)).toBe('OK');
    expect(await codeOf('identity_fp32', OLD_KEY)).toBe('UNAUTHENTICATED');
    expect(gw.child.exitCode).toBeNull();
  });

  it('reopens the audit log by its name: lines before go to the file logrotate moved, lines after to a new one', async () => {
    const audit = join(dir, 'audit.log');
    const ids = async (path: string): Promise<string[]> =>
      (await readFile(path, 'utf8').catch(() => '')).split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { id?: string }).id ?? '');
    const call = (id: string): Promise<string> =>
      outcomeOf(gw.client.modelInfer({ ...request('identity_fp32'), id }, { metadata: { authorization: `Bearer ${NEW_KEY}` } }));
    expect(await call('before-rotation')).toBe('OK');
    await waitFor(async () => (await ids(audit)).includes('before-rotation'), 10_000, 'the line before the rotation');
    await rename(audit, `${audit}.1`);
    // The SIGHUPs of the tests before reopened it too: wait for this one's line.
    const reopened = (): number => gw.stderr().split('"msg":"audit log reopened"').length - 1;
    const before = reopened();
    gw.child.kill('SIGHUP');
    await waitFor(() => reopened() > before, 10_000, 'the reopen in the log');
    expect(await call('after-rotation')).toBe('OK');
    await waitFor(async () => (await ids(audit)).includes('after-rotation'), 10_000, 'the line after the rotation, in a new file');
    expect(await ids(audit)).not.toContain('before-rotation');
    expect(await ids(`${audit}.1`)).toContain('before-rotation');
    expect(await ids(`${audit}.1`)).not.toContain('after-rotation');
  });

  it('a server without --tenants logs and ignores SIGHUP instead of exiting', async () => {
    open.child.kill('SIGHUP');
    await waitFor(() => /SIGHUP: no --tenants file, TLS files or audit log to reload; ignored/.test(open.stderr()), 10_000, 'the log line');
    expect(open.child.exitCode).toBeNull();
    expect(await open.client.serverLive()).toBe(true);
  });
});
