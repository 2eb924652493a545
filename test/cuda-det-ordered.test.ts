/**
 * The host side of the Hopper backward's ordered deterministic schedule (no GPU needed):
 * planOrderedBackward's work records (with the kernel's record size), tile counters and ranks,
 * the walk rule's choice (heads inner or outer per group of tiles), and a simulation of the
 * kernel's turn-taking with a bounded number of resident blocks dispatched in blockIdx order, for
 * both walks. Bit reproducibility rests on "every row's real dQ contributions go through one
 * counter, in launch order"; freedom from deadlock on "an item waits only for items launched
 * before it", whichever order an item visits its (tile, head) pairs in.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { planFfaBackward } from '../src/kernels/cuda/ffa-backward.js';
import {
  ORDERED_RECORD, WALK_HEADS_INNER, WALK_HEADS_OUTER, orderedLaunchItems, orderedLaunches, orderedWalkHeadsOuter, planOrderedBackward, type OrderedBackwardPlan, type OrderedWalk,
} from '../src/kernels/cuda/ffa-backward-ordered.js';
import { Rng } from '../src/util/rng.js';
import { blockCausalMask, causalMask, fullMask, makeSliceList, slidingWindowMask, varlenCausalMask, varlenFullMask, type SliceList } from '../src/mask/index.js';
import { repoFile } from './util/paths.js';

const BM = 64;
const BN = 128;

function randomSlices(rng: Rng, tokensQ: number, tokensK: number, n: number): SliceList {
  const qr: Array<[number, number]> = [];
  const kr: Array<[number, number]> = [];
  const types: number[] = [];
  for (let i = 0; i < n; i++) {
    const qs = Math.floor(rng.next() * tokensQ * 0.9);
    const ks = Math.floor(rng.next() * tokensK * 0.8);
    qr.push([qs, Math.min(tokensQ, qs + 1 + Math.floor(rng.next() * tokensQ * 0.5))]);
    kr.push([ks, Math.min(tokensK, ks + 1 + Math.floor(rng.next() * tokensK * 0.6))]);
    types.push(Math.floor(rng.next() * 4));
  }
  return makeSliceList(qr, kr, Uint8Array.from(types));
}

interface Step {
  item: number; // position in launch order
  lock: number;
  rank: number;
  rows: [number, number]; // the tile's rows
}

/** Each item's tiles (the steps of one q head, in walk order). */
function stepsOf(ord: OrderedBackwardPlan): Step[][] {
  const out: Step[][] = [];
  for (let at = 0; at < ord.work.length / ORDERED_RECORD; at++) {
    const [, , , , mFirst, lockFirst, rankOff, signed] = ord.work.subarray(ORDERED_RECORD * at, ORDERED_RECORD * (at + 1));
    const dir = signed < 0 ? -1 : 1;
    const steps: Step[] = [];
    for (let k = 0; k < Math.abs(signed); k++) {
      const m0 = mFirst + dir * BM * k;
      steps.push({ item: at, lock: lockFirst + dir * k, rank: ord.ranks[rankOff + k], rows: [m0, m0 + BM] });
    }
    out.push(steps);
  }
  return out;
}

/** An item's walk (the record's last field): whether its q heads are outer. */
const headsOuter = (ord: OrderedBackwardPlan, at: number): boolean => {
  const walk = ord.work[ORDERED_RECORD * at + 8];
  assert.ok(walk === WALK_HEADS_INNER || walk === WALK_HEADS_OUTER, `item ${at}: walk ${walk}`);
  return walk === WALK_HEADS_OUTER;
};

/** The kernel's step s of an item of `tiles` tiles with `group` q heads per kv head: [tile index, head], as StepWalk walks it. */
const stepAt = (s: number, tiles: number, group: number, outer: boolean): [number, number] => (outer ? [s % tiles, Math.floor(s / tiles)] : [Math.floor(s / group), s % group]);

/**
 * Checks every invariant the kernel relies on, for the rule's walk and both forced ones (the
 * same records but for the walk field, which is the forced one, or under the rule alike for all
 * items of a tile group); returns the rule's plan.
 */
