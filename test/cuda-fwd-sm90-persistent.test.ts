/**
 * The host side of the persistent Hopper forward experiment (issue 11; removed or made the default
 * with it): the FFA_SM90_FWD_PERSISTENT environment variable is validated before any compile, the
 * define reaches the NVRTC options (and so the compile-cache key) only when asked for, the shared
 * memory requested is the kernel's own Smem<D>::kRequest (read from ffa_fwd_sm90.cu's static_assert),
 * and the launch shape is one block per virtual block, or (persistent) the resident blocks capped
 * by the virtual block count and maxBlocks, with the count passed last. No GPU: the device is a
 * stand-in that records what the launcher asks of it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CudaDevice, Kernel, Module } from '../src/device/device.js';
import { InvalidArgumentError } from '../src/errors.js';
import { Sm90ForwardMain, sm90ForwardPersistentFromEnv, sm90ForwardSmemBytes } from '../src/kernels/cuda/ffa-forward-sm90.js';
import { readKernelSource } from '../src/kernels/cuda/source.js';

test("sm90ForwardPersistentFromEnv: off when unset, '' or '0', on for '1', a typed error naming the variable otherwise", () => {
  assert.equal(sm90ForwardPersistentFromEnv({}), false);
  assert.equal(sm90ForwardPersistentFromEnv({ FFA_SM90_FWD_PERSISTENT: '' }), false);
  assert.equal(sm90ForwardPersistentFromEnv({ FFA_SM90_FWD_PERSISTENT: '0' }), false);
  assert.equal(sm90ForwardPersistentFromEnv({ FFA_SM90_FWD_PERSISTENT: '1' }), true);
  for (const bad of ['2', 'true', 'yes', ' 1', '1 ', '01', '1.0', 'on', 'false']) {
    assert.throws(
      () => sm90ForwardPersistentFromEnv({ FFA_SM90_FWD_PERSISTENT: bad }),
      (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'FFA_SM90_FWD_PERSISTENT' && e.message.includes(JSON.stringify(bad)),
      bad,
    );
  }
});

test("sm90ForwardSmemBytes is the kernel's Smem<D>::kRequest for both variants", () => {
  const src = readKernelSource('ffa_fwd_sm90.cu');
  const m = /static_assert\(Smem<128>::kRequest == \(kPersistent \? (\d+) : (\d+)\) && Smem<64>::kRequest == \(kPersistent \? (\d+) : (\d+)\)/.exec(src);
  assert.ok(m !== null, 'the static_assert on Smem<D>::kRequest is in ffa_fwd_sm90.cu');
  const [d128p, d128, d64p, d64] = m.slice(1).map(Number);
  assert.equal(sm90ForwardSmemBytes(128, true), d128p);
  assert.equal(sm90ForwardSmemBytes(128, false), d128);
  assert.equal(sm90ForwardSmemBytes(64, true), d64p);
  assert.equal(sm90ForwardSmemBytes(64, false), d64);
  // the default kernel's request is the one before the experiment
  assert.equal(sm90ForwardSmemBytes(128, false), 164936);
  assert.ok(sm90ForwardSmemBytes(128, true) <= 227 * 1024);
});

/** A compute-capability-9.0 stand-in: records compile options; kernels report `fit` blocks per SM. */
function standIn(smCount: number, fit: number): { device: CudaDevice; compiles: string[][]; occupancyCalls: number[] } {
  const compiles: string[][] = [];
  const occupancyCalls: number[] = [];
  const kernels = new Map<string, Kernel>();
  const module = {
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
  const device = {
    name: 'stand-in H200',
    computeCapability: [9, 0] as const,
    smCount,
    compile(_source: string, opts: { options?: string[] }): Module {
      compiles.push([...(opts.options ?? [])]);
      return module;
    },
  } as unknown as CudaDevice;
  return { device, compiles, occupancyCalls };
}

test('Sm90ForwardMain: the define, the shared memory and the launch shape follow the variant', () => {
  const saved = process.env.FFA_SM90_FWD_PERSISTENT;
  try {
    // default: no define, one block per virtual block, nothing appended
    delete process.env.FFA_SM90_FWD_PERSISTENT;
    let s = standIn(132, 1);
    const plain = new Sm90ForwardMain(s.device);
    assert.equal(plain.persistent, false);
    assert.deepEqual(s.compiles, [[]]);
    let { kernel, smemBytes } = plain.mainKernel('bf16', 128, false);
    assert.equal(smemBytes, sm90ForwardSmemBytes(128, false));
    assert.deepEqual(plain.launchShape(kernel, smemBytes, 8192), { grid: 8192, tail: [] });
    assert.equal(s.occupancyCalls.length, 0);

    // from the environment: the define, resident blocks (asked once per kernel), the count last
    process.env.FFA_SM90_FWD_PERSISTENT = '1';
    s = standIn(132, 1);
    const pers = new Sm90ForwardMain(s.device);
    assert.equal(pers.persistent, true);
    assert.deepEqual(s.compiles, [['-DFFA_SM90_FWD_PERSISTENT=1']]);
    ({ kernel, smemBytes } = pers.mainKernel('bf16', 128, true));
    assert.equal(smemBytes, sm90ForwardSmemBytes(128, true));
    assert.deepEqual(pers.launchShape(kernel, smemBytes, 8192), { grid: 132, tail: [{ type: 'i32', value: 8192 }] });
    assert.deepEqual(pers.launchShape(kernel, smemBytes, 100), { grid: 100, tail: [{ type: 'i32', value: 100 }] });
    assert.deepEqual(s.occupancyCalls, [smemBytes]);

    // an explicit option wins over the environment; two blocks per SM double the grid; maxBlocks caps it
    s = standIn(132, 2);
    const capped = new Sm90ForwardMain(s.device, { persistent: true, maxBlocks: 7 });
    ({ kernel, smemBytes } = capped.mainKernel('fp16', 64, false));
    assert.deepEqual(capped.launchShape(kernel, smemBytes, 8192), { grid: 7, tail: [{ type: 'i32', value: 8192 }] });
    assert.deepEqual(capped.launchShape(kernel, smemBytes, 5), { grid: 5, tail: [{ type: 'i32', value: 5 }] });
    s = standIn(132, 2);
    const two = new Sm90ForwardMain(s.device, { persistent: true });
    ({ kernel, smemBytes } = two.mainKernel('fp16', 64, false));
    assert.equal(two.launchShape(kernel, smemBytes, 8192).grid, 264);
    s = standIn(132, 1);
    assert.equal(new Sm90ForwardMain(s.device, { persistent: false }).persistent, false);
    assert.deepEqual(s.compiles, [[]]);

    // bad values: typed errors before any compile
    process.env.FFA_SM90_FWD_PERSISTENT = 'yes';
    s = standIn(132, 1);
    assert.throws(() => new Sm90ForwardMain(s.device), (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'FFA_SM90_FWD_PERSISTENT');
    assert.throws(() => new Sm90ForwardMain(s.device, { persistent: false, maxBlocks: 4 }), (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'maxBlocks');
    assert.throws(() => new Sm90ForwardMain(s.device, { persistent: true, maxBlocks: 0 }), (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'maxBlocks');
    assert.throws(() => new Sm90ForwardMain(s.device, { persistent: true, maxBlocks: 2.5 }), (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'maxBlocks');
    assert.deepEqual(s.compiles, []);
  } finally {
    if (saved === undefined) delete process.env.FFA_SM90_FWD_PERSISTENT;
    else process.env.FFA_SM90_FWD_PERSISTENT = saved;
  }
});
