/**
 * The host side of the Hopper forward's three builds (one block per work item on 128- or 176-key
 * k tiles, persistent): the rules that pick one per plan (persistent below a mean of 16 k tiles
 * per item, wide from 64 on full slices), the shared memory each requests
 * (the kernel's own Smem<D>::kRequest, read from ffa_fwd_sm90.cu's static_assert), each module
 * compiled only when first used (the persistent one with its define, part of the compile-cache
 * key), the launch shape (one block per virtual block, or the resident blocks capped by the
 * virtual block count and maxBlocks, with the count passed last), the `build` option, and
 * CudaFfaForward.prepare choosing by the plan. No GPU: the device is a stand-in that records what
 * the launcher asks of it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CudaDevice, DeviceBuffer, Kernel, Module } from '../src/device/device.js';
import { InvalidArgumentError } from '../src/errors.js';
import { CudaFfaForward, planFfaForward } from '../src/kernels/cuda/ffa-forward.js';
import { SM90_PERSISTENT_BELOW_MEAN_K_TILES, SM90_PERSISTENT_MAX_BLOCKS_PER_SM, Sm90ForwardMain, sm90ForwardGridIsShort, SM90_WIDE_FROM_MEAN_K_TILES, sm90ForwardPicksBuild, sm90ForwardPicksPersistent, sm90ForwardPicksWide, sm90ForwardSmemBytes } from '../src/kernels/cuda/ffa-forward-sm90.js';
import { readKernelSource } from '../src/kernels/cuda/source.js';
import { FfaCudaUnsupportedError } from '../src/kernels/cuda/unsupported.js';
import { causalMask, fullMask, makeSliceList, slidingWindowMask, varlenFullMask } from '../src/mask/index.js';

const PERSISTENT_DEFINE = '-DFFA_SM90_FWD_PERSISTENT=1';
const WIDE_DEFINE = '-DFFA_SM90_FWD_BN=176';

test('sm90ForwardPicksPersistent: persistent below a mean of 16 k tiles per work item, not at 16; an empty plan never', () => {
  assert.equal(SM90_PERSISTENT_BELOW_MEAN_K_TILES, 16);
  assert.equal(sm90ForwardPicksPersistent({ numWork: 0, kTiles: 0 }), false);
  assert.equal(sm90ForwardPicksPersistent({ numWork: 1, kTiles: 1 }), true);
  assert.equal(sm90ForwardPicksPersistent({ numWork: 128, kTiles: 16 * 128 - 1 }), true); // mean 15.99
  assert.equal(sm90ForwardPicksPersistent({ numWork: 128, kTiles: 16 * 128 }), false); // mean 16
  assert.equal(sm90ForwardPicksPersistent({ numWork: 128, kTiles: 16 * 128 + 1 }), false);
  assert.equal(sm90ForwardPicksPersistent({ numWork: 3, kTiles: 47 }), true); // 15.67
  assert.equal(sm90ForwardPicksPersistent({ numWork: 3, kTiles: 48 }), false);
  // on real plans of 128 x 128 tiles at 16k tokens: the sliding window (~8 k tiles per q tile) is
  // short, causal (mean 64.5) and full (128) are long
  const plan = (m: Parameters<typeof planFfaForward>[0]) => planFfaForward(m, 16384, 128, 128);
  assert.equal(sm90ForwardPicksPersistent(plan(slidingWindowMask(16384, [1000, 0]))), true);
  assert.equal(sm90ForwardPicksPersistent(plan(causalMask(16384))), false);
  assert.equal(sm90ForwardPicksPersistent(plan(fullMask(16384))), false);
});

test('sm90ForwardPicksWide: 176-key tiles for plans of full slices averaging 64+ k tiles per item, head dim 128', () => {
  assert.equal(SM90_WIDE_FROM_MEAN_K_TILES, 64);
  const picks = (m: Parameters<typeof planFfaForward>[0], tokens: number, dim = 128) => sm90ForwardPicksWide(m, planFfaForward(m, tokens, 128, 128), dim);
  assert.equal(picks(fullMask(16384), 16384), true);
  assert.equal(picks(fullMask(8192), 8192), true); // 64 k tiles per item: the threshold
  assert.equal(picks(fullMask(8064), 8064), false); // 63
  assert.equal(picks(varlenFullMask([0, 12000, 24000]), 24000), true);
  assert.equal(picks(varlenFullMask([0, 5000, 16384]), 16384), true); // 40 and 89 k tiles per item, mean 73.8
  assert.equal(picks(varlenFullMask([0, 4000, 8000, 12000, 16384]), 16384), false); // ~32 per item
  assert.equal(picks(fullMask(16384), 16384, 64), false);
  assert.equal(picks(causalMask(16384), 16384), false);
  assert.equal(picks(slidingWindowMask(16384, [1000, 0]), 16384), false);
  // one causal slice among full ones is enough to keep 128
  const mixed = makeSliceList([[0, 9000], [9000, 18000]], [[0, 9000], [0, 18000]], ['full', 'causal']);
  assert.equal(picks(mixed, 18000), false);
  const empty = makeSliceList([], [], []);
  assert.equal(picks(empty, 0), false);
});

test('sm90ForwardGridIsShort: at most 16 one-block-per-item blocks (items x Hq) per SM; an empty plan never', () => {
  assert.equal(SM90_PERSISTENT_MAX_BLOCKS_PER_SM, 16);
  assert.equal(sm90ForwardGridIsShort({ numWork: 0 }, 64, 132), false);
  assert.equal(sm90ForwardGridIsShort({ numWork: 33 }, 64, 132), true); // 2,112 blocks: 16 per SM
  assert.equal(sm90ForwardGridIsShort({ numWork: 34 }, 64, 132), false);
  assert.equal(sm90ForwardGridIsShort({ numWork: 33 }, 64, 131), false); // the same grid on one SM fewer
  // 4k tokens on 64 heads (32 q tiles: 2,048 blocks) is short on an H200, 8k (4,096) is not
  const items = (m: Parameters<typeof planFfaForward>[0], tokens: number) => planFfaForward(m, tokens, 128, 128);
  assert.equal(sm90ForwardGridIsShort(items(causalMask(4096), 4096), 64, 132), true);
  assert.equal(sm90ForwardGridIsShort(items(causalMask(8192), 8192), 64, 132), false);
  assert.equal(sm90ForwardGridIsShort(items(causalMask(8192), 8192), 32, 132), true);
});

test('sm90ForwardPicksBuild: persistent below a mean of 16 k tiles per item, wide from 64 on full slices at D 128, persistent on a short grid, else block', () => {
  const build = (m: Parameters<typeof planFfaForward>[0], tokens: number, dim = 128, headsQ = 64) => sm90ForwardPicksBuild(m, planFfaForward(m, tokens, 128, 128), dim, headsQ, 132);
  assert.equal(build(fullMask(16384), 16384), 'wide');
  assert.equal(build(fullMask(16384), 16384, 64), 'block');
  assert.equal(build(causalMask(16384), 16384), 'block');
  assert.equal(build(slidingWindowMask(16384, [1000, 0]), 16384), 'persistent');
  // short grids: causal and full at 4k on 64 heads, and the wide rule before the grid rule
  assert.equal(build(causalMask(4096), 4096), 'persistent');
  assert.equal(build(fullMask(4096), 4096), 'persistent');
  assert.equal(build(causalMask(8192), 8192), 'block');
  assert.equal(build(fullMask(8192), 8192, 128, 8), 'wide'); // 512 blocks, but items of 64 k tiles
  assert.equal(build(fullMask(8192), 8192, 64, 8), 'persistent');
  assert.equal(sm90ForwardPicksBuild(fullMask(1), { numWork: 5, kTiles: 79 }, 128, 64, 132), 'persistent'); // full, mean 15.8
  assert.equal(sm90ForwardPicksBuild(fullMask(1), { numWork: 5, kTiles: 80 }, 128, 64, 132), 'persistent'); // mean 16, 320 blocks
  assert.equal(sm90ForwardPicksBuild(fullMask(1), { numWork: 5, kTiles: 80 }, 128, 1024, 132), 'block'); // 5,120 blocks
  assert.equal(sm90ForwardPicksBuild(fullMask(1), { numWork: 1, kTiles: 64 }, 128, 64, 132), 'wide');
  assert.equal(sm90ForwardPicksBuild(makeSliceList([], [], []), { numWork: 0, kTiles: 0 }, 128, 64, 132), 'block');
});

test("sm90ForwardSmemBytes is the kernel's Smem<D>::kRequest for every build", () => {
  const src = readKernelSource('ffa_fwd_sm90.cu');
  const m = /static_assert\(Smem<128>::kRequest == \(kPersistent \? (\d+) : kBN == 176 \? (\d+) : (\d+)\) &&\s+Smem<64>::kRequest == \(kPersistent \? (\d+) : kBN == 176 \? (\d+) : (\d+)\)/.exec(src);
  assert.ok(m !== null, 'the static_assert on Smem<D>::kRequest is in ffa_fwd_sm90.cu');
  const [d128p, d128w, d128, d64p, d64w, d64] = m.slice(1).map(Number);
  assert.equal(sm90ForwardSmemBytes(128, 'persistent'), d128p);
  assert.equal(sm90ForwardSmemBytes(128, 'wide'), d128w);
  assert.equal(sm90ForwardSmemBytes(128, 'block'), d128);
  assert.equal(sm90ForwardSmemBytes(64, 'persistent'), d64p);
  assert.equal(sm90ForwardSmemBytes(64, 'wide'), d64w);
  assert.equal(sm90ForwardSmemBytes(64, 'block'), d64);
  assert.ok(sm90ForwardSmemBytes(128, 'persistent') <= 227 * 1024);
  assert.ok(sm90ForwardSmemBytes(128, 'wide') <= 227 * 1024);
});

/**
 * A stand-in device of compute capability `cc`: records compile options (by file name); kernels
 * report `fit` blocks per SM; uploads and allocations hand out buffers that hold nothing.
 */