function checkOrdered(slices: SliceList, tokensQ: number, tokensK: number): OrderedBackwardPlan {
  const plan = planFfaBackward(slices, tokensQ, tokensK, BN, BM);
  const ord = planOrderedBackward(plan, slices, BN, BM);
  const n = plan.numWork;
  assert.equal(ord.work.length, ORDERED_RECORD * n);
  for (const walk of ['inner', 'outer'] as const) {
    const forced = planOrderedBackward(plan, slices, BN, BM, walk);
    for (let at = 0; at < n; at++) {
      const rec = (o: OrderedBackwardPlan): number[] => Array.from(o.work.subarray(ORDERED_RECORD * at, ORDERED_RECORD * at + 8));
      assert.deepEqual(rec(forced), rec(ord), `item ${at}: the walk changes only the walk field`);
      assert.equal(headsOuter(forced, at), walk === 'outer');
    }
    assert.deepEqual([forced.ranks, forced.groups, forced.fromZero, forced.numLocks], [ord.ranks, ord.groups, ord.fromZero, ord.numLocks]);
  }
  // the same items (slice, n0, qLo, qHi), each once
  const key = (a: ArrayLike<number>, o: number): string => `${a[o]},${a[o + 1]},${a[o + 2]},${a[o + 3]}`;
  const want = Array.from({ length: n }, (_, i) => key(plan.work, 4 * i)).sort();
  const got = Array.from({ length: n }, (_, i) => key(ord.work, ORDERED_RECORD * i)).sort();
  assert.deepEqual(got, want);
  // groups: consecutive, covering every item, no two items of one group on the same keys
  let next = 0;
  for (let g = 0; g < ord.groups.length; g += 2) {
    assert.equal(ord.groups[g], next);
    assert.ok(ord.groups[g + 1] > 0);
    const members: Array<[number, number]> = [];
    for (let at = next; at < next + ord.groups[g + 1]; at++) {
      const b = ord.work[ORDERED_RECORD * at];
      const n0 = ord.work[ORDERED_RECORD * at + 1];
      const iv: [number, number] = [n0, Math.min(n0 + BN, slices.kRanges[2 * b + 1])];
      for (const m of members) assert.ok(iv[1] <= m[0] || m[1] <= iv[0], `group ${g / 2}: items share keys [${iv}] / [${m}]`);
      members.push(iv);
    }
    next += ord.groups[g + 1];
  }
  assert.equal(next, n);
  // launches: dk / dv get one fp32 atomic add per item, so a key row's adds within one launch
  // land in any order. They give the same bits only if the row gets at most one add in the launch,
  // or exactly two onto a row no earlier launch added to (0 + a + b = a + b = b + a; a third add,
  // or two onto an earlier launch's sum s, (s + a) + b vs (s + b) + a, need not agree)
  for (const pairs of [false, true]) {
    const launches = orderedLaunches(ord, pairs);
    const before = new Int32Array(tokensK);
    for (let l = 0, at = 0; l < launches.length; l += 2) {
      assert.equal(launches[l], at);
      assert.ok(launches[l + 1] > 0);
      const depth = new Int32Array(tokensK);
      for (let i = at; i < at + launches[l + 1]; i++) {
        const b = ord.work[ORDERED_RECORD * i];
        const n0 = ord.work[ORDERED_RECORD * i + 1];
        for (let key = n0; key < Math.min(n0 + BN, slices.kRanges[2 * b + 1]); key++) depth[key]++;
      }
      for (let key = 0; key < tokensK; key++) {
        const ok = depth[key] <= 1 || (pairs && depth[key] === 2 && before[key] === 0);
        assert.ok(ok, `${pairs ? 'from zero' : 'onto an accumulator'}, launch ${l / 2}: key ${key} gets ${depth[key]} adds onto ${before[key]} earlier ones`);
        before[key] += depth[key];
      }
      at += launches[l + 1];
      if (l + 2 === launches.length) assert.equal(at, n);
    }
  }
  // onto an accumulator: one launch per key-disjoint group
  assert.deepEqual(orderedLaunches(ord, false), ord.groups);

  const steps = stepsOf(ord);
  // the rule's walk: one per group of tiles (items whose counters meet share a group)
  const walkOfLock = new Map<number, boolean>();
  for (let at = 0; at < n; at++)
    for (const x of steps[at]) {
      assert.equal(walkOfLock.get(x.lock) ?? headsOuter(ord, at), headsOuter(ord, at), `counter ${x.lock}: items of both walks`);
      walkOfLock.set(x.lock, headsOuter(ord, at));
    }
  const lockRows = new Map<number, string>();
  const rowLock = new Map<number, number>();
  const ranksOf = new Map<number, number[]>();
  for (let at = 0; at < n; at++) {
    const [b, , qLo, qHi] = ord.work.subarray(ORDERED_RECORD * at, ORDERED_RECORD * at + 4);
    const s = steps[at];
    // the tiles are consecutive, start at or above row 0, each meets [qLo, qHi), together cover it
    const lo = Math.min(...s.map((x) => x.rows[0]));
    const hi = Math.max(...s.map((x) => x.rows[1]));
    assert.ok(lo >= 0 && lo <= qLo && hi >= qHi && qLo - lo < BM && hi - qHi < BM, `item ${at}: tiles [${lo}, ${hi}) for rows [${qLo}, ${qHi})`);
    // walk direction: top down except inverse-causal slices
    if (s.length > 1) assert.equal(s[1].rows[0] > s[0].rows[0], slices.maskTypes[b] === 2);
    for (const x of s) {
      assert.ok(x.lock >= 0 && x.lock < ord.numLocks);
      // one counter, one tile
      const r = `${x.rows}`;
      assert.equal(lockRows.get(x.lock) ?? r, r, `counter ${x.lock} on two tiles`);
      lockRows.set(x.lock, r);
      // every real row of the item goes through one counter, whichever item adds it
      for (let row = Math.max(qLo, x.rows[0]); row < Math.min(qHi, x.rows[1]); row++) {
        assert.equal(rowLock.get(row) ?? x.lock, x.lock, `row ${row} under two counters`);
        rowLock.set(row, x.lock);
      }
      if (!ranksOf.has(x.lock)) ranksOf.set(x.lock, []);
      ranksOf.get(x.lock)!.push(x.rank);
    }
  }
  // ranks per counter: 0, 1, 2, ... in launch order
  for (const [lock, r] of ranksOf) assert.deepEqual(r, r.map((_, i) => i), `counter ${lock}`);
  return ord;
}

