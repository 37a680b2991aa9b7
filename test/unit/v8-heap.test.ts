import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

// The real V8 of this Node, in a child process: objects from one allocation
// site that all survive their scavenges, with and without avoidPretenuring().
// With pretenuring on, V8 weighs that site at scavenges and traces each
// verdict with --trace-pretenuring-statistics ("pretenuring: AllocationSite…
// => maybe tenure", "=> tenure"); with it off, it weighs nothing. One GC
// thread (--single-threaded): with helpers, where the scavenges fall and so
// the verdicts varied from run to run.

const MODULE = fileURLToPath(new URL('../../dist/gateway/v8-heap.js', import.meta.url));

const SCRIPT = `
import { avoidPretenuring } from ${JSON.stringify(MODULE)};
if (process.argv.includes('avoid')) console.log('changed=' + avoidPretenuring());
const kept = [];
function make(i) { return { i, next: null }; }
for (let round = 0; round < 200; round++) {
  for (let i = 0; i < 5000; i++) kept.push(make(i));
  for (let i = 0; i < 5000; i++) new Array(64).fill(i);
}
console.log('kept=' + kept.length);
`;

async function run(nodeFlags: readonly string[], avoid: boolean): Promise<{ changed: string | undefined; verdicts: number }> {
  const args = [...nodeFlags, '--single-threaded', '--trace-pretenuring-statistics', '--input-type=module', '-e', SCRIPT, ...(avoid ? ['avoid'] : [])];
  const { stdout } = await promisify(execFile)(process.execPath, args, { maxBuffer: 64 << 20 });
  expect(stdout).toContain('kept=1000000');
  return { changed: /changed=(\w+)/.exec(stdout)?.[1], verdicts: stdout.split('\n').filter((l) => l.includes('pretenuring: AllocationSite')).length };
}

describe('avoidPretenuring', () => {
  it('V8 weighs pretenuring a site whose objects all survive, unless it was called', async () => {
    const plain = await run([], false);
    expect(plain.verdicts).toBeGreaterThan(0);
    const avoided = await run([], true);
    expect(avoided.changed).toBe('true');
    expect(avoided.verdicts).toBe(0);
  }, 30_000);

  it("leaves the operator's own flag, in either spelling", async () => {
    const kept = await run(['--allocation_site_pretenuring'], true);
    expect(kept.changed).toBe('false');
    expect(kept.verdicts).toBeGreaterThan(0);
    const off = await run(['--no-allocation-site-pretenuring'], true);
    expect(off.changed).toBe('false');
    expect(off.verdicts).toBe(0);
  }, 30_000);
});
