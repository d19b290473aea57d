import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Tests whose assertion is a latency ratio run alone, after the rest: two
// test files sharing 2 cores would make the ratio measure each other.
const ALONE = ['test/gateway/load.test.ts', 'test/adversarial/**/*.test.ts'];

export default defineConfig({
  root: fileURLToPath(new URL('..', import.meta.url)),
  test: {
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: {
          name: 'main',
          include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
          exclude: ALONE,
          // Real sandboxes on a 2-core machine: two files at once keeps limits honest.
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'alone',
          include: ALONE,
          maxWorkers: 1,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
