import { existsSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

/**
 * Files whose checks depend on how fast the machine runs at the time: load
 * that must be refused, shed or moved, timeouts with margins, batches merged
 * under load. They run one at a time, after the rest; sharing this 2-core
 * machine with another file's processes made them flake (overload.test.ts's
 * burst was served as fast as a slowed client wrote it).
 */
const TIMED = [
  'test/integration/overload.test.ts',
  'test/integration/orca.test.ts',
  'test/integration/worker-liveness.test.ts',
  'test/integration/inflight-wait.test.ts',
  'test/integration/early-refusal.test.ts',
  'test/integration/batching.test.ts',
  'test/integration/slo-batching.test.ts',
  'test/integration/shared-workers.test.ts',
  'test/integration/gateway-processes.test.ts',
  'test/integration/tenants.test.ts',
];

// A file renamed or removed would otherwise leave the list quietly: its successor would run two at a time.
for (const file of TIMED) if (!existsSync(new URL(file, import.meta.url))) throw new Error(`vitest.config.ts: TIMED names ${file}, which does not exist`);

const common = {
  testTimeout: 60_000,
  hookTimeout: 120_000,
  pool: 'forks',
  globalSetup: ['test/global-setup.ts'],
};

export default defineConfig({
  test: {
    projects: [
      // Unit tests share their processes: a fresh one per file spent 30 s importing the same modules again for
      // 130 files that test for 20 s (48 s alone, 14 s shared). Each restores what it changes (fake timers).
      { test: { ...common, name: 'unit', include: ['test/unit/**/*.test.ts'], isolate: false, maxWorkers: 2 } },
      // Two files at a time: most of an integration test's time is spent waiting (process starts, Redis,
      // Sentinel's failover, TTLs), so two at once take ~2/3 of the time of one after the other.
      { test: { ...common, name: 'parallel', include: ['test/**/*.test.ts'], exclude: [...TIMED, 'test/unit/**'], maxWorkers: 2 } },
      { test: { ...common, name: 'timed', include: TIMED, fileParallelism: false, sequence: { groupOrder: 1 } } },
    ],
  },
});
