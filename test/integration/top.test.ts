import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayProcess, runCli, startGateway } from '../helpers/gateway-process.js';
import { startLoad } from '../helpers/load-driver.js';

// `fabriek top` (issue #16) against a real gateway under load.

const EXAMPLES = fileURLToPath(new URL('../../models/examples', import.meta.url));

describe('fabriek top', () => {
  let gw: GatewayProcess;
  let metrics: string;

  beforeAll(async () => {
    gw = await startGateway(['--model-repository', EXAMPLES, '--log-level', 'warn']);
    metrics = `127.0.0.1:${/ metrics on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1]}`;
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
  });

  it('prints one plain view of the models under load, with their rates', async () => {
    const load = startLoad(() => gw.client, 2);
    try {
      const { code, stdout, stderr } = await runCli(['top', '--metrics-url', metrics, '--interval-secs', '1', '--once']);
      expect(code, stderr).toBe(0);
      expect(stdout).toMatch(/^fabriek top · http:\/\/127\.0\.0\.1:\d+\/metrics · .* · over 1\.\d s\n/);
      expect(stdout).toContain('workers: 1 up, 0 down');
      expect(stdout).not.toContain('\x1b[');
      const row = stdout.split('\n').find((l) => l.startsWith('add_sub '));
      const rate = Number(row?.trim().split(/\s+/)[2]);
      expect(rate, stdout).toBeGreaterThan(0);
    } finally {
      await load.stop();
    }
  });

  it('says what it cannot read and exits 1', async () => {
    const { code, stdout } = await runCli(['top', '--metrics-url', '127.0.0.1:1', '--once']);
    expect(code).toBe(1);
    expect(stdout).toMatch(/^fabriek top: cannot read http:\/\/127\.0\.0\.1:1\/metrics: /);
  });

  it('exits 2 with its usage on a bad flag', async () => {
    const { code, stderr } = await runCli(['top', '--interval-secs', 'soon']);
    expect(code).toBe(2);
    expect(stderr).toContain("--interval-secs: expected a number from 0.2 to 3600, got 'soon'");
  });
});
