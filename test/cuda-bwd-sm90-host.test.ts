/**
 * The host side of the Hopper backward's head dims (no GPU needed): which head dims launch the
 * Hopper kernel and which the mma.sync one, the q rows per step the plan is built with, the kernel
 * names asked for, and the dynamic shared memory per head dim against the static_asserts of
 * ffa_bwd_sm90.cu (the kernel's Smem<D>::kRequest, which nvcc checks in CI). The device is a
 * stand-in that records what the launcher compiles and asks for.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { CudaDevice } from '../src/device/device.js';
import { CudaFfaBackward, FFA_BWD_BLOCK_M, FFA_BWD_PRE_ROWS_PER_BLOCK } from '../src/kernels/cuda/ffa-backward.js';
import { FFA_BWD_SM90_HEAD_DIMS, sm90BackwardBlockM, sm90BackwardSmemBytes } from '../src/kernels/cuda/ffa-backward-sm90.js';
import { FfaCudaUnsupportedError } from '../src/kernels/cuda/unsupported.js';
import { BWD_TRACE_WORDS } from '../src/kernels/cuda/ffa-backward-trace.js';
import { orderedLaunches } from '../src/kernels/cuda/ffa-backward-ordered.js';
import { kvMajorItemsOf } from '../src/kernels/cuda/ffa-backward-order.js';
import type { Stream } from '../src/device/device.js';
import { repoFile } from './util/paths.js';
import { causalMask, fullMask, makeSliceList, varlenCausalMask } from '../src/mask/index.js';
import { InvalidArgumentError } from '../src/errors.js';

const source = readFileSync(repoFile('src/kernels/cuda/ffa_bwd_sm90.cu'), 'utf8');

/**
 * A device of compute capability `cc` whose modules hand out kernels that remember their smem
 * limit, and one `__device__` variable, `ffa_bwd_trace`, of `traceBytes` bytes at address 0x1000
 * whose memsets and copies the driver records (`memory`: the words the copies return).
 */
function fakeDevice(cc: [number, number], traceBytes = 4 * BWD_TRACE_WORDS) {
  const compiled: string[] = [];
  const options: string[][] = [];
  const smem = new Map<string, number>();
  const calls: string[] = [];
  const memory = new Uint32Array(traceBytes / 4).map((_, i) => i * 7);
  const device = {
    name: `fake sm_${cc[0]}${cc[1]}`,
    computeCapability: cc,
    compile: (_src: string, opts: { name?: string; options?: string[] }) => {
      compiled.push(opts.name ?? '?');
      options.push(opts.options ?? []);
      return {
        kernel: (name: string) => ({ name, setMaxDynamicSharedMemory: (bytes: number) => smem.set(name, bytes) }),
        global: (name: string) => {
          if (name !== 'ffa_bwd_trace') throw new Error(`no global ${name}`);
          return { ptr: 0x1000n, bytes: traceBytes };
        },
      };
    },
    smCount: 132,
    // what the problem constructor uploads and allocates (never read here)
    upload: () => ({}),
    alloc: () => ({}),
    synchronize: () => calls.push('synchronize'),
    driver: {
      cuMemsetD8: (ptr: bigint, v: number, n: number) => calls.push(`memset ${ptr} ${v} ${n}`),
      cuMemsetD8Async: (ptr: bigint, v: number, n: number, stream: unknown) => calls.push(`memsetAsync ${ptr} ${v} ${n} ${String(stream)}`),
      cuMemcpyDtoH: (dst: Uint32Array, ptr: bigint, n: number) => {
        calls.push(`copy ${ptr} ${n}`);
        dst.set(memory.subarray(0, n / 4));
      },
    },
  };
  return { device: device as unknown as CudaDevice, compiled, options, smem, calls, memory };
}

