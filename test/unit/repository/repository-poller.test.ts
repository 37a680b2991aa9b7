import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fingerprintRepository, repositoryChanges } from '../../../gateway/repository/repository-poller.js';

describe('repositoryChanges', () => {
  it('tells added, changed and removed models apart, sorted', () => {
    const before = new Map([
      ['a', '1'],
      ['b', '1'],
      ['c', '1'],
    ]);
    const after = new Map([
      ['b', '1'],
      ['c', '2'],
      ['e', '1'],
      ['d', '1'],
    ]);
    expect(repositoryChanges(before, after)).toEqual({ added: ['d', 'e'], changed: ['c'], removed: ['a'] });
    expect(repositoryChanges(after, after)).toEqual({ added: [], changed: [], removed: [] });
  });
});

describe('fingerprintRepository', () => {
  let repo: string;
  beforeEach(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-fp-'));
    await mkdir(join(repo, 'm', '1'), { recursive: true });
    await writeFile(join(repo, 'm', '1', 'model.onnx'), 'abc');
    await mkdir(join(repo, '.hidden'));
    await writeFile(join(repo, 'README.md'), 'not a model');
  });
  afterEach(() => rm(repo, { recursive: true, force: true }));

  it('covers model directories only, and changes with every file in them', async () => {
    const first = await fingerprintRepository(repo);
    expect([...first.keys()]).toEqual(['m']);
    expect(await fingerprintRepository(repo)).toEqual(first);

    await writeFile(join(repo, 'm', 'config.pbtxt'), 'max_batch_size: 0');
    const withConfig = await fingerprintRepository(repo);
    expect(withConfig.get('m')).not.toBe(first.get('m'));

    await mkdir(join(repo, 'm', '2'));
    await writeFile(join(repo, 'm', '2', 'model.onnx'), 'abc');
    const newVersion = await fingerprintRepository(repo);
    expect(newVersion.get('m')).not.toBe(withConfig.get('m'));

    // Same size, new contents: the modification time tells.
    const later = new Date(Date.now() + 5_000);
    await writeFile(join(repo, 'm', '2', 'model.onnx'), 'xyz');
    await utimes(join(repo, 'm', '2', 'model.onnx'), later, later);
    expect((await fingerprintRepository(repo)).get('m')).not.toBe(newVersion.get('m'));
  });
});
