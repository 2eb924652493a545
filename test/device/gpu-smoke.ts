/**
 * GPU smoke test of the device layer (not a CI test: it needs a GPU). Run on the GPU machine:
 *   node dist/test/device/gpu-smoke.js [--seed N]
 * Opens device 0, compiles small kernels with NVRTC, checks them against the CPU on fresh random
 * inputs, times launches with events, exercises the kernel cache and the error paths.
 * Prints one PASS/FAIL line per check and exits non-zero when any check fails.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CudaDevice, CudaError, CuFuncAttr, NvrtcError, nvrtc, tensorOpsFor, type KernelArg } from '../../src/device/index.js';
import { bf16BitsToFloat, type DType } from '../../src/dtype.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { Tally, scriptArgs } from './common.js';

// mulberry32 seeded from --seed, so a failure can be replayed
const { rng } = scriptArgs();
const rand = (): number => rng.next();
const randn = (): number => (rand() * 2 - 1) * 4;

const tally = new Tally();
function check(name: string, ok: boolean, detail = ''): void {
  tally.record(ok, `${name}${detail ? `: ${detail}` : ''}`);
}
function attempt(name: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    tally.threw(name, e);
  }
}

const SOURCE = String.raw`
#include <cuda_bf16.h>

extern "C" __global__ void saxpy(float a, const float* __restrict__ x, const float* __restrict__ y,
                                 float* __restrict__ out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a * x[i] + y[i];
}

extern "C" __global__ void bf16_roundtrip(const float* __restrict__ in, __nv_bfloat16* __restrict__ mid,
                                          float* __restrict__ out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    __nv_bfloat16 b = __float2bfloat16_rn(in[i]);
    mid[i] = b;
    out[i] = __bfloat162float(b);
  }
}

struct Probe { int a; float b; long long c; };

__device__ unsigned smoke_global[5];

extern "C" __global__ void global_write(unsigned v) {
  if (threadIdx.x < 5) smoke_global[threadIdx.x] = v + threadIdx.x;
}

extern "C" __global__ void args_probe(Probe p, long long i64, unsigned long long u64, unsigned int u32,
                                      long long* out) {
  out[0] = p.a; out[1] = (long long)(p.b * 1000.0f); out[2] = p.c;
  out[3] = i64; out[4] = (long long)u64; out[5] = u32;
}
`;

/** float32 → bf16 bits with round-to-nearest-even (finite inputs). */
function bf16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0]!;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
function bf16ToF32(bits: number): number {
  return new Float32Array(new Uint32Array([bits << 16]).buffer)[0]!;
}

const dev = CudaDevice.open(0);
const [free, total] = dev.memInfo();
console.log(
  `device 0: ${dev.name}, cc ${dev.computeCapability.join('.')} (${dev.arch}), ${dev.smCount} SMs, ` +
    `${(total / 2 ** 30).toFixed(1)} GiB (${(free / 2 ** 30).toFixed(1)} free), smem optin ${dev.maxSharedMemPerBlockOptin} B, ` +
    `driver ${dev.driverVersion}, libcuda ${dev.driver.libraryPath}`,
);
const cacheDir = mkdtempSync(join(tmpdir(), 'magi-kcache-'));

// --- compile (miss), then again (hit) -------------------------------------------------------
let t0 = performance.now();
const mod = dev.compile(SOURCE, { name: 'smoke.cu', cacheDir });
const missMs = performance.now() - t0;
console.log(`nvrtc ${nvrtc().version.join('.')} from ${nvrtc().libraryPath}`);
t0 = performance.now();
const mod2 = dev.compile(SOURCE, { name: 'smoke.cu', cacheDir });
const hitMs = performance.now() - t0;
check('nvrtc compile produced a cubin', mod.compiled?.kind === 'cubin', `kind ${mod.compiled?.kind}, ${mod.compiled?.image.length} bytes, ${missMs.toFixed(0)} ms`);
check('second compile is a cache hit', mod.compiled?.cacheHit === false && mod2.compiled?.cacheHit === true, `${hitMs.toFixed(1)} ms, key ${mod2.compiled?.key.slice(0, 12)}`);
const modOpt = dev.compile(SOURCE, { name: 'smoke.cu', cacheDir, options: ['-DVARIANT=1'] });
check('different options miss the cache', modOpt.compiled?.cacheHit === false && modOpt.compiled?.key !== mod.compiled?.key);
mod2.unload();
modOpt.unload();

