/**
 * The CPU kernel's two engines and its threads: the WebAssembly SIMD kernel, both builds (relaxed
 * SIMD and plain SIMD, one and several threads), against the float64 reference and against the
 * TypeScript tiles (its readable oracle), bit-reproducibility for a given build and thread count,
 * which build loads by default (and with the environment's opt-out, in a child process), the work
 * list's coverage of the mask, the thread default and the build inside a cp rank, and the
 * backend's options. Every random test prints its seed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Tensor } from '../src/tensor.js';
import type { DType } from '../src/dtype.js';
import { InvalidArgumentError } from '../src/errors.js';
import { makeSliceList, type SliceList } from '../src/mask/slice-list.js';
import type { FfaForwardArgs } from '../src/kernels/backend.js';
import { cellMultiplicity, referenceForward } from '../src/kernels/reference.js';
import { CPU_KERNEL_TOLERANCES } from '../src/kernels/tolerance.js';
import { cpuEngineName, createCpuBackend, wasmKernelInfo } from '../src/kernels/cpu/index.js';
import { buildWorkList, assignStatic, TILE_K, TILE_Q } from '../src/kernels/cpu/work.js';
import { defaultThreadCount } from '../src/kernels/cpu/wasm/node-threads.js';
import { spawnRanks } from '../src/comm/threads/index.js';
import { Rng } from '../src/util/rng.js';
import { assertAllClose, assertKernelMatchesReference, randomSlices, randomTensor, seeded } from './util/attn-check.js';
import { WASM_BUILDS, assertBitReproducible, cpuVariants } from './util/cpu-variants.js';
import { NO_RELAXED_SIMD_ENV } from '../src/kernels/cpu/wasm/node-runtime.js';
import { childNodeFlags, runnable } from './util/paths.js';

interface Problem {
  args: FfaForwardArgs<Tensor>;
  dout: Tensor;
}

function randomProblem(rng: Rng, dtype: DType, cfg: { tq: number; tk: number; hq: number; hkv: number; dim: number; slices: number; sink?: boolean; softcap?: number; shared?: boolean }): Problem {
  return {
    args: {
      q: randomTensor(rng, dtype, [cfg.tq, cfg.hq, cfg.dim]),
      k: randomTensor(rng, dtype, [cfg.tk, cfg.hkv, cfg.dim]),
      v: randomTensor(rng, dtype, [cfg.tk, cfg.hkv, cfg.dim]),
      slices: randomSlices(rng, cfg.tq, cfg.tk, { slices: cfg.slices, allowSharedCells: cfg.shared }),
      softmaxScale: 1 / Math.sqrt(cfg.dim),
      softcap: cfg.softcap ?? 0,
      sink: cfg.sink ? randomTensor(rng, 'float32', [2, cfg.hq], 1.5) : undefined,
      returnMaxLogits: true,
      outDtype: dtype,
      deterministic: true,
    },
    dout: randomTensor(rng, dtype, [cfg.tq, cfg.hq, cfg.dim]),
  };
}

const nodeMajor = Number(process.versions.node.split('.')[0]);

test('both builds of the WebAssembly kernel load here with shared memory, and the default is relaxed SIMD (on Node 20 through V8 flag the loader sets)', (t) => {
  const auto = wasmKernelInfo();
  t.diagnostic(`default build: ${JSON.stringify(auto)}`);
  assert.ok(auto !== undefined, 'Node 20 has WebAssembly SIMD: the kernel must load');
  assert.equal(auto.simd, 'relaxed-simd');
  assert.equal(auto.shared, true);
  // Node 20's V8 keeps relaxed SIMD behind a flag; from Node 22 it is on by default and the loader leaves the flags alone.
  if (nodeMajor === 20) assert.equal(auto.v8Flag, true);
  if (nodeMajor >= 22) assert.equal(auto.v8Flag, false);
  assert.deepEqual(wasmKernelInfo('simd'), { simd: 'simd', shared: true, v8Flag: false });
  assert.deepEqual(wasmKernelInfo('relaxed-simd'), auto);
  assert.equal(cpuEngineName({ threads: 2 }), 'wasm-relaxed-simd x2');
  assert.equal(cpuEngineName({ threads: 1, simd: 'simd' }), 'wasm-simd x1');
});

test(`${NO_RELAXED_SIMD_ENV}=1 keeps the plain SIMD build and leaves V8's flags alone (a child process, as the variable is read when the kernel first loads)`, async (t) => {
  const index = runnable('src/kernels/cpu/index').href;
  const generated = runnable('src/kernels/cpu/wasm/binary.generated').href;
  const code = [
    `const { wasmKernelInfo, cpuEngineName } = await import(${JSON.stringify(index)});`,
    `const { KERNEL_WASM } = await import(${JSON.stringify(generated)});`,
    'const info = wasmKernelInfo();',
    `const relaxedValidates = WebAssembly.validate(Buffer.from(KERNEL_WASM.relaxedShared, 'base64'));`,
    `console.log(JSON.stringify({ info, engine: cpuEngineName({ threads: 2 }), relaxedValidates }));`,
  ].join('\n');
  const run = async (env: Record<string, string>) => {
    const { stdout } = await promisify(execFile)(process.execPath, [...childNodeFlags, '--input-type=module', '-e', code], { env: { ...process.env, ...env } });
    return JSON.parse(stdout) as { info: unknown; engine: string; relaxedValidates: boolean };
  };
  const optedOut = await run({ [NO_RELAXED_SIMD_ENV]: '1' });
  const byDefault = await run({ [NO_RELAXED_SIMD_ENV]: '' });
  t.diagnostic(`opted out: ${JSON.stringify(optedOut)}; by default: ${JSON.stringify(byDefault)}`);
  assert.deepEqual(optedOut.info, { simd: 'simd', shared: true, v8Flag: false });
  assert.equal(optedOut.engine, 'wasm-simd x2');
  assert.deepEqual(byDefault.info, wasmKernelInfo());
  assert.equal(byDefault.engine, 'wasm-relaxed-simd x2');
  assert.equal(byDefault.relaxedValidates, true);
  // Before V8 11.4 (Node 20) relaxed SIMD validates only with the flag: opting out must not have set it.
  if (nodeMajor === 20) assert.equal(optedOut.relaxedValidates, false);
});

test('every engine and thread count matches the reference on random masks (GQA, softcap, sink, D not a multiple of 4, shared cells, all dtypes)', (t) => {
  const { seed, rng } = seeded(t);
  const cases: { dtype: DType; hq: number; hkv: number; dim: number }[] = [
    { dtype: 'float32', hq: 8, hkv: 2, dim: 64 },
    { dtype: 'float32', hq: 3, hkv: 3, dim: 13 },
    { dtype: 'bfloat16', hq: 4, hkv: 1, dim: 128 },
    { dtype: 'float16', hq: 6, hkv: 3, dim: 20 },
  ];
  const variants = cpuVariants();
  for (const c of cases) {
    for (let round = 0; round < 3; round++) {
      const p = randomProblem(rng, c.dtype, {
        tq: rng.int(60, 260),
        tk: rng.int(60, 260),
        hq: c.hq,
        hkv: c.hkv,
        dim: c.dim,
        slices: rng.int(1, 7),
        sink: round === 1,
        softcap: round === 2 ? 4 : 0,
        shared: round === 2,
      });
      const want = referenceForward({ ...p.args, outDtype: 'float64' });
      const tol = CPU_KERNEL_TOLERANCES[c.dtype];
      for (const v of variants) {
        assertKernelMatchesReference(v.backend, p.args, p.dout, want, tol, `${c.dtype} ${c.hq}:${c.hkv} D${c.dim} round ${round} [${v.name}] (seed ${seed})`);
      }
    }
  }
});

test('the WebAssembly kernel agrees with the TypeScript tiles (its oracle) to float32 accuracy on a multi-tile causal mask', (t) => {
  const { seed, rng } = seeded(t);
  const n = 517;
  const p = randomProblem(rng, 'float32', { tq: n, tk: n, hq: 4, hkv: 2, dim: 64, slices: 1 });
  p.args.slices = makeSliceList([[0, n]], [[0, n]], 'causal');
  const [ts, ...others] = cpuVariants();
  const a = ts.backend.forward(p.args);
  const ga = ts.backend.backward({ ...p.args, dout: p.dout, out: a.out, lse: a.lse });
  for (const v of others) {
    const b = v.backend.forward(p.args);
    const gb = v.backend.backward({ ...p.args, dout: p.dout, out: a.out, lse: a.lse });
    // The TypeScript tiles compute in float64, so their results stand in for the truth here.
    const tol = CPU_KERNEL_TOLERANCES.float32;
    assertAllClose(
      [
        ['out', b.out, a.out, tol.out],
        ['lse', b.lse, a.lse, tol.lse],
        ['dq', gb.dq, ga.dq, tol.grad],
        ['dk', gb.dk, ga.dk, tol.grad],
        ['dv', gb.dv, ga.dv, tol.grad],
      ],
      `[${v.name} vs typescript] (seed ${seed})`,
    );
  }
});

test('results are bit-identical run to run for a given build and thread count; the forward is the same for every thread count', (t) => {
  const { rng } = seeded(t);
  const p = randomProblem(rng, 'bfloat16', { tq: 700, tk: 650, hq: 4, hkv: 2, dim: 32, slices: 6, sink: true, softcap: 3 });
  for (const simd of WASM_BUILDS) {
    assertBitReproducible((threads) => createCpuBackend({ engine: 'wasm', simd, threads }), p.args, p.dout, simd);
  }
});

test('calls alternating between builds and thread counts (2, 3, 1, 4) stay bit-identical to the first result of each: a job never runs with the workers or parameters of the previous job, and the two builds (each its own memory and threads) never touch each other', (t) => {
  const { rng } = seeded(t);
  // Small calls, so that workers a job leaves out are still waking from the previous one.
  const p = randomProblem(rng, 'float32', { tq: 150, tk: 140, hq: 4, hkv: 2, dim: 16, slices: 3 });
  const counts = [2, 3, 1, 4];
  const builds = counts.map((_, i) => WASM_BUILDS[i % 2]);
  const backends = counts.map((threads, i) => createCpuBackend({ engine: 'wasm', simd: builds[i], threads }));
  const first = backends.map((b) => {
    const f = b.forward(p.args);
    return { f, g: b.backward({ ...p.args, dout: p.dout, out: f.out, lse: f.lse }) };
  });
  for (let round = 0; round < 40; round++) {
    const i = round % counts.length;
    const f = backends[i].forward(p.args);
    const g = backends[i].backward({ ...p.args, dout: p.dout, out: f.out, lse: f.lse });
    assert.deepEqual(f.out.data, first[i].f.out.data, `out, ${builds[i]} ${counts[i]} threads, round ${round}`);
    for (const name of ['dq', 'dk', 'dv'] as const) assert.deepEqual(g[name].data, first[i].g[name].data, `${name}, ${builds[i]} ${counts[i]} threads, round ${round}`);
  }
});

test('the work list covers every cell of the mask exactly as often as the slices do, with disjoint q tiles and k tiles (default tiles, and the BLAS engine\'s 64 x 128)', (t) => {
  const { seed, rng } = seeded(t);
  for (let round = 0; round < 20; round++) {
    const tq = rng.int(1, 300);
    const tk = rng.int(1, 300);
    const slices: SliceList = randomSlices(rng, tq, tk, { slices: rng.int(1, 9), allowSharedCells: round % 2 === 0 });
    const w = round % 3 === 2 ? buildWorkList(slices, tk, 64, 128) : buildWorkList(slices, tk);
    assert.deepEqual([w.tileQ, w.tileK], round % 3 === 2 ? [64, 128] : [TILE_Q, TILE_K]);
    const want = cellMultiplicity(slices, tq, tk);
    const fromQ = new Int32Array(tq * tk);
    const rowOwner = new Int32Array(tq).fill(-1);
    for (let tile = 0; tile < w.qTileStart.length; tile++) {
      assert.ok(w.qTileRows[tile] >= 1 && w.qTileRows[tile] <= w.tileQ);
      for (let r = w.qTileStart[tile]; r < w.qTileStart[tile] + w.qTileRows[tile]; r++) {
        assert.equal(rowOwner[r], -1, `row ${r} in two q tiles (seed ${seed})`);
        rowOwner[r] = tile;
      }
      for (let p = w.qTilePieces[tile]; p < w.qTilePieces[tile + 1]; p++) {
        for (let i = 0; i < w.qTileRows[tile]; i++) {
          const lo = w.lo[w.pieceRowOff[p] + i];
          const hi = w.hi[w.pieceRowOff[p] + i];
          if (hi <= lo) continue;
          assert.ok(lo >= w.pieceSpanLo[p] && hi <= w.pieceSpanHi[p]);
          for (let j = lo; j < hi; j++) fromQ[(w.qTileStart[tile] + i) * tk + j]++;
        }
      }
    }
    assert.deepEqual(fromQ, want, `forward items vs the mask (seed ${seed}, round ${round})`);
    // Backward: every (piece, k tile) pair whose cells are non-empty is listed once.
    const fromK = new Int32Array(tq * tk);
    const keyOwner = new Int32Array(tk).fill(-1);
    for (let kt = 0; kt < w.kTileStart.length; kt++) {
      const k0 = w.kTileStart[kt];
      const k1 = k0 + w.kTileCols[kt];
      assert.ok(w.kTileCols[kt] >= 1 && w.kTileCols[kt] <= w.tileK);
      for (let j = k0; j < k1; j++) {
        assert.equal(keyOwner[j], -1, `key ${j} in two k tiles (seed ${seed})`);
        keyOwner[j] = kt;
      }
      for (let x = w.kTilePieces[kt]; x < w.kTilePieces[kt + 1]; x++) {
        const p = w.kPieces[x];
        const tile = w.pieceTile[p];
        for (let i = 0; i < w.qTileRows[tile]; i++) {
          const lo = Math.max(w.lo[w.pieceRowOff[p] + i], k0);
          const hi = Math.min(w.hi[w.pieceRowOff[p] + i], k1);
          for (let j = lo; j < hi; j++) fromK[(w.qTileStart[tile] + i) * tk + j]++;
        }
      }
    }
    assert.deepEqual(fromK, want, `backward items vs the mask (seed ${seed}, round ${round})`);
  }
});

test('static assignment deals every item once, is a pure function of costs and thread count, and balances by cost', () => {
  const cost = Float64Array.from([5, 1, 1, 1, 1, 1, 9, 2, 2, 0]);
  for (const threads of [1, 2, 3, 4]) {
    const lists = assignStatic(cost, threads);
    assert.deepEqual(assignStatic(cost, threads), lists);
    assert.deepEqual(lists.flat().sort((a, b) => a - b), [...cost.keys()]);
    const loads = lists.map((l) => l.reduce((s, i) => s + cost[i], 0));
    assert.ok(Math.max(...loads) - Math.min(...loads) <= 9, `loads ${loads}`);
  }
  assert.deepEqual(assignStatic(cost, 2).map((l) => l.reduce((s, i) => s + cost[i], 0)), [12, 11]);
});

test('threads default to the cores on the main thread and to 1 inside a cp rank (a worker thread), so ranks do not oversubscribe; ranks load the same build', async () => {
  assert.ok(defaultThreadCount() >= 1);
  const { availableParallelism } = await import('node:os');
  assert.equal(defaultThreadCount(), availableParallelism());
  const inRanks = await spawnRanks<{ threads: number; simd: string | undefined }>(2, runnable('test/runtime-ranks/cpu-threads-rank'), null);
  const simd = wasmKernelInfo()?.simd;
  assert.deepEqual(inRanks, [
    { threads: 1, simd },
    { threads: 1, simd },
  ]);
});

test('createCpuBackend rejects bad options naming them', () => {
  const names = (argument: string) => (e: unknown) => e instanceof InvalidArgumentError && e.argument === argument;
  assert.throws(() => createCpuBackend({ threads: 0 }), names('threads'));
  assert.throws(() => createCpuBackend({ threads: 1.5 }), names('threads'));
  assert.throws(() => createCpuBackend({ engine: 'gpu' as 'auto' }), names('engine'));
  assert.throws(() => createCpuBackend({ thread: 2 } as never), names('thread'));
  assert.throws(() => createCpuBackend({ simd: 'avx' as 'auto' }), names('simd'));
  assert.throws(() => createCpuBackend({ engine: 'typescript', simd: 'simd' }), names('simd'));
});
