import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CudaDevice,
  CudaUnavailableError,
  archFor,
  compileOptions,
  cudaDriver,
  kernelCacheKey,
  nvrtc,
  sizeClass,
  type KernelCacheKeyInput,
} from '../src/device/index.js';

test('without libcuda, loading the driver throws CudaUnavailableError naming every place it looked', () => {
  const candidates = ['/nonexistent/magi/libcuda.so.1', 'libcuda-magi-missing.so.1'];
  assert.throws(
    () => cudaDriver({ libcudaCandidates: candidates }),
    (e: unknown) =>
      e instanceof CudaUnavailableError &&
      e.missing === 'libcuda' &&
      e.tried.length === 2 &&
      candidates.every((c) => e.message.includes(c)) &&
      /MAGI_ATTN_LIBCUDA/.test(e.message),
  );
});

test('without libnvrtc, loading NVRTC throws CudaUnavailableError naming every place it looked', () => {
  const candidates = ['/nonexistent/cuda/lib64/libnvrtc.so*', '/nonexistent/cuda/lib64/libnvrtc.so.13', 'libnvrtc-magi-missing.so'];
  assert.throws(
    () => nvrtc({ libnvrtcCandidates: candidates }),
    (e: unknown) => e instanceof CudaUnavailableError && e.missing === 'libnvrtc' && candidates.every((c) => e.message.includes(c)),
  );
});

test('opening a device on this machine either works or throws CudaUnavailableError, never crashes', () => {
  let dev: CudaDevice | undefined;
  try {
    dev = CudaDevice.open(0);
  } catch (e) {
    assert.ok(e instanceof CudaUnavailableError, `expected CudaUnavailableError, got ${String(e)}`);
    assert.match((e as Error).message, /libcuda|GPU|cuInit/);
    return;
  }
  assert.ok(dev.smCount > 0);
  dev.close();
});

const base: KernelCacheKeyInput = {
  source: 'extern "C" __global__ void k(float* p) { p[0] = 1.0f; }',
  options: compileOptions('sm_90a'),
  nvrtcVersion: [13, 0],
  driverVersion: 13000,
  arch: 'sm_90a',
};

test('the kernel cache key is a stable sha256 of source, options, NVRTC and driver versions and arch', () => {
  const k = kernelCacheKey(base);
  assert.match(k, /^[0-9a-f]{64}$/);
  assert.equal(kernelCacheKey({ ...base, options: [...base.options] }), k);
  const variants: KernelCacheKeyInput[] = [
    { ...base, source: base.source.replace('1.0f', '2.0f') },
    { ...base, options: [...base.options, '-DX=1'] },
    { ...base, options: [...base.options].reverse() },
    { ...base, nvrtcVersion: [12, 8] },
    { ...base, driverVersion: 12080 },
    { ...base, arch: 'sm_90' },
  ];
  const keys = new Set([k, ...variants.map(kernelCacheKey)]);
  assert.equal(keys.size, variants.length + 1);
  // fields cannot bleed into each other
  assert.notEqual(kernelCacheKey({ ...base, options: ['-a', '-b'] }), kernelCacheKey({ ...base, options: ['-a -b'] }));
});

test('arch is sm_90a for compute capability 9.0 and sm_XY otherwise; default options come first', () => {
  assert.equal(archFor(9, 0), 'sm_90a');
  assert.equal(archFor(8, 0), 'sm_80');
  assert.equal(archFor(10, 0), 'sm_100');
  const opts = compileOptions('sm_90a', ['-DFOO']);
  assert.equal(opts[0], '--gpu-architecture=sm_90a');
  assert.ok(opts.some((o) => /^-I.*include$/.test(o)));
  assert.ok(opts.includes('--std=c++17') && opts.includes('-default-device'));
  assert.equal(opts[opts.length - 1], '-DFOO');
});

test('the caching allocator rounds requests up to size classes', () => {
  assert.equal(sizeClass(0), 512);
  assert.equal(sizeClass(1), 512);
  assert.equal(sizeClass(513), 1024);
  assert.equal(sizeClass(1 << 20), 1 << 20);
  assert.equal(sizeClass((1 << 20) + 1), 2 << 20);
  assert.equal(sizeClass((5 << 20) + 3), 6 << 20);
});