function standIn(smCount: number, fit: number, cc: readonly [number, number] = [9, 0]): { device: CudaDevice; compiles: Array<[string, string[]]>; occupancyCalls: number[] } {
  const compiles: Array<[string, string[]]> = [];
  const occupancyCalls: number[] = [];
  const buffer = { ptr: 0n, free(): void {}, fill(): void {} } as unknown as DeviceBuffer;
  const device = {
    name: `stand-in sm_${cc[0]}${cc[1]}`,
    computeCapability: cc,
    smCount,
    compile(_source: string, opts: { name: string; options?: string[] }): Module {
      compiles.push([opts.name, [...(opts.options ?? [])]]);
      const kernels = new Map<string, Kernel>();
      return {
        kernel(name: string): Kernel {
          let k = kernels.get(name);
          if (k === undefined) {
            k = {
              setMaxDynamicSharedMemory(): void {},
              maxActiveBlocksPerSM(_threads: number, smem: number): number {
                occupancyCalls.push(smem);
                return fit;
              },
            } as unknown as Kernel;
            kernels.set(name, k);
          }
          return k;
        },
      } as unknown as Module;
    },
    upload: () => buffer,
    alloc: () => buffer,
  } as unknown as CudaDevice;
  return { device, compiles, occupancyCalls };
}

