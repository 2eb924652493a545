import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { causalMask, varlenCausalMask } from '../src/mask/helpers.js';
import { planDistAttn, planStats, BENCH_HEAD_SHAPE } from '../src/solver/index.js';
import {
  KernelThroughput,
  LINK_PRESETS,
  kernelShapeOf,
  parseLink,
  planMemory,
  predictPlan,
  predictRun,
  stageTokens,
  trafficMatrix,
  transferSeconds,
  type KernelBenchJSON,
} from '../src/cost/index.js';
import { runCli } from '../src/cli/program.js';
import { defaultKernelJson, loadThroughput } from '../src/cli/cost-model.js';

/** A benchmark file with round numbers: every shape 100 TFLOP/s forward at 4k, 200 at 16k; backward half that. */
function syntheticBench(): KernelBenchJSON {
  const shapes = ['full', 'causal', 'varlen_full', 'varlen_causal', 'sw_causal', 'varlen_block_causal'];
  return {
    gpu: 'test GPU',
    results: shapes.flatMap((mask) => [
      { mask, seqlen: 4096, method: 'ours', fwd_tflops: 100, bwd_tflops: 50 },
      { mask, seqlen: 16384, method: 'ours', fwd_tflops: 200, bwd_tflops: 100 },
      { mask, seqlen: 4096, method: 'cudnn', fwd_tflops: 999, bwd_tflops: 999 },
    ]),
  };
}

test('kernel throughput is read from the benchmark file: measured points exact, log-linear between, held outside', () => {
  const t = new KernelThroughput(syntheticBench());
  assert.equal(t.tflops('causal', 'fwd', 4096), 100);
  assert.equal(t.tflops('causal', 'fwd', 16384), 200);
  assert.equal(t.tflops('causal', 'fwd', 8192), 150); // halfway in log2
  assert.equal(t.tflops('causal', 'bwd', 1024), 50);
  assert.equal(t.tflops('causal', 'bwd', 1 << 24), 100);
  // 1e9 cells forward, 48 heads, D 128: 4·1e9·48·128 FLOPs at 100 TFLOP/s.
  assert.equal(t.seconds('full', 'fwd', 4096, 1e9, 48, 128), (4 * 1e9 * 48 * 128) / 100e12);
  assert.throws(() => new KernelThroughput({ gpu: 'x', results: [] }), /must have a fwd measurement/);

  const real = loadThroughput(defaultKernelJson());
  const file = JSON.parse(readFileSync(defaultKernelJson(), 'utf8')) as KernelBenchJSON;
  const row = file.results.find((r) => r.method === 'ours' && r.mask === 'varlen_causal' && r.seqlen === 16384);
  assert.ok(row !== undefined);
  assert.equal(real.tflops('varlen_causal', 'fwd', 16384), row.fwd_tflops);
  assert.equal(real.gpu, file.gpu);
});

test('the kernel shape of a mask: the preset names theirs, other masks by their slices', () => {
  assert.equal(kernelShapeOf(causalMask(100), 'block-causal'), 'varlen_block_causal');
  assert.equal(kernelShapeOf(causalMask(100)), 'causal');
  assert.equal(kernelShapeOf(varlenCausalMask([0, 10, 100])), 'varlen_causal');
});

test('link presets: intra-node and inter-node traffic run at once, sending and receiving too', () => {
  const l = LINK_PRESETS['nvlink-ib'];
  assert.equal(l.intraNodeBytesPerSecond, 450e9);
  assert.equal(l.interNodeBytesPerSecond, 50e9);
  assert.equal(transferSeconds(l, { intraSend: 450e9, intraRecv: 0, interSend: 0, interRecv: 25e9 }), 1);
  assert.equal(transferSeconds(l, { intraSend: 0, intraRecv: 0, interSend: 0, interRecv: 100e9 }), 2);
  assert.equal(parseLink('100').intraNodeBytesPerSecond, 100e9);
  assert.throws(() => parseLink('warp-drive'), /link: must be one of/);
});

test('the traffic matrix and per-stage tokens are the GroupCast arguments, summed', () => {
  const plan = planDistAttn({ mask: varlenCausalMask([0, 3000, 5000, 8192]), totalSeqlenQ: 8192, cpSize: 4, overlapConfig: { degree: 2 } });
  const stats = planStats(plan);
  const m = trafficMatrix(plan);
  for (let r = 0; r < 4; r++) {
    let col = 0;
    let row = 0;
    for (let s = 0; s < 4; s++) {
      col += m[s * 4 + r];
      row += m[r * 4 + s];
    }
    assert.equal(col, stats.recvTokensPerRank[r]);
    assert.equal(row, stats.sendTokensPerRank[r]);
    assert.equal(m[r * 4 + r], 0);
  }
  // Nodes of 2 GPUs: ranks 0-1 and 2-3 share a node.
  const tokens = stageTokens(plan, { ...LINK_PRESETS['nvlink-ib'], gpusPerNode: 2 });
  for (let r = 0; r < 4; r++) {
    const peer = r ^ 1;
    const intraRecv = tokens.reduce((a, st) => a + st[r].intraRecv, 0);
    assert.equal(intraRecv, m[peer * 4 + r]);
    assert.equal(intraRecv + tokens.reduce((a, st) => a + st[r].interRecv, 0), stats.recvTokensPerRank[r]);
  }
});

