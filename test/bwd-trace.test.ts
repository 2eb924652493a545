/**
 * The Hopper backward's step trace (src/kernels/cuda/ffa-backward-trace.ts; no GPU needed): the
 * host's layout against the kernel's kTrace* constants and FFA_BWD_TRACE marks in
 * ffa_bwd_sm90.cu, and the statistics on a synthetic trace whose phases are known: per-phase
 * median and mean, the first steps left out, steps past a block's count and records never
 * written ignored, clocks that wrap at 2^32.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BWD_TRACE, BWD_TRACE_PHASES, BWD_TRACE_RECORD, BWD_TRACE_TIMELINE, BWD_TRACE_WORDS, bwdBlockTimeline, bwdTraceStats, decodeBwdTrace } from '../src/kernels/cuda/ffa-backward-trace.js';
import { InvalidArgumentError, ShapeError } from '../src/errors.js';
import { repoFile } from './util/paths.js';

const source = readFileSync(repoFile('src/kernels/cuda/ffa_bwd_sm90.cu'), 'utf8');

test('bwd trace: the host layout is the kernel one (kTrace* constants, the array, one mark per event in order)', () => {
  const constant = (name: string): number => {
    const m = new RegExp(`constexpr int ${name} = (\\d+);`).exec(source);
    assert.ok(m !== null, `${name} not found in ffa_bwd_sm90.cu`);
    return Number(m[1]);
  };
  assert.equal(constant('kTraceEvery'), BWD_TRACE.every);
  assert.equal(constant('kTraceBlocks'), BWD_TRACE.blocks);
  assert.equal(constant('kTraceSteps'), BWD_TRACE.steps);
  assert.equal(constant('kTraceEvents'), BWD_TRACE.events);
  assert.equal(constant('kTraceHeader'), BWD_TRACE.header);
  assert.equal(constant('kTraceGridMax'), BWD_TRACE.gridMax);
  assert.match(source, /constexpr int kTraceTimeline = kTraceBlocks \* 2 \* kTraceRecord;/);
  assert.equal(BWD_TRACE_TIMELINE, BWD_TRACE.blocks * 2 * BWD_TRACE_RECORD);
  assert.match(source, /__device__ unsigned ffa_bwd_trace\[ffa::sm90bwd::kTraceTimeline \+ 4 \* ffa::sm90bwd::kTraceGridMax\];/);
  assert.equal(BWD_TRACE_WORDS, BWD_TRACE_TIMELINE + 4 * BWD_TRACE.gridMax);
  const marks = [...source.matchAll(/FFA_BWD_TRACE\((\d+)\)/g)].map((m) => Number(m[1]));
  assert.deepEqual(marks, Array.from({ length: BWD_TRACE.events }, (_, e) => e), 'FFA_BWD_TRACE(0..events-1), each once, in source order');
  assert.equal(BWD_TRACE_PHASES.length, BWD_TRACE.events);
});

/** Writes one record: clocks advance by dur(s, e) cycles from `start` (mod 2^32). */
function writeRecord(words: Uint32Array, slot: number, wg: 0 | 1, block: number, nSteps: number, start: number, dur: (s: number, e: number) => number): void {
  const at = (2 * slot + wg) * BWD_TRACE_RECORD;
  let t = start;
  words[at] = block + 1;
  words[at + 1] = nSteps;
  words[at + 2] = start >>> 0;
  for (let s = 0; s < Math.min(nSteps, BWD_TRACE.steps); s++) {
    for (let e = 0; e < BWD_TRACE.events; e++) {
      t += dur(s, e);
      words[at + BWD_TRACE.header + s * BWD_TRACE.events + e] = t >>> 0;
    }
  }
  words[at + 3] = (t + 500) >>> 0;
}

/**
 * Block 0, warpgroup 0: 2,000 steps (256 recorded); phase e takes 10 (e + 1) cycles from step 2
 * on, phase 4 400 more on every 4th step; steps 0 and 1 take 100x (must be left out).
 * Block 64, warpgroup 1: 5 steps, phase e 20 (e + 1) cycles, clocks wrapping past 2^32, the
 * words past its 5 steps garbage. Every other record zero (blocks not sampled).
 */
function syntheticTrace(): Uint32Array {
  const words = new Uint32Array(BWD_TRACE_WORDS);
  writeRecord(words, 0, 0, 0, 2000, 1_000_000, (s, e) => (s < 2 ? 1000 * (e + 1) : 10 * (e + 1) + (e === 4 && s % 4 === 0 ? 400 : 0)));
  const at = (2 * 1 + 1) * BWD_TRACE_RECORD;
  words.fill(0xdeadbeef, at + BWD_TRACE.header + 5 * BWD_TRACE.events, at + BWD_TRACE_RECORD);
  // the clocks wrap within step 2 (1,000 cycles into its 1,820)
  writeRecord(words, 1, 1, 64, 5, 2 ** 32 - 2 * 13 * 7777 - 1000, (s, e) => (s < 2 ? 7777 : 20 * (e + 1)));
  return words;
}