/** The NVRTC options of the compiles of ffa_fwd_sm90.cu, in order. */
const sm90Compiles = (c: Array<[string, string[]]>): string[][] => c.filter(([name]) => name === 'ffa_fwd_sm90.cu').map(([, o]) => o);

test('Sm90ForwardMain: each build compiles on first use, with its shared memory and launch shape', () => {
  let s = standIn(132, 1);
  const main = new Sm90ForwardMain(s.device);
  assert.equal(main.build, 'auto');
  assert.deepEqual(s.compiles, [], 'nothing compiled before a kernel is asked for');

  // one block per item: no define, one block per virtual block, nothing appended
  let { kernel, smemBytes } = main.mainKernel('bf16', 128, false, 'block');
  assert.deepEqual(sm90Compiles(s.compiles), [[]]);
  assert.equal(smemBytes, sm90ForwardSmemBytes(128, 'block'));
  assert.deepEqual(main.launchShape(kernel, smemBytes, 8192, 'block'), { grid: 8192, tail: [] });
  assert.equal(s.occupancyCalls.length, 0);

  // persistent: its own module with the define, resident blocks (asked once per kernel), the count last
  ({ kernel, smemBytes } = main.mainKernel('bf16', 128, true, 'persistent'));
  assert.deepEqual(sm90Compiles(s.compiles), [[], [PERSISTENT_DEFINE]]);
  assert.equal(smemBytes, sm90ForwardSmemBytes(128, 'persistent'));
  assert.deepEqual(main.launchShape(kernel, smemBytes, 8192, 'persistent'), { grid: 132, tail: [{ type: 'i32', value: 8192 }] });
  assert.deepEqual(main.launchShape(kernel, smemBytes, 100, 'persistent'), { grid: 100, tail: [{ type: 'i32', value: 100 }] });
  assert.deepEqual(s.occupancyCalls, [smemBytes]);
  // asking again compiles nothing more
  main.mainKernel('fp16', 64, false, 'persistent');
  main.mainKernel('fp16', 64, true, 'block');
  assert.equal(s.compiles.length, 2);
  // wide: its own module with its define and its shared memory, one block per virtual block
  ({ kernel, smemBytes } = main.mainKernel('bf16', 128, false, 'wide'));
  assert.deepEqual(sm90Compiles(s.compiles), [[], [PERSISTENT_DEFINE], [WIDE_DEFINE]]);
  assert.equal(smemBytes, sm90ForwardSmemBytes(128, 'wide'));
  assert.deepEqual(main.launchShape(kernel, smemBytes, 8192, 'wide'), { grid: 8192, tail: [] });
  assert.equal(s.occupancyCalls.length, 1);

  // two blocks per SM double the grid; maxBlocks caps it
  s = standIn(132, 2);
  const capped = new Sm90ForwardMain(s.device, { build: 'persistent', maxBlocks: 7 });
  ({ kernel, smemBytes } = capped.mainKernel('fp16', 64, false, 'persistent'));
  assert.deepEqual(capped.launchShape(kernel, smemBytes, 8192, 'persistent'), { grid: 7, tail: [{ type: 'i32', value: 8192 }] });
  assert.deepEqual(capped.launchShape(kernel, smemBytes, 5, 'persistent'), { grid: 5, tail: [{ type: 'i32', value: 5 }] });
  const two = new Sm90ForwardMain(s.device, { build: 'persistent' });
  ({ kernel, smemBytes } = two.mainKernel('fp16', 64, false, 'persistent'));
  assert.equal(two.launchShape(kernel, smemBytes, 8192, 'persistent').grid, 264);
});

