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
import { CudaFfaBackward, FFA_BWD_BLOCK_M } from '../src/kernels/cuda/ffa-backward.js';
import { FFA_BWD_SM90_HEAD_DIMS, sm90BackwardBlockM, sm90BackwardSmemBytes } from '../src/kernels/cuda/ffa-backward-sm90.js';
import { FfaCudaUnsupportedError } from '../src/kernels/cuda/unsupported.js';
import { repoFile } from './util/paths.js';

const source = readFileSync(repoFile('src/kernels/cuda/ffa_bwd_sm90.cu'), 'utf8');

/** A device of compute capability `cc` whose modules hand out kernels that remember their smem limit. */
function fakeDevice(cc: [number, number]): { device: CudaDevice; compiled: string[]; smem: Map<string, number> } {
  const compiled: string[] = [];
  const smem = new Map<string, number>();
  const device = {
    name: `fake sm_${cc[0]}${cc[1]}`,
    computeCapability: cc,
    compile: (_src: string, opts: { name?: string }) => {
      compiled.push(opts.name ?? '?');
      return {
        kernel: (name: string) => ({ name, setMaxDynamicSharedMemory: (bytes: number) => smem.set(name, bytes) }),
      };
    },
  };
  return { device: device as unknown as CudaDevice, compiled, smem };
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
