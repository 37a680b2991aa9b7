import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ModelEntry, RepositoryError, scanModel, scanRepository } from '../../models/repository/scan.js';
import { selectVersions } from '../../models/repository/version-policy.js';

let repo: string;

beforeEach(async () => {
  repo = await mkdtemp(join(tmpdir(), 'fabriek-repo-'));
});
afterEach(async () => {
  await rm(repo, { recursive: true, force: true });
});

/** Writes files under the repository; scanning never loads model.onnx, so they stay empty. */
async function files(entries: Record<string, string>): Promise<void> {
  for (const [path, text] of Object.entries(entries)) {
    await mkdir(dirname(join(repo, path)), { recursive: true });
    await writeFile(join(repo, path), text);
  }
}

async function model(name: string): Promise<ModelEntry> {
  const found = (await scanRepository(repo)).models.find((m) => m.name === name);
  if (!found) throw new Error(`model ${name} not found`);
  return found;
}

const versionsOf = (entry: ModelEntry): number[] => entry.versions.map((v) => v.version);

describe('scanRepository: good models', () => {
  it('finds models with and without config.pbtxt, sorted, ignoring hidden entries and loose files', async () => {
    await files({
      'resnet/config.pbtxt': 'name: "resnet" max_batch_size: 8',
      'resnet/1/model.onnx': '',
      'resnet/labels.txt': 'cat\ndog',
      'bare/2/model.onnx': '',
      '.git/1/model.onnx': '',
      'bare/.ipynb_checkpoints/model.onnx': '',
      'README.md': '# models',
    });
    const scan = await scanRepository(repo);
    expect(scan.directory).toBe(repo);
    expect(scan.models.map((m) => m.name)).toEqual(['bare', 'resnet']);
    const [bare, resnet] = scan.models;
    expect(bare).toEqual({
      name: 'bare',
      directory: join(repo, 'bare'),
      configFile: undefined,
      config: undefined,
      present: new Set(),
      warnings: [],
      versions: [{ version: 2, path: join(repo, 'bare', '2', 'model.onnx') }],
    });
    expect(resnet?.configFile).toBe(join(repo, 'resnet', 'config.pbtxt'));
    expect(resnet?.config?.maxBatchSize).toBe(8);
    expect(resnet?.present.has('max_batch_size')).toBe(true);
    expect(resnet?.error).toBeUndefined();
    expect(resnet?.versions).toEqual([{ version: 1, path: join(repo, 'resnet', '1', 'model.onnx') }]);
  });

  it('serves the latest version by default, numerically not lexically', async () => {
    await files({ 'm/2/model.onnx': '', 'm/10/model.onnx': '', 'm/9/model.onnx': '' });
    expect(versionsOf(await model('m'))).toEqual([10]);
  });

  it('follows latest { num_versions }, all and specific', async () => {
    const versions = { '1/model.onnx': '', '2/model.onnx': '', '3/model.onnx': '' };
    const add = (name: string, config: string): Record<string, string> => ({
      [`${name}/config.pbtxt`]: config,
      ...Object.fromEntries(Object.entries(versions).map(([p, t]) => [`${name}/${p}`, t])),
    });
    await files({
      ...add('latest2', 'version_policy { latest { num_versions: 2 } }'),
      ...add('latest9', 'version_policy { latest { num_versions: 9 } }'),
      ...add('all', 'version_policy: { all { } }'),
      ...add('specific', 'version_policy: { specific { versions: [ 3, 1 ] } }'),
    });
    expect(versionsOf(await model('latest2'))).toEqual([2, 3]);
    expect(versionsOf(await model('latest9'))).toEqual([1, 2, 3]);
    expect(versionsOf(await model('all'))).toEqual([1, 2, 3]);
    expect(versionsOf(await model('specific'))).toEqual([1, 3]);
  });

  it('uses default_model_filename for the version path', async () => {
    await files({ 'm/config.pbtxt': 'default_model_filename: "net.onnx"', 'm/1/net.onnx': '' });
    expect((await model('m')).versions).toEqual([{ version: 1, path: join(repo, 'm', '1', 'net.onnx') }]);
  });

  it('ignores non-numeric directories and files named like versions; warns about leading zeros', async () => {
    await files({ 'm/1/model.onnx': '', 'm/v2/model.onnx': '', 'm/3': 'not a directory', 'm/007/model.onnx': '' });
    const entry = await model('m');
    expect(versionsOf(entry)).toEqual([1]);
    expect(entry.error).toBeUndefined();
    expect(entry.warnings).toEqual([`${join(repo, 'm', '007')}: ignored: expected a version number without leading zeros, got "007"`]);
  });

  it('passes on config warnings', async () => {
    await files({ 'm/config.pbtxt': 'name: "m"\nmodel_operations { op_library_filename: "x" }', 'm/1/model.onnx': '' });
    const entry = await model('m');
    expect(entry.error).toBeUndefined();
    expect(entry.warnings).toEqual([
      `${join(repo, 'm', 'config.pbtxt')}: model_operations: ignored: Fabriek does not implement it (line 2, column 1)`,
    ]);
  });

  it('follows symlinked model and version directories', async () => {
    await files({ 'elsewhere/5/model.onnx': '' });
    await mkdir(join(repo, 'repo'));
    await symlink(join(repo, 'elsewhere'), join(repo, 'repo', 'linked'));
    const scan = await scanRepository(join(repo, 'repo'));
    expect(scan.models.map((m) => [m.name, versionsOf(m)])).toEqual([['linked', [5]]]);
  });

  it('returns an empty list for an empty repository', async () => {
    expect((await scanRepository(repo)).models).toEqual([]);
  });

  it('scans one model directory on its own (for a load request)', async () => {
    await files({ 'one/1/model.onnx': '' });
    expect(versionsOf(await scanModel(join(repo, 'one')))).toEqual([1]);
  });
});