// --- saxpy ----------------------------------------------------------------------------------
const saxpy = mod.kernel('saxpy');
console.log(`saxpy: ${saxpy.attribute(CuFuncAttr.NUM_REGS)} regs, ${saxpy.attribute(CuFuncAttr.LOCAL_SIZE_BYTES)} B local`);
attempt('saxpy matches CPU (n = 1,000,003, fresh random inputs)', () => {
  const n = 1_000_003;
  const a = randn();
  const x = Float32Array.from({ length: n }, randn);
  const y = Float32Array.from({ length: n }, randn);
  const dx = dev.upload(x);
  const dy = dev.upload(y);
  const dOut = dev.alloc(n * 4);
  dOut.fill(0xff);
  const args: KernelArg[] = [
    { type: 'f32', value: a },
    { type: 'ptr', value: dx },
    { type: 'ptr', value: dy },
    { type: 'ptr', value: dOut },
    { type: 'i32', value: n },
  ];
  saxpy.launch({ grid: Math.ceil(n / 256), block: 256 }, args);
  const out = dOut.download(new Float32Array(n));
  const af = Math.fround(a);
  let bad = 0;
  let firstBad = -1;
  for (let i = 0; i < n; i++) {
    // fused (one rounding) or not (two): bound by float32 epsilon of the operands' magnitudes
    const ref = af * x[i]! + y[i]!;
    const tol = 1.2e-7 * (Math.abs(af * x[i]!) + Math.abs(y[i]!)) + 1e-30;
    if (!(Math.abs(out[i]! - ref) <= tol)) {
      bad++;
      if (firstBad < 0) firstBad = i;
    }
  }
  check('saxpy matches CPU (n = 1,000,003, fresh random inputs)', bad === 0, bad ? `${bad} mismatches, first at ${firstBad}: ${out[firstBad]} vs ${af * x[firstBad]! + y[firstBad]!}` : `a = ${af.toFixed(4)}`);
  dx.free();
  dy.free();
  dOut.free();
});

// --- bf16 round trip ------------------------------------------------------------------------
attempt('bf16 round trip matches CPU round-to-nearest-even', () => {
  const n = 65_537;
  const x = Float32Array.from({ length: n }, () => randn() * 10 ** Math.floor(rand() * 6 - 3));
  const dx = dev.upload(x);
  const dMid = dev.alloc(n * 2);
  const dOut = dev.alloc(n * 4);
  mod.kernel('bf16_roundtrip').launch({ grid: Math.ceil(n / 128), block: 128 }, [
    { type: 'ptr', value: dx },
    { type: 'ptr', value: dMid },
    { type: 'ptr', value: dOut },
    { type: 'i32', value: n },
  ]);
  const mid = dMid.download(new Uint16Array(n));
  const out = dOut.download(new Float32Array(n));
  let bad = 0;
  for (let i = 0; i < n; i++) {
    const bits = bf16Bits(x[i]!);
    if (mid[i] !== bits || out[i] !== bf16ToF32(bits)) bad++;
  }
  check('bf16 round trip matches CPU round-to-nearest-even', bad === 0, `${bad} of ${n} differ`);
  dx.free();
  dMid.free();
  dOut.free();
});

