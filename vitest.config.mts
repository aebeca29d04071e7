import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Cluster tests mount real FUSE file systems and start node processes: one
    // test file at a time keeps the two cores of a CI machine from thrashing.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
    globalSetup: ['test/harness/global-setup.ts'],
  },
});
