/**
 * The CPU kernel in a real browser: test/browser/cpu-kernel-page.ts is bundled for the browser
 * (vite, as the planner page is) and run in headless Chromium (Debian's, at CHROMIUM_PATH or
 * /usr/bin/chromium; nothing downloads a browser) on a page that is not cross-origin isolated, so
 * the kernel must load from the bundled bytes alone (no file system, no fetch), compile
 * asynchronously (a main thread refuses to compile it synchronously), run on private memory on one
 * thread, and give the float64 reference's results. The bundle must import nothing: no Node
 * built-in reaches a browser build.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';
import { chromium, type Browser } from 'playwright-core';
import { Tensor } from '../src/tensor.js';
import { referenceBackward, referenceForward } from '../src/kernels/reference.js';
import { CPU_KERNEL_TOLERANCES } from '../src/kernels/tolerance.js';
import { assertAllClose } from './util/attn-check.js';
import { type PageResult, pageProblem } from './browser/cpu-kernel-page.js';
import { repoFile } from './util/paths.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
let browser: Browser;
let bundle: string;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)`);
  const entry = fileURLToPath(repoFile('test/browser/cpu-kernel-page.ts'));
  const out = await build({ configFile: false, logLevel: 'warn', build: { write: false, minify: false, target: 'esnext', lib: { entry, formats: ['es'], fileName: 'page' } } });
  const chunks = (Array.isArray(out) ? out[0] : out) as { output: Array<{ code?: string }> };
  bundle = chunks.output[0].code ?? '';
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
});

after(async () => {
  await browser?.close();
});

test('the browser bundle of the CPU kernel imports nothing (no Node built-in reaches a browser build)', () => {
  assert.ok(bundle.length > 1000);
  assert.doesNotMatch(bundle, /^\s*import\s/m);
  assert.doesNotMatch(bundle, /\bimport\s*\(/);
  assert.doesNotMatch(bundle, /from\s*["']node:/);
});

test('in Chromium the WebAssembly kernel loads from the bundle, runs on one thread with private memory and matches the float64 reference', async (t) => {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.setContent('<!DOCTYPE html><html><body></body></html>');
  await page.addScriptTag({ type: 'module', content: `${bundle.replace(/export\s*\{[^}]*\};?\s*$/, '')}\nwindow.__kernelPage = { run };` });
  await page.waitForFunction('window.__kernelPage !== undefined');
  const seed = 20261202;
  const n = 150;
  const got = (await page.evaluate(`window.__kernelPage.run(${seed}, ${n})`)) as PageResult;
  assert.deepEqual(errors, []);
  t.diagnostic(`browser kernel: ${JSON.stringify(got.info)}`);
  const info = got.info as { simd: string; shared: boolean };
  assert.equal(info.shared, false, 'a page without cross-origin isolation has no SharedArrayBuffer: private memory');
  assert.ok(info.simd === 'relaxed-simd' || info.simd === 'simd');

  // The same problem in Node, from the same seed, through the reference.
  const { dout, args } = pageProblem(seed, n);
  const want = referenceForward({ ...args, outDtype: 'float64' });
  const asTensor = (values: number[], shape: number[]) => Tensor.fromValues('float32', shape, values);
  const out = asTensor(got.out, [n, 4, 16]);
  const lse = asTensor(got.lse, [n, 4]);
  const grads = referenceBackward({ ...args, dout, out, lse });
  const tol = CPU_KERNEL_TOLERANCES.float32;
  assertAllClose(
    [
      ['out', out, want.out, tol.out],
      ['lse', lse, want.lse, tol.lse],
      ['dq', asTensor(got.dq, [n, 4, 16]), grads.dq, tol.grad],
      ['dk', asTensor(got.dk, [n, 2, 16]), grads.dk, tol.grad],
      ['dv', asTensor(got.dv, [n, 2, 16]), grads.dv, tol.grad],
    ],
    '(in Chromium)',
  );
  await page.close();
});
