/**
 * The timing model of the ordered deterministic backward (bench/kernel/ordered-model.ts): its
 * replay on hand-made schedules whose times can be worked out by hand, its refusal of a rank
 * order that would make the kernel wait on a later block, its L2 waits, and the replay of the real
 * planners' schedules (the turn-taking adds no time where every wait has slack).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { l2Waits, maskSchedules, reuseGaps, simulateSchedule, type BlockWalk, type ModelParams, type ModelSchedule } from '../bench/kernel/ordered-model.js';
import { causalMask, fullMask, slidingWindowMask } from '../src/mask/index.js';
import { ORDERED_RECORD, WALK_HEADS_OUTER } from '../src/kernels/cuda/ffa-backward-ordered.js';

const P: ModelParams = { sms: 1, step: 1, addRead: 0.25, addDone: 0.5, poll: 0.25, blockStart: 0, blockEnd: 0, l2Bytes: 0, stepBytes: 1, missCost: 0 };

/** A block of `steps` steps on q tile `tile` (ordered: counter `tile`, the given ranks). */
function block(item: number, steps: number, tile: number, ranks: number[] | null): BlockWalk {
  return {
    item,
    hk: 0,
    tiles: new Int32Array(steps).fill(tile),
    locks: ranks === null ? null : new Int32Array(steps).fill(tile),
    ranks: ranks === null ? null : Int32Array.from(ranks),
  };
}

test('ordered model: blocks queue for free SMs in dispatch order, launches one after another', () => {
  const s: ModelSchedule = { ordered: false, launches: [[block(0, 3, 0, null), block(1, 2, 0, null)], [block(2, 1, 0, null)]], counters: 0, qTiles: 1 };
  // one SM: 3 + 2 steps, then the next launch's 1; each block ends at its last step + blockEnd (the dQ thread's last add reads at + 0.25 earlier than that)
  const r = simulateSchedule(s, { ...P, blockEnd: 0.5 });
  assert.deepEqual(
    r.blocks.map((b) => [b.start, b.end]),
    [
      [0, 3.5],
      [3.5, 6],
      [6, 7.5],
    ],
  );
  assert.equal(r.time, 7.5);
  // two SMs: the first two run side by side, the second launch waits for the longer
  const two = simulateSchedule(s, { ...P, sms: 2 });
  assert.deepEqual(
    two.blocks.map((b) => b.start),
    [0, 0, 3.25],
  );
});

test('ordered model: a turn waits for the release of the rank before, poll later, and the dQ thread serializes its adds', () => {
  // two blocks on one tile, side by side: block 1's three adds come after block 0's
  const s: ModelSchedule = { ordered: true, launches: [[block(0, 3, 0, [0, 1, 2]), block(1, 3, 0, [3, 4, 5])]], counters: 1, qTiles: 1 };
  const r = simulateSchedule(s, { ...P, sms: 2 });
  // block 0: stages at 1, 2, 3 and adds at once (its own ranks follow each other): released 1.5, 2.5, 3.5
  assert.equal(r.blocks[0].end, 3.5);
  assert.equal(r.blocks[0].waited, 0);
  // block 1: its first turn is block 0's last release + poll = 3.75 (staged at 1: waits 2.75);
  // then each turn is its own release + poll: adds at 4.5 and 5.25 (0.25 more waiting each)
  assert.equal(r.blocks[1].waited, 2.75 + 0.25 + 0.25);
  assert.equal(r.blocks[1].end, 5.25 + 0.5);
  // a dQ thread slower than the consumers paces the block: one block on four tiles (four
  // counters, each at its first rank), addDone 2 > step: issues at 1, 3, 5, 7 (the consumers
  // stage at most one step ahead of the reads), the last add complete at 9
  const four: BlockWalk = { item: 0, hk: 0, tiles: Int32Array.from([0, 1, 2, 3]), locks: Int32Array.from([0, 1, 2, 3]), ranks: new Int32Array(4) };
  const slow = simulateSchedule({ ordered: true, launches: [[four]], counters: 4, qTiles: 4 }, { ...P, addDone: 2 });
  assert.equal(slow.time, 1 + 4 * 2);
});

