import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli, startGateway } from '../helpers/gateway-process.js';

// How the registry flags fail: clearly, and without taking down what can still serve.

const EXAMPLES = fileURLToPath(new URL('../../models/examples', import.meta.url));
const NOBODY = 'redis://127.0.0.1:1';

describe('registry command lines', () => {
  it('a worker whose registry cannot be reached exits 1 and says which and why', async () => {
    const r = await runCli(['worker', '--registry', NOBODY, '--model-repository', EXAMPLES, '--listen', '127.0.0.1:0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('fabriek worker: cannot reach the registry at redis://127.0.0.1:1: connect ECONNREFUSED');
  });

  it('worker usage errors exit 2 with the usage', async () => {
    const r = await runCli(['worker', '--registry', NOBODY]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--registry needs --model-repository');
    expect(r.stderr).toContain('usage: fabriek worker');
    const help = await runCli(['worker', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--advertise-address');
    const serveHelp = await runCli(['serve', '--help']);
    expect(serveHelp.code).toBe(0);
    expect(serveHelp.stdout).toContain('fabriek serve --registry URL');
    expect(serveHelp.stdout).toContain('--gateway-processes');
  });

  it('--workers 0 needs --registry; --registry needs a redis URL', async () => {
    const r = await runCli(['serve', '--model-repository', EXAMPLES, '--workers', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--workers: expected an integer from 1 to 1024, got '0'");
    const url = await runCli(['serve', '--model-repository', EXAMPLES, '--registry', 'localhost:6379']);
    expect(url.code).toBe(2);
    expect(url.stderr).toContain("--registry: expected a redis://, rediss://, redis-sentinel:// or redis-cluster:// URL, got 'localhost:6379'");
  });

  it('a gateway whose registry is down starts anyway and serves with its local workers', async () => {
    const gw = await startGateway(['--model-repository', EXAMPLES, '--registry', NOBODY]);
    try {
      expect(gw.readyLine).toContain('7 model versions ready');
      expect(await gw.client.modelReady('add_sub')).toBe(true);
      expect(gw.stderr()).toContain('registry unreachable at start; retrying in the background');
    } finally {
      await gw.stop();
    }
  });
});