/**
 * The kernel's turn-taking with `resident` blocks at a time, dispatched in blockIdx order (the
 * split order of split_item_head: the first round(kvMajorShare x items) items of each launch kv-head
 * major, the rest item major; `heads` kv heads x `group` q heads; counters per q head), launches
 * one after another. A
 * block advances one step when its tile's counter equals its rank. Returns the number of rounds
 * and of waits (a resident block's round without a step); throws on a round without progress (a
 * deadlock).
 */
function simulate(ord: OrderedBackwardPlan, heads: number, group: number, resident: number, kvMajorShare = 0): { rounds: number; waits: number } {
  const steps = stepsOf(ord);
  const counters = new Int32Array(ord.numLocks * heads * group);
  const launches = orderedLaunches(ord, true);
  let rounds = 0;
  let waits = 0;
  for (let g = 0; g < launches.length; g += 2) {
    const blocks: Array<{ item: number; hk: number; s: number }> = [];
    const first = launches[g];
    const kvMajor = Math.round(kvMajorShare * launches[g + 1]);
    for (let hk = 0; hk < heads; hk++) for (let at = first; at < first + kvMajor; at++) blocks.push({ item: at, hk, s: 0 });
    for (let at = first + kvMajor; at < first + launches[g + 1]; at++) for (let hk = 0; hk < heads; hk++) blocks.push({ item: at, hk, s: 0 });
    let admitted = 0;
    const live: typeof blocks = [];
    while (admitted < blocks.length || live.length > 0) {
      while (live.length < resident && admitted < blocks.length) live.push(blocks[admitted++]);
      let progress = false;
      for (let i = 0; i < live.length; i++) {
        const b = live[i];
        const list = steps[b.item];
        const total = list.length * group;
        // StepWalk: the heads inner, step s = (tile s / group, head s % group), or outer
        const [k, hh] = stepAt(b.s, list.length, group, headsOuter(ord, b.item));
        const st = list[k];
        const h = b.hk * group + hh;
        const c = h * ord.numLocks + st.lock;
        if (counters[c] === st.rank) {
          counters[c]++;
          b.s++;
          progress = true;
          if (b.s === total) live.splice(i--, 1);
        } else {
          waits++;
        }
      }
      rounds++;
      assert.ok(progress, `deadlock in launch ${g / 2} after ${rounds} rounds`);
    }
  }
  return { rounds, waits };
}