test('the timeline follows the runtime schedule: host with fetch 0, stage i after its fetch, backward reduces after compute', () => {
  const plan = planDistAttn({ mask: causalMask(8192), totalSeqlenQ: 8192, cpSize: 2, overlapConfig: { degree: 2 } });
  const link = parseLink('1'); // 1 GB/s: communication dominates, so waits show
  const model = { throughput: new KernelThroughput(syntheticBench()), shape: 'causal' as const, link, heads: BENCH_HEAD_SHAPE };
  const p = predictPlan(plan, model);
  const kvBytes = 2 * 8 * 128 * 2;
  const f = p.forward;
  assert.equal(f.collectives.length, 2);
  assert.equal(f.collectives[0].start, 0);
  for (const [s, c] of f.collectives.entries()) {
    const most = Math.max(...plan.perRank.map((r) => {
      const gc = r.stages[s].groupCast;
      const sent = gc.inputSplitSizes.reduce((a, n, i) => a + n * gc.dstIndices[i].length, 0);
      return Math.max(sent, r.stages[s].stageBufferLength);
    }));
    assert.ok(Math.abs(c.end - c.start - (most * kvBytes) / 1e9) < 1e-12, `fetch ${s} lasts as long as its busiest rank`);
  }
  for (let r = 0; r < 2; r++) {
    const host = model.throughput.seconds('causal', 'fwd', plan.dispatch.shardSeqlen, plan.perRank[r].hostArea, 48, 128);
    assert.equal(f.computeEnd[0][r], host);
    // Stage 0 starts when both its data and the host stage are done; fetch 1 starts once every rank took stage 0.
    assert.equal(f.computeStart[1][r], Math.max(host, f.collectives[0].end));
    assert.equal(f.collectives[1].start, Math.max(f.collectives[0].end, ...[0, 1].map((x) => f.computeStart[1][x])));
    assert.equal(f.computeStart[2][r], Math.max(f.computeEnd[1][r], f.collectives[1].end));
  }
  assert.equal(f.stepSeconds, Math.max(...f.endSeconds));
  assert.ok(Math.abs(f.exposedCommSeconds - (f.stepSeconds - Math.max(...f.computeSeconds))) < 1e-15);
  assert.ok(f.exposedCommSeconds > 0);
  const b = p.backward;
  assert.deepEqual(b.collectives.map((c) => c.kind), ['fetch', 'fetch', 'reduce', 'reduce']);
  // Reduces carry float32 dk/dv: twice the bytes of the bf16 fetch.
  assert.ok(Math.abs(b.collectives[2].end - b.collectives[2].start - 2 * (f.collectives[0].end - f.collectives[0].start)) < 1e-12);
  assert.equal(b.collectives[2].start, Math.max(b.collectives[1].end, ...b.computeEnd[1]));
  assert.equal(b.stepSeconds, b.collectives[3].end);

  const run = predictRun(plan, model);
  assert.deepEqual(run.methods.map((m) => m.method), ['magi-attention', 'ring (zig-zag)', 'ulysses']);
  assert.equal(run.methods[0].forwardSeconds, f.stepSeconds);
});

test('memory per rank counts the shard, the largest pair of stage buffers and the float32 accumulators', () => {
  const plan = planDistAttn({ mask: causalMask(4096), totalSeqlenQ: 4096, cpSize: 2, overlapConfig: { degree: 2 } });
  const h = { numHeadsQ: 4, numHeadsKv: 2, headDim: 8, bytesPerElement: 2 };
  const mem = planMemory(plan, h);
  const n = plan.dispatch.shardSeqlen;
  for (const [r, m] of mem.entries()) {
    const len = plan.perRank[r].stages.map((s) => s.stageBufferLength);
    assert.equal(m.activations, n * (2 * 4 * 8 + 2 * 2 * 8) * 2 + n * 4 * 4);
    assert.equal(m.stageBuffers, (len[0] + len[1]) * 2 * 2 * 8 * 2);
    assert.equal(m.backwardAccumulators, (n * (4 * 8 + 2 * 2 * 8) + (len[0] + len[1]) * 2 * 2 * 8) * 4);
    assert.equal(m.peak, m.activations + m.stageBuffers + Math.max(m.forwardAccumulators, m.backwardAccumulators));
  }
});

test('magi-attn simulate prints the three methods per (mask, cp) and writes JSON and an SVG plot', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'simulate-'));
  let text = '';
  const argv = ['simulate', '--mask', 'varlen-causal,full', '--seqlen', '65536', '--cp', '8,16', '--json', join(dir, 's.json'), '--plot', join(dir, 's.svg')];
  const code = await runCli(argv, { out: (t) => (text += t), err: (t) => (text += t) });
  assert.equal(code, 0);
  assert.match(text, /kernel throughput: NVIDIA/);
  const json = JSON.parse(readFileSync(join(dir, 's.json'), 'utf8')) as { rows: Array<{ mask: string; cp: number; method: string; forwardMs: number; planMs?: number }> };
  assert.equal(json.rows.length, 2 * 2 * 3);
  assert.deepEqual([...new Set(json.rows.map((r) => r.method))], ['magi-attention', 'ring (zig-zag)', 'ulysses']);
  assert.ok(json.rows.every((r) => r.forwardMs > 0));
  const svg = readFileSync(join(dir, 's.svg'), 'utf8');
  assert.match(svg, /^<\?xml[^]*<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /varlen-causal/);
  let err = '';
  assert.equal(await runCli(['simulate', '--cp', '8,0'], { out: () => {}, err: (t) => (err += t) }), 2);
  assert.match(err, /--cp/);
  assert.equal(await runCli(['simulate', '--link', 'warp', '--cp', '8', '--seqlen', '4096'], { out: () => {}, err: (t) => (err += t) }), 2);
  assert.match(err, /link: must be one of/);
});