// --- argument packing: struct by value, 64-bit, u32 -------------------------------------------
attempt('kernel arguments: struct by value, i64, u64, u32', () => {
  const probe = new DataView(new ArrayBuffer(16));
  const pa = Math.floor(rand() * 1e6) - 500_000;
  const pb = Math.round(randn() * 1000) / 1000;
  const pc = BigInt(Math.floor(rand() * 2 ** 40)) << 10n;
  probe.setInt32(0, pa, true);
  probe.setFloat32(4, pb, true);
  probe.setBigInt64(8, pc, true);
  const i64 = -(1n << 50n) - 7n;
  const u64 = (1n << 52n) + 3n;
  const u32 = 0xfffffff0;
  const dOut = dev.alloc(6 * 8);
  mod.kernel('args_probe').launch({ grid: 1, block: 1 }, [
    { type: 'bytes', value: new Uint8Array(probe.buffer) },
    { type: 'i64', value: i64 },
    { type: 'u64', value: u64 },
    { type: 'u32', value: u32 },
    { type: 'ptr', value: dOut },
  ]);
  const got = Array.from(dOut.download(new BigInt64Array(6)));
  const want = [BigInt(pa), BigInt(Math.trunc(Math.fround(Math.fround(pb) * 1000))), pc, i64, u64, BigInt(u32)];
  check('kernel arguments: struct by value, i64, u64, u32', got.every((g, i) => g === want[i]), `got ${got.join(',')} want ${want.join(',')}`);
  dOut.free();
});

// --- streams, async copies, allocator ---------------------------------------------------------
attempt('stream: async copies + launch on a created stream', () => {
  const s = dev.createStream();
  const n = 4096;
  const x = Float32Array.from({ length: n }, randn);
  const y = Float32Array.from({ length: n }, randn);
  const dx = dev.alloc(n * 4);
  const dy = dev.alloc(n * 4);
  dx.upload(x, s);
  dy.upload(y, s);
  saxpy.launch({ grid: n / 256, block: 256, stream: s }, [
    { type: 'f32', value: 2 },
    { type: 'ptr', value: dx },
    { type: 'ptr', value: dy },
    { type: 'ptr', value: dy },
    { type: 'i32', value: n },
  ]);
  const out = dy.download(new Float32Array(n), s);
  s.synchronize();
  check('stream: async copies + launch on a created stream', out.every((v, i) => v === Math.fround(2 * x[i]! + y[i]!)));
  const hitsBefore = dev.allocator.hits;
  dx.free();
  const again = dev.alloc(n * 4 - 100);
  check('allocator reuses a freed block of the same size class', dev.allocator.hits === hitsBefore + 1 && again.ptr === dx.ptr);
  again.free();
  dy.free();
  s.destroy();
});

// --- timing ---------------------------------------------------------------------------------
attempt('timing', () => {
  const n = 1 << 24;
  const dx = dev.upload(Float32Array.from({ length: n }, randn));
  const dy = dev.upload(Float32Array.from({ length: n }, randn));
  const dOut = dev.alloc(n * 4);
  const args: KernelArg[] = [
    { type: 'f32', value: 1.5 },
    { type: 'ptr', value: dx },
    { type: 'ptr', value: dy },
    { type: 'ptr', value: dOut },
    { type: 'i32', value: n },
  ];
  const cfg = { grid: n / 256, block: 256 };
  for (let i = 0; i < 10; i++) saxpy.launch(cfg, args);
  dev.synchronize();
  const start = dev.createEvent();
  const end = dev.createEvent();
  start.record();
  const h0 = performance.now();
  for (let i = 0; i < 100; i++) saxpy.launch(cfg, args);
  const hostUs = ((performance.now() - h0) * 1000) / 100;
  end.record();
  const ms = end.elapsedSince(start) / 100;
  const gbs = (3 * n * 4) / (ms * 1e-3) / 1e9;
  console.log(`saxpy n=2^24 fp32: ${(ms * 1000).toFixed(1)} us/launch on GPU (${gbs.toFixed(0)} GB/s), host launch cost ${hostUs.toFixed(1)} us/launch`);
  // tiny kernel: measures launch overhead
  const tiny = { grid: 1, block: 32 };
  const tinyArgs: KernelArg[] = [...args.slice(0, 4), { type: 'i32', value: 32 }];
  for (let i = 0; i < 10; i++) saxpy.launch(tiny, tinyArgs);
  dev.synchronize();
  start.record();
  const h1 = performance.now();
  for (let i = 0; i < 1000; i++) saxpy.launch(tiny, tinyArgs);
  const tinyHostUs = ((performance.now() - h1) * 1000) / 1000;
  end.record();
  const tinyUs = (end.elapsedSince(start) * 1000) / 1000;
  console.log(`tiny launch (1 block): ${tinyUs.toFixed(2)} us/launch on GPU, host ${tinyHostUs.toFixed(2)} us/launch`);
  check('timing: events give positive elapsed time', ms > 0 && tinyUs > 0);
  start.destroy();
  end.destroy();
  dx.free();
  dy.free();
  dOut.free();
});