test('planOrderedBackward: full 2048 is one launch; each 64-row tile takes the 16 k tiles in launch order', () => {
  const ord = checkOrdered(fullMask(2048), 2048, 2048);
  assert.deepEqual(Array.from(ord.groups), [0, 16]);
  assert.equal(ord.numLocks, 32);
  for (let at = 0; at < 16; at++) {
    const rec = ord.work.subarray(ORDERED_RECORD * at, ORDERED_RECORD * (at + 1));
    // top down from rows [1984, 2048): tile 31, 32 tiles, each this item's rank = its position
    assert.deepEqual([rec[4], rec[5], rec[7]], [1984, 31, -32]);
    assert.ok(Array.from(ord.ranks.subarray(rec[6], rec[6] + 32)).every((r) => r === at));
  }
});

test('planOrderedBackward: causal, varlen, sliding window, block-causal, overlapping and random masks keep every invariant', () => {
  const causal = checkOrdered(causalMask(1500), 1500, 1500);
  assert.equal(causal.groups.length, 2);
  assert.deepEqual(orderedLaunches(causal, true), causal.groups);
  // varlen causal: each document its own tiles from its first row, one launch
  const varlen = checkOrdered(varlenCausalMask([0, 300, 700, 737, 1024]), 1024, 1024);
  assert.equal(varlen.groups.length, 2);
  assert.equal(varlen.numLocks, 5 + 7 + 1 + 5);
  assert.deepEqual(orderedLaunches(varlen, true), varlen.groups);
  // the causal slice of the window shares keys with the band: two key-disjoint groups, one launch
  const sw = checkOrdered(slidingWindowMask(1500, [200, 0]), 1500, 1500);
  assert.equal(sw.groups.length, 4);
  assert.equal(orderedLaunches(sw, true).length, 2);
  checkOrdered(blockCausalMask([0, 1000, 1536], 200), 1536, 1536);
  // the H200's failing option case (block-causal 2 docs [600, 400], blocks of 150: four slices on
  // the first document's first keys, so four key-disjoint groups, which the pairing put two per
  // launch, the second pair adding twice onto the first's sums): three launches
  const bc = checkOrdered(blockCausalMask([0, 600, 1000], 150), 1000, 1000);
  assert.equal(bc.groups.length, 2 * 4);
  assert.equal(orderedLaunches(bc, true).length, 2 * 3);
  checkOrdered(
    makeSliceList(
      [[0, 1024], [256, 1024], [0, 700], [900, 1024]],
      [[0, 512], [512, 1024], [1024, 1400], [1450, 1500]],
      ['full', 'causal', 'inv_causal', 'bi_causal'],
    ),
    1100,
    1500,
  );
  const rng = new Rng(11);
  for (let trial = 0; trial < 30; trial++) {
    const tq = 64 + Math.floor(rng.next() * 1500);
    const tk = 64 + Math.floor(rng.next() * 1500);
    checkOrdered(randomSlices(rng, tq, tk, 1 + Math.floor(rng.next() * 12)), tq, tk);
  }
  // random block-causal masks (documents and blocks of any length) and nested overlapping q ranges
  for (let trial = 0; trial < 30; trial++) {
    const docs = [0];
    for (let d = 1 + Math.floor(rng.next() * 3); d > 0; d--) docs.push(docs[docs.length - 1] + 1 + Math.floor(rng.next() * 900));
    const total = docs[docs.length - 1];
    checkOrdered(blockCausalMask(docs, 1 + Math.floor(rng.next() * 400)), total, total);
    const n = 2 + Math.floor(rng.next() * 12);
    const t = 128 + Math.floor(rng.next() * 1200);
    const qr: Array<[number, number]> = [];
    const kr: Array<[number, number]> = [];
    for (let i = 0; i < n; i++) {
      const q0 = Math.floor((i * t) / (2 * n));
      qr.push([q0, q0 + Math.floor(t / 2)]);
      kr.push([0, t]);
    }
    checkOrdered(makeSliceList(qr, kr, Uint8Array.from({ length: n }, () => Math.floor(rng.next() * 4))), t, t);
  }
});