test("Sm90ForwardMain: a build's name forces it on every plan, auto follows the rules", () => {
  const s = standIn(132, 1);
  const window = slidingWindowMask(16384, [1000, 0]);
  const masks = [fullMask(16384), causalMask(16384), window, fullMask(4096)];
  const plans = masks.map((m, i) => planFfaForward(m, [16384, 16384, 16384, 4096][i], 128, 128));
  const picks = (main: Sm90ForwardMain, dim = 128, headsQ = 64) => masks.map((m, i) => main.picksBuild(m, plans[i], dim, headsQ));
  const auto = new Sm90ForwardMain(s.device);
  assert.equal(auto.build, 'auto');
  assert.deepEqual(picks(auto), ['wide', 'block', 'persistent', 'persistent']);
  assert.deepEqual(picks(auto, 64), ['block', 'block', 'persistent', 'persistent']);
  // 4k full on 64 heads: 2,048 blocks on the stand-in's 132 SMs (short), 4,096 on 128 heads
  assert.deepEqual(picks(auto, 128, 128), ['wide', 'block', 'persistent', 'block']);
  assert.deepEqual(picks(new Sm90ForwardMain(s.device, { build: 'auto' })), picks(auto));
  for (const build of ['block', 'wide', 'persistent'] as const) assert.deepEqual(picks(new Sm90ForwardMain(s.device, { build })), [build, build, build, build]);
});

