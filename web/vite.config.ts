/**
 * Builds the planner page into dist/web (shipped in the npm package, served by `magi-attn
 * planner`). The page imports the solvers and the cost model straight from src/, and the kernel
 * benchmark's JSON from bench/results, so it always shows what this checkout computes.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: './',
  logLevel: 'warn',
  resolve: {
    alias: Object.fromEntries(
      // src/cli/plan.ts holds the preset mask builder the page shares with `magi-attn plan`; the
      // Node-only modules it also imports are stubbed (see src/node-stubs.ts).
      ['node:fs', 'node:path', 'commander', 'cli-table3'].map((m) => [m, fileURLToPath(new URL('./src/node-stubs.ts', import.meta.url))]),
    ),
  },
  worker: { format: 'es' },
  build: {
    outDir: fileURLToPath(new URL('../dist/web', import.meta.url)),
    emptyOutDir: true,
    chunkSizeWarningLimit: 2000,
  },
});