test('planOrderedBackward: the turn-taking completes with few resident blocks under either walk and any block split, and causal blocks wait about a step per predecessor with the heads inner', () => {
  // causal 2048 (16 items of 32..2 tiles), 2 kv heads x 4 q heads, 5 blocks resident
  const plan = planFfaBackward(causalMask(2048), 2048, 2048, BN, BM);
  const causal = planOrderedBackward(plan, causalMask(2048), BN, BM);
  const inner = simulate(causal, 2, 4, 5);
  // kv-major blocks: the waits chain over one kv head's items, still about a step each
  const kvMajor = simulate(causal, 2, 4, 5, 1);
  assert.ok(kvMajor.rounds < 1.5 * ((causal.ranks.length * 2 * 4) / 5), `kv-major: ${kvMajor.rounds} rounds`);
  // one resident wave runs in lockstep: far below the sum of all steps (serial order)
  const total = (causal.ranks.length * 2 * 4) / 5;
  assert.ok(inner.rounds < 1.5 * total, `${inner.rounds} rounds for ${total} steps per resident block`);
  // the heads outer: each item, 2 tiles shorter than the one before, waits for it at every change
  // of head (why the rule keeps causal items heads inner)
  const outer = simulate(planOrderedBackward(plan, causalMask(2048), BN, BM, 'outer'), 2, 4, 5);
  // (here 80 block-rounds without a step against none)
  assert.ok(outer.waits >= 40 && 4 * inner.waits < outer.waits, `heads outer: ${outer.waits} waits, inner ${inner.waits}`);
  const rng = new Rng(5);
  for (let trial = 0; trial < 15; trial++) {
    const tq = 64 + Math.floor(rng.next() * 1200);
    const tk = 64 + Math.floor(rng.next() * 1200);
    const slices = randomSlices(rng, tq, tk, 1 + Math.floor(rng.next() * 10));
    const heads = 1 + Math.floor(rng.next() * 3);
    const group = 1 + Math.floor(rng.next() * 3);
    const resident = 1 + Math.floor(rng.next() * 6);
    const kvMajorShare = [0, 0.5, 1][trial % 3]; // item-major, split, kv-major blocks
    for (const walk of ['rule', 'inner', 'outer'] as const satisfies readonly OrderedWalk[]) simulate(planOrderedBackward(planFfaBackward(slices, tq, tk, BN, BM), slices, BN, BM, walk), heads, group, resident, kvMajorShare);
  }
});

test('ordered work record: the kernel reads ORDERED_RECORD ints per item of the split order, the walk from the last one', () => {
  const source = readFileSync(repoFile('src/kernels/cuda/ffa_bwd_sm90.cu'), 'utf8');
  const size = /constexpr int kOrderedRecord = (\d+);/.exec(source);
  assert.ok(size !== null, 'kOrderedRecord not found in ffa_bwd_sm90.cu');
  assert.equal(Number(size[1]), ORDERED_RECORD);
  // each block's item and kv head in the split order (the default's, which simulate() follows)
  assert.match(source, /split_item_head\(headsKv, kvMajorItems, item, w\.hk\);\s+const int\* rec = work \+ kOrderedRecord \* item;/);
  const walk = /o\.outer = rec\[(\d+)\] != 0;/.exec(source);
  assert.ok(walk !== null, 'the walk field read not found in ffa_bwd_sm90.cu');
  assert.equal(Number(walk[1]), ORDERED_RECORD - 1);
  assert.deepEqual([WALK_HEADS_INNER, WALK_HEADS_OUTER], [0, 1]);
  // the record of an item: [slice, n0, qLo, qHi, first row, first counter, rank offset, ±tiles, walk]
  const sw = planOrderedBackward(planFfaBackward(slidingWindowMask(1024, [128, 0]), 1024, 1024, BN, BM), slidingWindowMask(1024, [128, 0]), BN, BM);
  const band = Array.from({ length: sw.work.length / ORDERED_RECORD }, (_, at) => Array.from(sw.work.subarray(ORDERED_RECORD * at, ORDERED_RECORD * (at + 1)))).find((r) => r[1] === 256);
  // the band slice (1) [128, 1024) x [0, 1024), key tile [256, 384): rows [256, 512), walked from
  // the top down: its group's tiles 5..2 (rows from 128; the group's counters follow the causal
  // head's 2), heads outer (the band's items are shifted copies)
  assert.deepEqual(band, [1, 256, 256, 512, 128 + 5 * 64, 2 + 5, band![6], -4, WALK_HEADS_OUTER]);
});