describe('scanRepository: a bad model gets an error, the others still serve', () => {
  it('reports a config that does not parse, with file, field and position', async () => {
    await files({
      'bad/config.pbtxt': 'name: "bad"\ndynamic_batching { max_queue_delay_microseconds: "abc" }',
      'bad/1/model.onnx': '',
      'good/1/model.onnx': '',
    });
    const scan = await scanRepository(repo);
    const [bad, good] = scan.models;
    expect(bad?.error).toBe(
      `${join(repo, 'bad', 'config.pbtxt')}: dynamic_batching.max_queue_delay_microseconds: expected a non-negative integer, got "abc" (line 2, column 50)`,
    );
    expect(bad?.config).toBeUndefined();
    expect(bad?.configFile).toBe(join(repo, 'bad', 'config.pbtxt'));
    expect(bad?.versions).toEqual([]);
    expect(good?.error).toBeUndefined();
    expect(versionsOf(good as ModelEntry)).toEqual([1]);
  });

  it('reports a syntax error the same way', async () => {
    await files({ 'bad/config.pbtxt': 'input [ { name: "x" }', 'bad/1/model.onnx': '' });
    expect((await model('bad')).error).toBe(
      `${join(repo, 'bad', 'config.pbtxt')}: input: expected "," or "]" in the list, got end of input (line 1, column 22)`,
    );
  });

  it('reports a config whose name is not its directory, keeping its versions for the index', async () => {
    await files({ 'mine/config.pbtxt': 'name: "theirs"', 'mine/1/model.onnx': '' });
    const entry = await model('mine');
    expect(entry.error).toBe(`${join(repo, 'mine', 'config.pbtxt')}: name: expected "mine" (the model's directory name), got "theirs"`);
    expect(entry.config?.name).toBe('theirs');
    expect(versionsOf(entry)).toEqual([1]);
  });

  it('reports a model without version directories', async () => {
    await files({ 'empty/config.pbtxt': 'name: "empty"', 'empty/notes/model.onnx': '' });
    expect((await model('empty')).error).toBe(
      `${join(repo, 'empty')}: expected at least one version directory such as ${join(repo, 'empty', '1', 'model.onnx')}, got none`,
    );
  });

  it('reports a version directory without the model file, naming the path', async () => {
    await files({
      'm/config.pbtxt': 'version_policy { all {} } default_model_filename: "net.onnx"',
      'm/1/net.onnx': '',
      'm/2/model.onnx': '',
      'm/3/net.onnx/keep': '',
    });
    const entry = await model('m');
    expect(entry.error).toBe(
      `${join(repo, 'm')}: expected a model file at ${join(repo, 'm', '2', 'net.onnx')}, ${join(repo, 'm', '3', 'net.onnx')}, got none`,
    );
    expect(versionsOf(entry)).toEqual([1, 2, 3]);
  });

  it('reports specific versions that have no directory', async () => {
    await files({ 'm/config.pbtxt': 'version_policy { specific { versions: [ 1, 4, 5 ] } }', 'm/1/model.onnx': '' });
    const entry = await model('m');
    expect(entry.error).toBe(
      `${join(repo, 'm', 'config.pbtxt')}: version_policy.specific.versions: expected a version directory for every listed version, ` +
        `got none for 4, 5 (${join(repo, 'm', '4')}, ${join(repo, 'm', '5')})`,
    );
    expect(versionsOf(entry)).toEqual([1]);
  });

  it('reports a specific policy that lists no version', async () => {
    await files({ 'm/config.pbtxt': 'version_policy { specific { } }', 'm/1/model.onnx': '' });
    expect((await model('m')).error).toBe(`${join(repo, 'm')}: expected version_policy to select at least one version, got none`);
  });

  it('rejects a default_model_filename that leaves the version directory', async () => {
    await files({ 'm/config.pbtxt': 'default_model_filename: "../other/model.onnx"', 'm/1/model.onnx': '' });
    expect((await model('m')).error).toBe(
      `${join(repo, 'm', 'config.pbtxt')}: default_model_filename: expected a file name inside each version directory, got "../other/model.onnx"`,
    );
  });

  it('reports a config.pbtxt that is not a readable file', async () => {
    await files({ 'm/config.pbtxt/x': '', 'm/1/model.onnx': '' });
    expect((await model('m')).error).toMatch(new RegExp(`^${escape(join(repo, 'm', 'config.pbtxt'))}: cannot be read \\(Error: EISDIR`));
  });
});

