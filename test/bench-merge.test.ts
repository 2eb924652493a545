/**
 * bench/kernel/merge.ts: kernel-benchmark runs over disjoint sequence lengths become one result
 * (the lengths, masks and rows of each, in length order, each run's env kept), and runs that do
 * not belong together are refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeKernelResults } from '../bench/kernel/merge.js';
import type { KernelBenchResult, ResultRow } from '../bench/kernel/run.js';

const settings = { headsQ: 64, headsKv: 8, dim: 128, dtype: 'bfloat16', seed: 42, iters: 20, warmup: 5, settleS: 2 };
function run(seqlens: number[], wall: number, gpu = 'NVIDIA H200'): KernelBenchResult {
  const rows: ResultRow[] = seqlens.flatMap((S) =>
    (['ours', 'flex'] as const).map((method) => ({ mask: 'full' as const, seqlen: S, area: S * S, method, fwd_ms: S / 1000, fwd_tflops: 500, bwd_ms: S / 400, bwd_tflops: 450 })),
  );
  return {
    gpu,
    env: { torch: '2.11.0', total_wall_s: wall, wall_s_by_seqlen: Object.fromEntries(seqlens.map((s) => [s, wall / seqlens.length])) },
    settings: { ...settings, seqlens },
    masks: seqlens.map((S) => ({ name: 'full' as const, seqlen: S, area: S * S, slices: 1, docs: 1, window: null, block: null })),
    results: rows,
  };
}

test('mergeKernelResults: the lengths, masks and rows of every run, in length order, each run env kept', () => {
  const b = run([32768, 65536], 210);
  const a = run([4096, 16384], 196);
  const m = mergeKernelResults([b, a]);
  assert.deepEqual(m.settings, { ...settings, seqlens: [4096, 16384, 32768, 65536] });
  assert.deepEqual(m.masks.map((x) => x.seqlen), [4096, 16384, 32768, 65536]);
  assert.deepEqual(m.results.map((r) => `${r.seqlen} ${r.method}`), ['4096 ours', '4096 flex', '16384 ours', '16384 flex', '32768 ours', '32768 flex', '65536 ours', '65536 flex']);
  assert.equal(m.gpu, 'NVIDIA H200');
  assert.equal(m.env.torch, '2.11.0');
  assert.equal(m.env.total_wall_s, undefined, "one run's wall time is not the merged result's");
  assert.deepEqual(m.env.runs, [{ seqlens: [32768, 65536], env: b.env }, { seqlens: [4096, 16384], env: a.env }]);
});

test('mergeKernelResults refuses one run, overlapping lengths, other settings or another GPU', () => {
  const a = run([4096, 8192], 1);
  assert.throws(() => mergeKernelResults([a]), /two or more/);
  assert.throws(() => mergeKernelResults([a, run([8192, 16384], 1)]), /8192 is in more than one run/);
  assert.throws(() => mergeKernelResults([a, { ...run([16384], 1), settings: { ...settings, iters: 10, seqlens: [16384] } }]), /settings/);
  assert.throws(() => mergeKernelResults([a, run([16384], 1, 'NVIDIA H100')]), /is on NVIDIA H100/);
});