test('Sm90ForwardMain: bad options and a GPU other than 9.0 are typed errors before any compile', () => {
  const s = standIn(132, 1);
  const argument = (name: string) => (e: unknown) => e instanceof InvalidArgumentError && e.argument === name;
  assert.throws(() => new Sm90ForwardMain(s.device, { build: 'yes' as unknown as 'auto' }), argument('build'));
  assert.throws(() => new Sm90ForwardMain(s.device, { build: 'block', maxBlocks: 4 }), argument('maxBlocks'));
  assert.throws(() => new Sm90ForwardMain(s.device, { build: 'wide', maxBlocks: 4 }), argument('maxBlocks'));
  assert.throws(() => new Sm90ForwardMain(s.device, { maxBlocks: 4 }), argument('maxBlocks')); // 'auto' may pick any
  assert.throws(() => new Sm90ForwardMain(s.device, { build: 'persistent', maxBlocks: 0 }), argument('maxBlocks'));
  assert.throws(() => new Sm90ForwardMain(s.device, { build: 'persistent', maxBlocks: 2.5 }), argument('maxBlocks'));
  assert.deepEqual(s.compiles, []);
  const ampere = standIn(108, 1, [8, 0]);
  assert.throws(() => new Sm90ForwardMain(ampere.device), FfaCudaUnsupportedError);
  assert.deepEqual(ampere.compiles, []);
});

test('CudaFfaForward.prepare: the plan picks the build, and only the module it runs is compiled', () => {
  const s = standIn(132, 1);
  const fwd = new CudaFfaForward(s.device);
  assert.deepEqual(sm90Compiles(s.compiles), []);
  // 128 heads: 4,096 blocks for 4k tokens, a grid too long for the short-grid rule
  const shape = { tokensQ: 4096, tokensK: 4096, headsQ: 128, headsKv: 32, dim: 128, dtype: 'bfloat16' as const };
  const full = fwd.prepare(shape, fullMask(4096)); // 32 k tiles per item: below the wide tile's 64
  assert.equal(full.build, 'block');
  assert.deepEqual(sm90Compiles(s.compiles), [[]]);
  const window = fwd.prepare(shape, slidingWindowMask(4096, [500, 0])); // ~5 k tiles per item
  assert.equal(window.build, 'persistent');
  assert.deepEqual(sm90Compiles(s.compiles), [[], [PERSISTENT_DEFINE]]);
  const long = { ...shape, tokensQ: 8192, tokensK: 8192 };
  const wide = fwd.prepare(long, fullMask(8192)); // 64 k tiles per item, every slice full
  assert.equal(wide.build, 'wide');
  assert.deepEqual(sm90Compiles(s.compiles), [[], [PERSISTENT_DEFINE], [WIDE_DEFINE]]);
  assert.equal(fwd.prepare(long, causalMask(8192)).build, 'block');
  // a short full plan goes persistent, and so keeps 128-key tiles
  const shortFull = fwd.prepare(shape, varlenFullMask([0, 500, 1000, 1500, 4096]));
  assert.equal(shortFull.build, 'persistent');
  // the block plan above on 8 heads: 256 blocks, a short grid
  assert.equal(fwd.prepare({ ...shape, headsQ: 8, headsKv: 2 }, fullMask(4096)).build, 'persistent');
  // forced: the plan does not matter
  const forced = new CudaFfaForward(s.device, { sm90: { build: 'block' } });
  assert.equal(forced.prepare(shape, slidingWindowMask(4096, [500, 0])).build, 'block');
  assert.equal(forced.prepare(long, fullMask(8192)).build, 'block');
  assert.equal(new CudaFfaForward(s.device, { sm90: { build: 'wide' } }).prepare(shape, causalMask(4096)).build, 'wide');
  assert.equal(new CudaFfaForward(s.device, { sm90: { build: 'persistent' } }).prepare(shape, fullMask(4096)).build, 'persistent');
  // the mma kernel has one schedule and one tile
  const mma = new CudaFfaForward(s.device, { kernel: 'mma' });
  assert.equal(mma.prepare(shape, slidingWindowMask(4096, [500, 0])).build, 'block');
});