function expectThrow(name: string, fn: () => void, ok: (e: unknown) => boolean): void {
  try {
    fn();
    check(name, false, 'did not throw');
  } catch (e) {
    check(name, ok(e), (e as Error).message.split('\n').slice(0, 4).join(' | '));
  }
}

// --- random fill (tensor_ops.cu random_fill: the GPU benches' inputs) ------------------------
attempt('random fill', () => {
  const ops = tensorOpsFor(dev);
  const n = 3_000_001; // odd: the grid-stride tail
  const draw = (dtype: DType, seed: number, dist: 'normal' | 'uniform'): Float32Array => {
    const buf = dev.alloc(n * (dtype === 'float32' ? 4 : 2));
    ops.random({ buffer: buf, byteOffset: 0, length: n, dtype }, seed, dist, dev.defaultStream);
    const out = dtype === 'float32' ? buf.download(new Float32Array(n)) : Float32Array.from(buf.download(new Uint16Array(n)), bf16BitsToFloat);
    buf.free();
    return out;
  };
  const stats = (x: Float32Array): { mean: number; variance: number; zeros: number; bad: number; tail3: number; repeats: number } => {
    let sum = 0;
    let sq = 0;
    let zeros = 0;
    let bad = 0;
    let tail3 = 0;
    let repeats = 0;
    for (let i = 0; i < x.length; i++) {
      sum += x[i]!;
      sq += x[i]! * x[i]!;
      if (x[i] === 0) zeros++;
      if (!Number.isFinite(x[i]!)) bad++;
      if (Math.abs(x[i]!) > 3) tail3++;
      // the old dist-scaling inputs repeated a 4096-row block (64 k heads x 128: 2^19 elements)
      if (i >= 1 << 19 && x[i] === x[i - (1 << 19)]) repeats++;
    }
    const mean = sum / x.length;
    return { mean, variance: sq / x.length - mean * mean, zeros, bad, tail3: tail3 / x.length, repeats: repeats / (x.length - (1 << 19)) };
  };
  const fmt = (s: ReturnType<typeof stats>): string => `mean ${s.mean.toFixed(5)}, variance ${s.variance.toFixed(5)}, zeros ${s.zeros}, non-finite ${s.bad}, P(|x|>3) ${s.tail3.toFixed(5)}, equal 2^19 apart ${s.repeats.toFixed(5)}`;
  const normal = stats(draw('float32', 7, 'normal'));
  // 3e6 draws: standard errors 6e-4 (mean), 8e-4 (variance), 3e-5 (the tail; N(0,1): 0.0027)
  check('random fill: normal float32 is N(0, 1), no zero', Math.abs(normal.mean) < 0.005 && Math.abs(normal.variance - 1) < 0.006 && Math.abs(normal.tail3 - 0.0027) < 0.0003 && normal.zeros === 0 && normal.bad === 0 && normal.repeats < 1e-4, fmt(normal));
  const bf = stats(draw('bfloat16', 7, 'normal'));
  // bf16 has 256 values per octave: equal pairs happen by chance (~0.4%), not by repetition
  check('random fill: normal bfloat16 is N(0, 1), no zero, not periodic', Math.abs(bf.mean) < 0.005 && Math.abs(bf.variance - 1) < 0.01 && bf.zeros === 0 && bf.bad === 0 && bf.repeats < 0.02, fmt(bf));
  const u = draw('float32', 8, 'uniform');
  const us = stats(u);
  check('random fill: uniform float32 is U(-1, 1), no zero', u.every((x) => x > -1 && x < 1) && Math.abs(us.mean) < 0.005 && Math.abs(us.variance - 1 / 3) < 0.003 && us.zeros === 0, fmt(us));
  const a = draw('float32', 9, 'normal');
  const b = draw('float32', 9, 'normal');
  const c = draw('float32', 10, 'normal');
  let same = 0;
  for (let i = 0; i < n; i++) if (a[i] === c[i]) same++;
  check('random fill: a pure function of the seed (same seed same bits, next seed different)', a.every((x, i) => x === b[i]) && same < n * 1e-4, `equal to seed 10's: ${same} of ${n}`);
  const one = dev.alloc(4);
  expectThrow('random fill: a negative seed throws InvalidArgumentError', () => ops.random({ buffer: one, byteOffset: 0, length: 1, dtype: 'float32' }, -1, 'normal', dev.defaultStream), (e) => e instanceof InvalidArgumentError);
  one.free();
});