describe('scanRepository: an unusable repository throws', () => {
  it('when the path does not exist', async () => {
    const missing = join(repo, 'nope');
    const error = await scanRepository(missing).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RepositoryError);
    expect(error).toMatchObject({ message: `model repository ${missing} does not exist`, directory: missing, code: 'ERR_MODEL_REPOSITORY' });
  });

  it('when the path is a file', async () => {
    await files({ 'file.txt': '' });
    const path = join(repo, 'file.txt');
    await expect(scanRepository(path)).rejects.toThrow(`model repository ${path}: expected a directory, got a file`);
  });
});

describe('selectVersions', () => {
  it('defaults to the latest single version', () => {
    expect(selectVersions(undefined, [3, 1, 2])).toEqual({ selected: [3], missing: [] });
    expect(selectVersions({}, [3, 1, 2])).toEqual({ selected: [3], missing: [] });
    expect(selectVersions(undefined, [])).toEqual({ selected: [], missing: [] });
  });

  it('selects the latest n, all, or the listed ones', () => {
    expect(selectVersions({ policyChoice: { $case: 'latest', value: { numVersions: 2 } } }, [1, 5, 3])).toEqual({ selected: [3, 5], missing: [] });
    expect(selectVersions({ policyChoice: { $case: 'all', value: {} } }, [2, 1])).toEqual({ selected: [1, 2], missing: [] });
    expect(selectVersions({ policyChoice: { $case: 'specific', value: { versions: [3n, 1n, 3n, 7n] } } }, [1, 2, 3])).toEqual({
      selected: [1, 3],
      missing: [7],
    });
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
