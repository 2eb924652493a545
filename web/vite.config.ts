/**
 * Builds the planner page into dist/web (shipped in the npm package, served by `magi-attn
 * planner`). The page imports the solvers, the cost model and the mask presets straight from src/,
 * and the kernel benchmark's JSON from bench/results, so it always shows what this checkout
 * computes. Those modules must stay browser-safe: the build fails on any Node built-in.
 */
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';

const NODE_BUILTINS = new Set(builtinModules);

/** Refuses Node built-ins (Vite would otherwise swap in an empty module and warn). */
const browserOnly: Plugin = {
  name: 'browser-only',
  enforce: 'pre',
  resolveId(id, importer) {
    if (id.startsWith('node:') || NODE_BUILTINS.has(id)) this.error(`the planner page must not import the Node module '${id}' (from ${importer ?? '?'}): keep what it imports browser-safe`);
    return null;
  },
};

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: './',
  logLevel: 'warn',
  plugins: [browserOnly],
  worker: { format: 'es', plugins: () => [browserOnly] },
  build: {
    outDir: fileURLToPath(new URL('../dist/web', import.meta.url)),
    emptyOutDir: true,
    chunkSizeWarningLimit: 2000,
  },
});