// --- a module's __device__ variable (Module.global: cuModuleGetGlobal) --------------------------
attempt('Module.global: address and size of a __device__ array, read back after a kernel wrote it', () => {
  const g = mod.global('smoke_global');
  const v = Math.floor(rand() * 1e6);
  dev.driver.cuMemsetD8(g.ptr, 0xff, g.bytes);
  mod.kernel('global_write').launch({ grid: 1, block: 32 }, [{ type: 'u32', value: v }]);
  dev.synchronize();
  const out = new Uint32Array(g.bytes / 4);
  dev.driver.cuMemcpyDtoH(out, g.ptr, g.bytes);
  check('Module.global: address and size of a __device__ array, read back after a kernel wrote it', g.bytes === 20 && out.join(',') === [0, 1, 2, 3, 4].map((i) => v + i).join(','), `${g.bytes} bytes: ${out.join(',')}`);
});

// --- error paths ----------------------------------------------------------------------------
expectThrow(
  'invalid launch (2048 threads per block) throws CudaError naming cuLaunchKernel',
  () => saxpy.launch({ grid: 1, block: 2048 }, [{ type: 'f32', value: 1 }, { type: 'ptr', value: null }, { type: 'ptr', value: null }, { type: 'ptr', value: null }, { type: 'i32', value: 0 }]),
  (e) => e instanceof CudaError && e.call === 'cuLaunchKernel' && /CUDA_ERROR_INVALID_VALUE/.test(e.message),
);
expectThrow(
  'missing kernel name throws CudaError (cuModuleGetFunction, NOT_FOUND)',
  () => mod.kernel('no_such_kernel'),
  (e) => e instanceof CudaError && /cuModuleGetFunction/.test(e.message) && /NOT_FOUND/.test(e.codeName),
);
expectThrow(
  'missing __device__ variable throws CudaError (cuModuleGetGlobal, NOT_FOUND)',
  () => mod.global('no_such_global'),
  (e) => e instanceof CudaError && /cuModuleGetGlobal\("no_such_global"\)/.test(e.message) && /NOT_FOUND/.test(e.codeName),
);
expectThrow(
  'bad kernel source throws NvrtcError with the compile log',
  () => dev.compile('extern "C" __global__ void broken(float* p) { p[0] = undefined_name; }', { name: 'broken.cu', cacheDir }),
  (e) => e instanceof NvrtcError && /undefined_name/.test(e.log) && /broken\.cu/.test(e.message),
);
attempt('device still works after the errors', () => {
  const d = dev.upload(new Float32Array([1, 2, 3, 4]));
  saxpy.launch({ grid: 1, block: 32 }, [{ type: 'f32', value: 2 }, { type: 'ptr', value: d }, { type: 'ptr', value: d }, { type: 'ptr', value: d }, { type: 'i32', value: 4 }]);
  const out = d.download(new Float32Array(4));
  check('device still works after the errors', out.join(',') === '3,6,9,12', out.join(','));
  d.free();
});

mod.unload();
dev.close();
rmSync(cacheDir, { recursive: true, force: true });
tally.exit();
