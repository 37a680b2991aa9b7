import { describe, expect, it } from 'vitest';
import { type HostedModel } from '../../../core/worker-record.js';
import { dynamicBatchingIn } from '../../../models/config/model-config.js';
import { entryFromRecord, recordConfigFile, sameConfig, versionFromRecord, withVersion } from '../../../gateway/registry/record-models.js';

const CONFIG = 'name: "m"\nmax_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 100 }\n';

function hosted(config: string | undefined, version = 1): HostedModel {
  const spec = { name: 'X', datatype: 'FP32', shape: [-1, 4], dimNames: [] };
  return {
    key: `m/${version}`,
    name: 'm',
    version,
    instances: 2,
    executionProvider: 'cpu',
    inputs: [spec],
    outputs: [{ ...spec, name: 'Y' }],
    ...(config === undefined ? {} : { config }),
  };
}

describe('models known from registry records', () => {
  it('parses the published config.pbtxt as a repository would, naming the worker in its file', () => {
    const entry = entryFromRecord(hosted(CONFIG), 'w1');
    expect(entry.error).toBeUndefined();
    expect(entry.configFile).toBe('m/config.pbtxt (from registered worker w1)');
    expect(entry.config?.maxBatchSize).toBe(8);
    expect(dynamicBatchingIn(entry.config)?.maxQueueDelayMicroseconds).toBe(100n);
    expect(entry.present.has('max_batch_size')).toBe(true);
    expect(entry.directory).toBe('');
  });

  it('a model without config.pbtxt has no config, as in a repository', () => {
    const entry = entryFromRecord(hosted(undefined), 'w1');
    expect(entry.config).toBeUndefined();
    expect(entry.configFile).toBeUndefined();
    expect(entry.present.size).toBe(0);
  });

  it('a config that does not parse makes an unavailable version with the file, field and reason', () => {
    const entry = entryFromRecord(hosted('max_batch_size: "eight"'), 'w2');
    expect(entry.error).toContain(recordConfigFile(hosted(undefined), 'w2'));
    expect(entry.error).toContain('max_batch_size');
    const v = versionFromRecord(hosted('x'), entry);
    expect(v).toMatchObject({ key: 'm/1', state: 'UNAVAILABLE', reason: entry.error, modelPath: '' });
  });

  it('compares configs by their text, and keeps versions in order', () => {
    const entry = entryFromRecord(hosted(CONFIG), 'w1');
    expect(sameConfig(entry, hosted(CONFIG))).toBe(true);
    expect(sameConfig(entry, hosted(`${CONFIG}# changed\n`))).toBe(false);
    expect(sameConfig(entry, hosted(undefined))).toBe(false);
    const v3 = versionFromRecord(hosted(CONFIG, 3), entry);
    const v1 = versionFromRecord(hosted(CONFIG, 1), entry);
    expect(v3).toMatchObject({ key: 'm/3', state: 'UNKNOWN', reason: '' });
    expect(withVersion([v3], v1).map((v) => v.version)).toEqual([1, 3]);
  });
});