test('orderedWalkHeadsOuter: shifted items of one length go heads outer; items aligned at one end, or alone, heads inner', () => {
  const items = (list: Array<[number, number, number]>) => list.map(([first, dir, tiles]) => ({ first, dir, tiles }));
  // the sliding window's band: each item 2 tiles above the one before (walked down), 18 tiles
  assert.equal(orderedWalkHeadsOuter(items([[17, -1, 18], [19, -1, 18], [21, -1, 18]])), true);
  // causal: every item from the top tile down, each 2 tiles shorter: Δd 0, Δn 2
  assert.equal(orderedWalkHeadsOuter(items([[31, -1, 32], [31, -1, 30], [31, -1, 28]])), false);
  // full: the same tiles (a tie keeps the heads inner), one item, or items on disjoint tiles
  assert.equal(orderedWalkHeadsOuter(items([[31, -1, 32], [31, -1, 32]])), false);
  assert.equal(orderedWalkHeadsOuter(items([[31, -1, 32]])), false);
  assert.equal(orderedWalkHeadsOuter(items([[5, -1, 6], [11, -1, 6], [17, -1, 6]])), false);
  // inverse-causal items walked up from a shared bottom, lengths 2 apart: heads inner; the band's
  // first items (shifted 2 and 2 tiles longer each): 2 Σ|Δd| = 8 > Σ|Δn| = 4, heads outer
  assert.equal(orderedWalkHeadsOuter(items([[0, 1, 20], [0, 1, 18]])), false);
  assert.equal(orderedWalkHeadsOuter(items([[1, -1, 2], [3, -1, 4], [5, -1, 6]])), true);
  // shifted by one tile but 3 tiles shorter each: 2 · 1 < 3, heads inner
  assert.equal(orderedWalkHeadsOuter(items([[20, -1, 21], [21, -1, 18]])), false);
  // the shared tile is the earlier item's nearest to the later one's first: an item walked up
  // from inside the one before (Δd = |4 - 0| - |4 - 4| = 4 against Δn = 2)
  assert.equal(orderedWalkHeadsOuter(items([[10, -1, 11], [4, 1, 13]])), true);
});

test('planOrderedBackward: the walk rule on 16k masks: the sliding window band heads outer, its causal head and causal, full, varlen and block-causal heads inner', () => {
  const S = 16384;
  const walks = (slices: SliceList): Map<number, Set<boolean>> => {
    const ord = planOrderedBackward(planFfaBackward(slices, S, S, BN, BM), slices, BN, BM);
    const bySlice = new Map<number, Set<boolean>>();
    for (let at = 0; at < ord.work.length / ORDERED_RECORD; at++) {
      const b = ord.work[ORDERED_RECORD * at];
      if (!bySlice.has(b)) bySlice.set(b, new Set());
      bySlice.get(b)!.add(headsOuter(ord, at));
    }
    return bySlice;
  };
  // slice 0: the causal head [0, 1024); slice 1: the band [1024, S), every one of its 128 items heads outer
  const sw = walks(slidingWindowMask(S, [1024, 0]));
  assert.deepEqual([...sw.entries()].sort(), [[0, new Set([false])], [1, new Set([true])]]);
  const docs = [0, 1064, 1414, 4486, 7558, 7908, 12004, S];
  for (const [name, slices] of [['full', fullMask(S)], ['causal', causalMask(S)], ['varlen full', varlenFullMask(docs)], ['varlen causal', varlenCausalMask(docs)], ['varlen block-causal', blockCausalMask(docs, 2048)]] as const)
    for (const [b, w] of walks(slices)) assert.deepEqual(w, new Set([false]), `${name}, slice ${b}`);
});

test('orderedLaunchItems: a launch of the ordered plan as the block-order rule reads it, each item its walked tiles', () => {
  const slices = makeSliceList([[0, 1000], [0, 1000]], [[0, 600], [400, 1000]], ['causal', 'full']);
  const ord = planOrderedBackward(planFfaBackward(slices, 1000, 1000, BN, BM), slices, BN, BM);
  const launches = orderedLaunches(ord, false);
  assert.ok(launches.length >= 2);
  for (let g = 0; g < launches.length; g += 2) {
    const items = orderedLaunchItems(ord, launches[g], launches[g + 1], BM);
    assert.equal(items.numWork, launches[g + 1]);
    for (let i = 0; i < items.numWork; i++) {
      const rec = ord.work.subarray(ORDERED_RECORD * (launches[g] + i), ORDERED_RECORD * (launches[g] + i + 1));
      assert.deepEqual(Array.from(items.work.subarray(4 * i, 4 * i + 4)), [rec[0], rec[1], 0, Math.abs(rec[7]) * BM]);
      assert.ok(Math.abs(rec[7]) >= Math.ceil((rec[3] - rec[2]) / BM), 'at least the tiles of its q range');
    }
  }
});