test('sm90 backward: the smem size per head dim equals the kernel static_assert (Smem<D>::kRequest) and fits 227 KB', () => {
  const asserted = new Map<number, number>();
  for (const m of source.matchAll(/static_assert\(Smem<(\d+)>::kRequest == (\d+)/g)) asserted.set(Number(m[1]), Number(m[2]));
  assert.deepEqual([...asserted.keys()].sort((a, b) => a - b), [...FFA_BWD_SM90_HEAD_DIMS].sort((a, b) => a - b));
  for (const [dim, bytes] of asserted) {
    assert.equal(sm90BackwardSmemBytes(dim), bytes, `head dim ${dim}`);
    assert.ok(bytes <= 227 * 1024, `head dim ${dim}: ${bytes} B over the 227 KB a block may opt into`);
  }
});

test("backward pre-pass: the host's rows per block are ffa_bwd.cu's kPreRows per warp x the 8 warps of its 256-thread blocks", () => {
  const pre = readFileSync(repoFile('src/kernels/cuda/ffa_bwd.cu'), 'utf8');
  const m = /constexpr int kPreRows = (\d+);/.exec(pre);
  assert.ok(m !== null, 'kPreRows is in ffa_bwd.cu');
  assert.match(pre, /ffa_bwd_pre_\{bf16,fp16\}_d\{64,128\}: block 256 /);
  assert.equal(FFA_BWD_PRE_ROWS_PER_BLOCK, Number(m[1]) * (256 / 32));
});

test('sm90 backward: q rows per step are the kernel blockM<D>() (128 at D 64, 64 at D 128); other head dims throw', () => {
  const m = /constexpr int blockM\(\) \{\s*return D == 64 \? (\d+) : (\d+);/.exec(source);
  assert.ok(m !== null, 'blockM<D>() not found in ffa_bwd_sm90.cu');
  assert.equal(sm90BackwardBlockM(64), Number(m[1]));
  assert.equal(sm90BackwardBlockM(128), Number(m[2]));
  for (const dim of [32, 96, 256]) {
    assert.throws(() => sm90BackwardBlockM(dim), FfaCudaUnsupportedError);
    assert.throws(() => sm90BackwardSmemBytes(dim), FfaCudaUnsupportedError);
  }
});

test('sm90 backward: every entry point the launcher can name is defined, with its head dim', () => {
  for (const dim of FFA_BWD_SM90_HEAD_DIMS)
    for (const tag of ['bf16', 'fp16'])
      for (const sc of ['', '_softcap']) {
        const e = new RegExp(`FFA_BWD_SM90_ENTRY\\(ffa_bwd_sm90_${tag}_d${dim}${sc}, ffa::(\\w+), (\\d+), (true|false)\\)`).exec(source);
        assert.ok(e !== null, `ffa_bwd_sm90_${tag}_d${dim}${sc} missing`);
        assert.equal(e[1], tag === 'bf16' ? 'Bf16' : 'Fp16');
        assert.equal(Number(e[2]), dim);
        assert.equal(e[3], sc === '' ? 'false' : 'true');
      }
});

test('CudaFfaBackward on compute 9.0: head dims 64 and 128 run the Hopper kernel with its own step and smem', () => {
  const { device, compiled, smem } = fakeDevice([9, 0]);
  const bwd = new CudaFfaBackward(device);
  assert.deepEqual(compiled, ['ffa_bwd.cu', 'ffa_bwd_sm90.cu']);
  for (const [dim, step] of [[64, 128], [128, 64]] as const) {
    assert.equal(bwd.usesSm90(dim), true, `D ${dim}`);
    assert.equal(bwd.stepRows(dim), step);
    for (const softcap of [false, true]) {
      const name = `ffa_bwd_sm90_bf16_d${dim}${softcap ? '_softcap' : ''}`;
      const { smemBytes } = bwd.mainKernel('bfloat16', dim, softcap);
      assert.equal(smemBytes, sm90BackwardSmemBytes(dim));
      assert.equal(smem.get(name), smemBytes, `${name} smem limit set`);
    }
  }
  // fp16 names the fp16 entry
  bwd.mainKernel('float16', 64, false);
  assert.equal(smem.get('ffa_bwd_sm90_fp16_d64'), sm90BackwardSmemBytes(64));
});

test('CudaFfaBackward.deterministicScheduleAt: ordered by default on the Hopper kernel at head dim 128 only; grouped at head dim 64, on the mma.sync kernel, or when asked', () => {
  const at = (cc: [number, number], opts: ConstructorParameters<typeof CudaFfaBackward>[1]): string[] => {
    const bwd = new CudaFfaBackward(fakeDevice(cc).device, opts);
    return [64, 128].map((dim) => bwd.deterministicScheduleAt(dim));
  };
  assert.deepEqual(at([9, 0], {}), ['grouped', 'ordered']);
  assert.deepEqual(at([9, 0], { deterministicSchedule: 'ordered' }), ['grouped', 'ordered']);
  assert.deepEqual(at([9, 0], { deterministicSchedule: 'grouped' }), ['grouped', 'grouped']);
  for (const [cc, opts] of [[[9, 0], { kernel: 'mma' }], [[9, 0], { warps: 4 }], [[8, 0], {}]] as const) {
    assert.deepEqual(at(cc as [number, number], { ...opts, deterministicSchedule: 'ordered' }), ['grouped', 'grouped'], JSON.stringify({ cc, opts }));
  }
});

test('CudaFfaBackward: the mma.sync kernel where the Hopper one is not chosen or not available', () => {
  const cases: Array<[[number, number], ConstructorParameters<typeof CudaFfaBackward>[1]]> = [
    [[9, 0], { kernel: 'mma' }],
    [[9, 0], { warps: 4 }],
    [[8, 0], {}],
  ];
  for (const [cc, opts] of cases) {
    const { device, compiled, smem } = fakeDevice(cc);
    const bwd = new CudaFfaBackward(device, opts);
    assert.deepEqual(compiled, ['ffa_bwd.cu'], JSON.stringify({ cc, opts }));
    for (const dim of [64, 128]) {
      assert.equal(bwd.usesSm90(dim), false);
      assert.equal(bwd.stepRows(dim), FFA_BWD_BLOCK_M);
      bwd.mainKernel('bfloat16', dim, false);
      assert.ok(smem.has(`ffa_bwd_bf16_d${dim}`), `mma kernel for D ${dim}`);
    }
  }
  // a head dim neither kernel has
  const { device } = fakeDevice([9, 0]);
  assert.throws(() => new CudaFfaBackward(device).mainKernel('bfloat16', 96, false), FfaCudaUnsupportedError);
});

test('CudaFfaBackward traceSteps: compiles the trace build, zeroes and reads its ffa_bwd_trace, and is refused without the Hopper kernel', () => {
  const off = fakeDevice([9, 0]);
  const plain = new CudaFfaBackward(off.device);
  assert.deepEqual(off.options, [['-DFFA_BWD_NWARPS=8'], []], 'the default module has no trace define');
  assert.throws(() => plain.downloadTrace(), FfaCudaUnsupportedError);
  assert.throws(() => plain.sm90!.clearTrace(), FfaCudaUnsupportedError);

  const on = fakeDevice([9, 0]);
  const traced = new CudaFfaBackward(on.device, { traceSteps: true });
  assert.deepEqual(on.compiled, ['ffa_bwd.cu', 'ffa_bwd_sm90.cu']);
  assert.deepEqual(on.options[1], ['-DFFA_BWD_SM90_TRACE']);
  traced.sm90!.clearTrace();
  traced.sm90!.clearTrace({ handle: 'S1' } as unknown as Stream);
  const words = traced.downloadTrace();
  assert.deepEqual(on.calls, [`memset 4096 0 ${4 * BWD_TRACE_WORDS}`, `memsetAsync 4096 0 ${4 * BWD_TRACE_WORDS} S1`, 'synchronize', `copy 4096 ${4 * BWD_TRACE_WORDS}`]);
  assert.equal(words.length, BWD_TRACE_WORDS);
  assert.deepEqual(words, on.memory);

  // a module whose array is not the host's layout: refused before any copy
  const bad = fakeDevice([9, 0], 4 * BWD_TRACE_WORDS - 4);
  assert.throws(() => new CudaFfaBackward(bad.device, { traceSteps: true }).downloadTrace(), /disagree/);
  assert.deepEqual(bad.calls, []);

  for (const [cc, opts] of [[[8, 0], {}], [[9, 0], { kernel: 'mma' }]] as const) {
    assert.throws(() => new CudaFfaBackward(fakeDevice(cc as [number, number]).device, { ...opts, traceSteps: true }), FfaCudaUnsupportedError, JSON.stringify({ cc, opts }));
  }
});

test('sm90 backward block order: the default and ordered entries take kvMajorItems last and split the grid with it (bwd_item, ordered_item); the mma.sync kernel runs item-major', () => {
  assert.match(source, /NAME\(FFA_BWD_SM90_PARAMS, int kvMajorItems\)/);
  assert.match(source, /bwd_kernel<E, D, SOFTCAP>\(FFA_BWD_SM90_ARGS, kvMajorItems, nullptr, nullptr, 0\)/);
  assert.match(source, /NAME\(FFA_BWD_SM90_PARAMS, const int\* __restrict__ ranks, int\* __restrict__ locks, int numLocks, int kvMajorItems\)/);
  assert.match(source, /bwd_kernel<E, 128, SOFTCAP, true>\(FFA_BWD_SM90_ARGS, kvMajorItems, ranks, locks, numLocks\)/);
  assert.match(source, /ordered_item<kBM, kBN>\(work, qRanges, kRanges, types, headsQ, headsKv, kvMajorItems, oi\)/);
  assert.match(source, /: bwd_item<kBM, kBN>\(work, qRanges, kRanges, types, headsQ, headsKv, kvMajorItems\);/);
  assert.doesNotMatch(source, /ITEM_MAJOR/, 'one module: the order is an argument');
  assert.match(readFileSync(repoFile('src/kernels/cuda/ffa_bwd.cu'), 'utf8'), /bwd_item<BM, BN>\(work, qRanges, kRanges, types, headsQ, headsKv, 0\);/);
});

test('CudaFfaBackward block order: one default module; each problem picks kvMajorItems per plan unless forced; null on the mma.sync kernel; bad values refused', () => {
  const plain = fakeDevice([9, 0]);
  const bwd = new CudaFfaBackward(plain.device);
  assert.equal(bwd.blockOrder, 'auto');
  bwd.mainKernel('bfloat16', 128, false);
  bwd.mainKernel('float16', 64, true);
  assert.deepEqual(plain.compiled, ['ffa_bwd.cu', 'ffa_bwd_sm90.cu']);
  assert.deepEqual(plain.options[1], [], 'the default module: no defines');

  const shape = (tokens: number) => ({ tokensQ: tokens, tokensK: tokens, headsQ: 64, headsKv: 8, dim: 128, dtype: 'bfloat16' as const });
  // documents of 1,024 rows stay whole under the default cut: 8-fold unequal items, a split
  const docs4k = bwd.prepare(shape(4096), varlenCausalMask([0, 1024, 2048, 3072, 4096]));
  assert.ok(docs4k.kvMajorItems! > 0 && docs4k.kvMajorItems! < docs4k.defaultItems, `a split: ${docs4k.kvMajorItems} of ${docs4k.defaultItems}`);
  // causal 4k: its items cut at 1,024 rows (80, at most 8-fold unequal and many of each) stay all kv-major
  const causal4k = bwd.prepare(shape(4096), causalMask(4096));
  assert.equal(causal4k.defaultItems, 80);
  assert.equal(causal4k.kvMajorItems, causal4k.defaultItems);
  const full4k = bwd.prepare(shape(4096), fullMask(4096));
  assert.equal(full4k.kvMajorItems, full4k.defaultItems);
  const causal16k = bwd.prepare(shape(16384), causalMask(16384));
  assert.equal(causal16k.kvMajorItems, causal16k.defaultItems);
  for (const [order, want] of [
    ['kv-major', causal4k.defaultItems],
    ['item-major', 0],
    [{ kvMajorShare: 0.25 }, Math.round(0.25 * causal4k.defaultItems)],
  ] as const) {
    const forced = new CudaFfaBackward(fakeDevice([9, 0]).device, { blockOrder: order });
    const p = forced.prepare(shape(4096), causalMask(4096));
    assert.equal(p.kvMajorItems, want, JSON.stringify(order));
    // the ordered schedule's launch (one here, uncut items) in the same forced order
    const ord = p.orderedWork();
    const items = orderedLaunches(ord.plan, true)[1];
    assert.deepEqual(Array.from(ord.kvMajorItems.fromZero), [kvMajorItemsOf(order, items)], JSON.stringify(order));
  }
  // by the rule: the ordered launch of causal 16k (1,024 blocks, 8 waves) all kv-major, of causal 4k
  // (the uncut plan, 32 items of 128-4,096 rows) a split
  const ord16k = causal16k.orderedWork();
  assert.deepEqual(Array.from(ord16k.kvMajorItems.fromZero), [orderedLaunches(ord16k.plan, true)[1]]);
  assert.deepEqual(Array.from(ord16k.kvMajorItems.groups), Array.from(ord16k.kvMajorItems.fromZero), 'one group: the same launch either way');
  // two slices over the same keys: two key-disjoint groups, one launch each onto a caller's dk / dv,
  // one launch from zero; each launch's split over its own items
  const twice = makeSliceList([[0, 2048], [0, 2048]], [[0, 2048], [0, 2048]], ['full', 'full']);
  const kvMajor = new CudaFfaBackward(fakeDevice([9, 0]).device, { blockOrder: 'kv-major' }).prepare(shape(2048), twice).orderedWork();
  const perLaunch = (launches: Int32Array): number[] => Array.from({ length: launches.length / 2 }, (_, i) => launches[2 * i + 1]);
  assert.deepEqual([orderedLaunches(kvMajor.plan, false).length, orderedLaunches(kvMajor.plan, true).length], [4, 2]);
  assert.deepEqual(Array.from(kvMajor.kvMajorItems.groups), perLaunch(orderedLaunches(kvMajor.plan, false)));
  assert.deepEqual(Array.from(kvMajor.kvMajorItems.fromZero), perLaunch(orderedLaunches(kvMajor.plan, true)));
  const ord4k = causal4k.orderedWork();
  const split4k = ord4k.kvMajorItems.fromZero[0];
  assert.ok(split4k > 0 && split4k < orderedLaunches(ord4k.plan, true)[1], `ordered causal 4k: a split, ${split4k}`);
  const mma = new CudaFfaBackward(fakeDevice([8, 0]).device);
  assert.equal(mma.prepare(shape(4096), causalMask(4096)).kvMajorItems, null, 'the mma.sync kernel has no choice');
  for (const bad of ['head-major', { kvMajorShare: 2 }]) {
    assert.throws(() => new CudaFfaBackward(fakeDevice([9, 0]).device, { blockOrder: bad as 'kv-major' }), InvalidArgumentError);
  }
});