test('bwd trace: decode keeps the written records only, with their recorded steps', () => {
  const recs = decodeBwdTrace(syntheticTrace());
  assert.deepEqual(
    recs.map((r) => [r.block, r.warpgroup, r.nSteps, r.clocks.length / BWD_TRACE.events]),
    [
      [0, 0, 2000, 256],
      [64, 1, 5, 5],
    ],
  );
  // kernel start to epilogue end, across the wrap for block 64
  assert.equal(recs[1].cycles, 2 * 7777 * BWD_TRACE.events + 3 * 20 * 91 + 500);
  assert.throws(() => decodeBwdTrace(new Uint32Array(BWD_TRACE_WORDS - 1)), ShapeError);
});

test('bwd trace: per-phase median, mean and share per warpgroup; first steps skipped, unsampled records ignored', () => {
  const [wg0, wg1] = bwdTraceStats(syntheticTrace());
  // warpgroup 0: steps 2..255 (254); phase 4 is 450 on the 63 steps s % 4 === 0 (4, 8, ..., 252)
  assert.equal(wg0.blocks, 1);
  assert.equal(wg0.steps, 254);
  const extra = (400 * 63) / 254;
  for (let e = 0; e < BWD_TRACE.events; e++) {
    const p = wg0.phases[e];
    assert.equal(p.phase, BWD_TRACE_PHASES[e]);
    assert.equal(p.median, 10 * (e + 1), `phase ${e} median`);
    assert.ok(Math.abs(p.mean - (10 * (e + 1) + (e === 4 ? extra : 0))) < 1e-9, `phase ${e} mean ${p.mean}`);
  }
  assert.equal(wg0.stepMedian, 910);
  assert.ok(Math.abs(wg0.stepMean - (910 + extra)) < 1e-9);
  assert.ok(Math.abs(wg0.phases.reduce((a, p) => a + p.share, 0) - 1) < 1e-12, 'shares sum to 1');
  assert.ok(Math.abs(wg0.phases[4].share - (50 + extra) / (910 + extra)) < 1e-12);
  // warpgroup 1: steps 2..4 of block 64 only, across the 2^32 wrap; the garbage after step 4 unread
  assert.equal(wg1.blocks, 1);
  assert.equal(wg1.steps, 3);
  assert.deepEqual(
    wg1.phases.map((p) => [p.median, p.mean]),
    Array.from({ length: BWD_TRACE.events }, (_, e) => [20 * (e + 1), 20 * (e + 1)]),
  );
  assert.equal(wg1.stepMedian, 1820);
  // after the 256 recorded steps of block 0: the 500 cycles to the epilogue's end over its 1,744 later steps; block 64 has none
  assert.ok(Math.abs(wg0.laterStepMean - 500 / 1744) < 1e-12, `${wg0.laterStepMean}`);
  assert.ok(Number.isNaN(wg1.laterStepMean));
  // skipping more steps: one fewer step each; skipFirst 0 would reach before the first step
  const [a, b] = bwdTraceStats(syntheticTrace(), 3);
  assert.equal(a.steps, 253);
  assert.equal(b.steps, 2);
  assert.throws(() => bwdTraceStats(syntheticTrace(), 0), InvalidArgumentError);
});

test('bwd trace: an empty trace gives no steps and NaN figures, not zeros', () => {
  const [wg0] = bwdTraceStats(new Uint32Array(BWD_TRACE_WORDS));
  assert.equal(wg0.blocks, 0);
  assert.equal(wg0.steps, 0);
  assert.ok(Number.isNaN(wg0.stepMedian) && Number.isNaN(wg0.phases[0].mean));
});

test('bwd trace: the block timeline per SM: busy time, the wait for the grid end, gaps between blocks, cycles per step by block length', () => {
  const words = new Uint32Array(BWD_TRACE_WORDS);
  const put = (b: number, sm: number, start: number, end: number, steps: number): void => {
    const at = BWD_TRACE_TIMELINE + 4 * b;
    words.set([sm + 1, start >>> 0, end >>> 0, steps], at);
  };
  // SM 0: blocks 0 (0..1000, 100 steps) and 2 (1000..2000, 100 steps): busy 2000 of 2000
  put(0, 0, 5000, 6000, 100);
  put(2, 0, 6000, 7000, 100);
  // SM 1 (its own clock, wrapping past 2^32): block 1 for 1200 cycles (10 steps), a 100-cycle gap, block 3 for 300 (10 steps): span 1600, busy 1500
  put(1, 1, 2 ** 32 - 600, 600, 10);
  put(3, 1, 700, 1000, 10);
  const t = bwdBlockTimeline(words);
  assert.equal(t.blocks, 4);
  assert.equal(t.sms, 2);
  assert.equal(t.spanMax, 2000);
  assert.equal(t.spanMean, 1800);
  assert.equal(t.busyMean, 1750);
  assert.ok(Math.abs(t.idleShare - (1 - 1750 / 2000)) < 1e-12);
  assert.ok(Math.abs(t.tailShare - (1 - 1800 / 2000)) < 1e-12);
  assert.ok(Math.abs(t.gapShare - (0 + 100 / 2000) / 2) < 1e-12);
  assert.deepEqual(t.bySteps, [
    { steps: '1-32', blocks: 2, cyclesPerStep: 1500 / 20 },
    { steps: '33-128', blocks: 2, cyclesPerStep: 2000 / 200 },
  ]);
  const none = bwdBlockTimeline(new Uint32Array(BWD_TRACE_WORDS));
  assert.equal(none.blocks, 0);
  assert.ok(Number.isNaN(none.idleShare));
  assert.throws(() => bwdBlockTimeline(new Uint32Array(10)), ShapeError);
});