test('ordered model: a rank that is not next on its counter throws (the kernel would wait on a later block)', () => {
  const s: ModelSchedule = { ordered: true, launches: [[block(0, 1, 0, [1]), block(1, 1, 0, [0])]], counters: 1, qTiles: 1 };
  assert.throws(() => simulateSchedule(s, P), /rank 1 on counter 0, which is at 0/);
});

test('ordered model: L2 waits: a tile touched within the window is there, a fetch makes the steps that ask meanwhile wait for it', () => {
  const s: ModelSchedule = { ordered: false, launches: [[block(0, 1, 0, null), block(1, 1, 0, null), block(2, 1, 0, null), block(3, 1, 0, null)]], counters: 0, qTiles: 1 };
  // starts: 0 (fetch, ready at 2), 1 (waits 1), 2.5 (within the window of 3: no wait), 10 (past it: fetch)
  const w = l2Waits(s, Float64Array.from([0, 1, 2.5, 10]), 3, 2);
  assert.deepEqual(Array.from(w), [2, 1, 0, 2]);
});

test('ordered model: the real plans replay; where every wait has slack the ordered launch takes the default time', () => {
  const shape = { tokensQ: 2048, tokensK: 2048, headsQ: 8, headsKv: 2 };
  const p: ModelParams = { ...P, sms: 8, addDone: 0.25, poll: 0.1 };
  // full: every item walks the same 32 tiles from the top, each about one add behind the one before
  const full = maskSchedules(fullMask(2048), shape);
  const fd = simulateSchedule(full.default, p);
  const fo = simulateSchedule(full.ordered, p);
  assert.ok(fo.waited > 0, 'the items of a wave take turns');
  assert.ok(fo.time / fd.time < 1.01, `full: ordered ${fo.time} vs default ${fd.time}`);
  // the sliding window's band walked with the heads inner: each item reaches a tile 2 tiles x 4
  // heads after the one before; with the heads outer (the walk rule's choice for the band, which
  // the model replays from the records) and in the default (heads outer too), 2 steps
  const median = (g: Float64Array): number => g[Math.floor(g.length / 2)];
  const swMask = slidingWindowMask(2048, [512, 0]);
  const inner = maskSchedules(swMask, shape, 'inner');
  assert.equal(median(reuseGaps(inner.ordered, simulateSchedule(inner.ordered, p), p.step)), 8);
  const sw = maskSchedules(swMask, shape);
  assert.equal(median(reuseGaps(sw.ordered, simulateSchedule(sw.ordered, p), p.step)), 2);
  const sd = simulateSchedule(sw.default, p);
  const dg = reuseGaps(sw.default, sd, p.step);
  assert.ok(median(dg) <= 4, 'the default walks the heads outer: the item after comes a few steps later');
  // a heads-outer block's steps: q head hh's tiles in turn (tile of step hh · n + k is head hh's k-th)
  const outerBlock = sw.ordered.launches.flat().find((b) => {
    const rec = sw.plan.work.subarray(ORDERED_RECORD * b.item, ORDERED_RECORD * (b.item + 1));
    return rec[8] === WALK_HEADS_OUTER && Math.abs(rec[7]) > 1;
  })!;
  const n = outerBlock.tiles.length / 4;
  const T = 2048 / 64;
  assert.deepEqual(
    Array.from(outerBlock.tiles).map((t) => Math.floor(t / T) - outerBlock.hk * 4),
    Array.from({ length: 4 * n }, (_, s) => Math.floor(s / n)),
  );
  // causal: nothing throws, the L2 model replays too
  const causal = maskSchedules(causalMask(2048), shape);
  const r = simulateSchedule(causal.ordered, { ...p, l2Bytes: 4 * 8, stepBytes: 1, missCost: 0.5 });
  assert.ok(r.missRate > 0 && r.missRate < 1);
});
