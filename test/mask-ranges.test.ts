import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AttnRangeError } from '../src/errors.js';
import { AttnRange } from '../src/mask/range.js';
import { AttnRanges } from '../src/mask/ranges.js';
import { Rng, freshSeed } from '../src/util/rng.js';

const Rs = (pairs: Array<[number, number]>): AttnRanges => AttnRanges.fromRanges(pairs);
const naive = (rs: AttnRanges): Array<[number, number]> => rs.toNaiveRanges();

test('fromRanges validates every pair and names its index; it copies AttnRanges input', () => {
  const rs = Rs([[0, 5], [7, 9]]);
  assert.equal(rs.size, 2);
  assert.equal(rs.length, 2);
  assert.throws(() => Rs([[0, 5], [9, 7]]), (e: unknown) => e instanceof AttnRangeError && e.argument === 'ranges[1]');
  assert.throws(() => AttnRanges.fromRanges([[-2, 1]], 'kRanges'), (e: unknown) => e instanceof AttnRangeError && e.argument === 'kRanges[0]');
  const copy = AttnRanges.fromRanges(rs);
  copy.append([10, 11]);
  assert.equal(rs.size, 2);
  assert.deepEqual(naive(AttnRanges.fromRanges([new AttnRange(1, 2), [3, 4]])), [[1, 2], [3, 4]]);
});

test('fromCuSeqlens builds one range per sample and rejects a bad start, non-increasing entries and a wrong total', () => {
  assert.deepEqual(naive(AttnRanges.fromCuSeqlens([0, 3, 7, 10], 10)), [[0, 3], [3, 7], [7, 10]]);
  assert.deepEqual(naive(AttnRanges.fromCuSeqlens([], 0)), []);
  assert.deepEqual(naive(AttnRanges.fromCuSeqlens(Int32Array.from([0, 4]), 4)), [[0, 4]]);
  assert.throws(() => AttnRanges.fromCuSeqlens([1, 3], 3), /must start at 0/);
  assert.throws(() => AttnRanges.fromCuSeqlens([0, 3, 3, 5], 5), /strictly increasing/);
  assert.throws(() => AttnRanges.fromCuSeqlens([0, 4, 2], 2), /strictly increasing/);
  assert.throws(() => AttnRanges.fromCuSeqlens([0, 3, 5], 6), /must end at seqLen = 6/);
  assert.throws(() => AttnRanges.fromCuSeqlens([0, 2.5], 2.5), AttnRangeError);
});

test('append, insert, extend and pop edit in place; pop and at reject bad indices; pop on empty throws', () => {
  const rs = new AttnRanges();
  rs.append([0, 2]);
  rs.extend([[5, 6], new AttnRange(8, 9)]);
  rs.insert(1, [3, 4]);
  assert.deepEqual(naive(rs), [[0, 2], [3, 4], [5, 6], [8, 9]]);
  assert.deepEqual(rs.pop().toNaiveRange(), [8, 9]);
  assert.deepEqual(rs.pop(0).toNaiveRange(), [0, 2]);
  assert.deepEqual(naive(rs), [[3, 4], [5, 6]]);
  assert.deepEqual(rs.at(-1).toNaiveRange(), [5, 6]);
  assert.throws(() => rs.at(2), AttnRangeError);
  assert.throws(() => rs.insert(5, [0, 1]), AttnRangeError);
  assert.throws(() => rs.append([3, 1]), AttnRangeError);
  rs.pop();
  rs.pop();
  assert.throws(() => rs.pop(), /empty/);
});

test('clone is independent of the original; iteration yields the ranges in order', () => {
  const rs = Rs([[4, 6], [0, 2]]);
  const c = rs.clone();
  c.append([9, 10]);
  assert.equal(rs.size, 2);
  assert.deepEqual([...rs].map((r) => r.toString()), ['[4, 6)', '[0, 2)']);
});

test('sort is stable by start only and returns a new list', () => {
  const rs = Rs([[5, 9], [0, 4], [5, 6], [0, 1]]);
  assert.deepEqual(naive(rs.sort()), [[0, 4], [0, 1], [5, 9], [5, 6]]);
  assert.deepEqual(naive(rs), [[5, 9], [0, 4], [5, 6], [0, 1]]);
});

test('merge fuses overlapping and tangent ranges; empty ranges are absorbed when reached, else survive', () => {
  assert.deepEqual(naive(Rs([[5, 10], [0, 3], [3, 5], [12, 14], [13, 20]]).merge()), [[0, 10], [12, 20]]);
  assert.deepEqual(naive(Rs([[0, 5], [7, 7], [9, 12]]).merge()), [[0, 5], [7, 7], [9, 12]]);
  assert.deepEqual(naive(Rs([[0, 5], [5, 5], [3, 3]]).merge()), [[0, 5]]);
  assert.deepEqual(naive(Rs([[7, 7], [7, 9]]).merge()), [[7, 9]]);
  assert.deepEqual(naive(new AttnRanges().merge()), []);
});

test('mergeWithSplitAlignment widens to multiples of the alignment before merging', () => {
  assert.deepEqual(naive(Rs([[1, 3], [5, 6], [9, 13]]).mergeWithSplitAlignment(4)), [[0, 16]]);
  assert.deepEqual(naive(Rs([[1, 3], [9, 13]]).mergeWithSplitAlignment(4)), [[0, 4], [8, 16]]);
  assert.deepEqual(naive(Rs([[1, 3], [3, 5]]).mergeWithSplitAlignment()), [[1, 5]]);
  assert.throws(() => Rs([[0, 1]]).mergeWithSplitAlignment(0), AttnRangeError);
});

test('chunk cuts in current order into groups of exactly c tokens, splitting ranges across groups (reference example)', () => {
  const groups = Rs([[0, 5], [10, 17], [20, 23]]).chunk(4);
  assert.deepEqual(groups.map(naive), [[[0, 4]], [[4, 5], [10, 13]], [[13, 17]], [[20, 23]]]);
  assert.deepEqual(Rs([[10, 12], [0, 3]]).chunk(2).map(naive), [[[10, 12]], [[0, 2]], [[2, 3]]]);
  assert.deepEqual(new AttnRanges().chunk(3), []);
});

test('chunk refuses overlapping ranges unless told not to check, and needs a positive size', () => {
  assert.throws(() => Rs([[0, 5], [3, 8]]).chunk(4), /non-overlapping/);
  assert.equal(Rs([[0, 5], [3, 8]]).chunk(4, false).length, 3);
  assert.throws(() => Rs([[0, 5]]).chunk(0), AttnRangeError);
});

test('truncate clips every range and drops emptied ones; clearEmpty drops empty ranges', () => {
  assert.deepEqual(naive(Rs([[0, 5], [7, 9], [10, 20]]).truncate(4, 12)), [[4, 5], [7, 9], [10, 12]]);
  assert.deepEqual(naive(Rs([[0, 5], [7, 9]]).truncate(5, 7)), []);
  assert.deepEqual(naive(Rs([[0, 0], [1, 3], [4, 4]]).clearEmpty()), [[1, 3]]);
});

test('isSorted, isMerged (tangent is not merged), isNonOverlap', () => {
  assert.equal(Rs([[0, 5], [3, 4]]).isSorted(), true);
  assert.equal(Rs([[3, 5], [0, 4]]).isSorted(), false);
  assert.equal(Rs([[0, 5], [6, 8]]).isMerged(), true);
  assert.equal(Rs([[0, 5], [5, 8]]).isMerged(), false);
  assert.equal(Rs([[6, 8], [0, 5]]).isMerged(), false);
  assert.equal(Rs([[6, 8], [0, 5], [5, 6]]).isNonOverlap(), true);
  assert.equal(Rs([[6, 8], [0, 7]]).isNonOverlap(), false);
  assert.equal(Rs([[0, 5], [3, 3]]).isNonOverlap(), true);
  assert.equal(new AttnRanges().isMerged(), true);
});

test('isCuSeqlens / toCuSeqlens: ranges tiling [0, n) in order; an empty list tiles only 0', () => {
  assert.equal(Rs([[0, 3], [3, 7]]).isCuSeqlens(7), true);
  assert.equal(Rs([[0, 3], [3, 3], [3, 7]]).isCuSeqlens(7), true);
  assert.equal(Rs([[3, 7], [0, 3]]).isCuSeqlens(7), false);
  assert.equal(Rs([[0, 3], [4, 7]]).isCuSeqlens(7), false);
  assert.equal(Rs([[0, 3]]).isCuSeqlens(4), false);
  assert.equal(new AttnRanges().isCuSeqlens(0), true);
  assert.equal(new AttnRanges().isCuSeqlens(1), false);
  assert.deepEqual(Rs([[0, 3], [3, 7]]).toCuSeqlens(7), [0, 3, 7]);
  assert.throws(() => Rs([[0, 3], [4, 7]]).toCuSeqlens(7), AttnRangeError);
});

test('totalSeqlen counts duplicates, maxSeqlen, start/end (throw on empty), points are sorted unique endpoints', () => {
  const rs = Rs([[5, 10], [0, 4], [5, 10], [20, 21]]);
  assert.equal(rs.totalSeqlen, 15);
  assert.equal(rs.maxSeqlen, 5);
  assert.equal(rs.start, 0);
  assert.equal(rs.end, 21);
  assert.deepEqual(rs.points, [0, 4, 5, 10, 20, 21]);
  assert.equal(new AttnRanges().maxSeqlen, 0);
  assert.throws(() => new AttnRanges().start, /empty/);
  assert.throws(() => new AttnRanges().end, /empty/);
});

test('intersectSize counts positions covered more than once, once per extra cover: [(0,10),(5,15),(8,12)] gives 9', () => {
  assert.equal(Rs([[0, 10], [5, 15], [8, 12]]).intersectSize(), 9);
  assert.equal(Rs([[0, 5], [5, 10]]).intersectSize(), 0);
  assert.equal(Rs([[0, 10], [0, 10]]).intersectSize(), 10);
});

test('findOverlapRanges is the merged set intersection', () => {
  const a = Rs([[0, 10], [15, 20], [20, 30]]);
  const b = Rs([[5, 12], [18, 26], [29, 40]]);
  assert.deepEqual(naive(a.findOverlapRanges(b)), [[5, 10], [18, 26], [29, 30]]);
  assert.deepEqual(naive(a.findOverlapRanges(new AttnRanges())), []);
  assert.deepEqual(naive(Rs([[0, 5], [6, 10]]).findOverlapRanges(Rs([[0, 10]]))), [[0, 5], [6, 10]]);
});

test('findHoleRanges is the merged set difference and leaves both inputs unchanged (reference example)', () => {
  const a = Rs([[0, 10], [15, 20], [20, 30]]);
  const b = Rs([[5, 10], [25, 30]]);
  assert.deepEqual(naive(a.findHoleRanges(b)), [[0, 5], [15, 25]]);
  assert.deepEqual(naive(a), [[0, 10], [15, 20], [20, 30]]);
  assert.deepEqual(naive(b), [[5, 10], [25, 30]]);
  const merged = a.merge();
  assert.deepEqual(naive(merged.findHoleRanges(b.merge(), { selfMerged: true, otherMerged: true })), [[0, 5], [15, 25]]);
  assert.deepEqual(naive(merged), [[0, 10], [15, 30]]);
  assert.deepEqual(naive(Rs([[0, 10]]).findHoleRanges(Rs([[2, 3], [5, 6], [9, 12]]))), [[0, 2], [3, 5], [6, 9]]);
});

test('makeRangesLocal packs the merged ranges end to end: [[5,10),[25,30),[15,20)] maps to [0,5),[10,15),[5,10)', () => {
  const globalRanges = Rs([[5, 10], [25, 30], [15, 20]]);
  assert.deepEqual(naive(globalRanges.makeRangesLocal(globalRanges)), [[0, 5], [10, 15], [5, 10]]);
  assert.deepEqual(naive(globalRanges.makeRangesLocal([[6, 8], [26, 26], [15, 20]])), [[1, 3], [11, 11], [5, 10]]);
  const { localRange, mergedRange } = globalRanges.makeRangeLocal([17, 19]);
  assert.deepEqual(localRange.toNaiveRange(), [7, 9]);
  assert.deepEqual(mergedRange.toNaiveRange(), [15, 20]);
  // Tangent ranges merge, so a range may span them.
  assert.deepEqual(Rs([[0, 4], [4, 8]]).makeRangeLocal([2, 6]).localRange.toNaiveRange(), [2, 6]);
});

test('makeRangeLocal rejects a range outside every range, straddling a gap, or spanning two merged ranges', () => {
  const globalRanges = Rs([[5, 10], [15, 20]]);
  for (const bad of [[0, 3], [8, 12], [11, 12], [8, 17], [19, 21], [21, 22]] as Array<[number, number]>) {
    assert.throws(() => globalRanges.makeRangeLocal(bad, 'kRange'), (e: unknown) => e instanceof AttnRangeError && e.argument === 'kRange', `${bad}`);
  }
  assert.throws(() => globalRanges.makeRangesLocal([[5, 6], [9, 16]]), (e: unknown) => e instanceof AttnRangeError && e.argument === 'ranges[1]');
});

test('the local index is rebuilt after a mutation', () => {
  const globalRanges = Rs([[10, 20]]);
  assert.deepEqual(globalRanges.makeRangeLocal([12, 14]).localRange.toNaiveRange(), [2, 4]);
  globalRanges.insert(0, [0, 5]);
  assert.deepEqual(globalRanges.makeRangeLocal([12, 14]).localRange.toNaiveRange(), [7, 9]);
  globalRanges.pop(0);
  assert.deepEqual(globalRanges.makeRangeLocal([12, 14]).localRange.toNaiveRange(), [2, 4]);
});

test('equals is order-sensitive; toString lists the ranges', () => {
  assert.ok(Rs([[0, 1], [2, 3]]).equals(Rs([[0, 1], [2, 3]])));
  assert.ok(!Rs([[0, 1], [2, 3]]).equals(Rs([[2, 3], [0, 1]])));
  assert.ok(!Rs([[0, 1]]).equals(Rs([[0, 1], [2, 3]])));
  assert.equal(Rs([[0, 1], [2, 3]]).toString(), '[[0, 1), [2, 3)]');
  assert.equal(new AttnRanges().toString(), '[]');
});

// ---- random cases against a position-set model ----

function randomRanges(rng: Rng, maxCount: number, span: number): AttnRanges {
  const n = rng.int(0, maxCount);
  const out: Array<[number, number]> = [];
  for (let i = 0; i < n; i++) {
    const s = rng.int(0, span);
    out.push([s, Math.min(span, s + rng.int(0, 8))]);
  }
  return Rs(out);
}

function coverage(rs: AttnRanges, span: number): Int32Array {
  const c = new Int32Array(span + 1);
  for (const r of rs) for (let x = r.start; x < r.end; x++) c[x]++;
  return c;
}

function setOf(c: Int32Array, pred: (x: number) => boolean): string {
  return Array.from(c.keys()).filter(pred).join(',');
}

test('merge, findOverlapRanges, findHoleRanges, intersectSize and makeRangesLocal agree with a position-set model on random lists', () => {
  const seed = freshSeed();
  const rng = new Rng(seed);
  const span = 60;
  for (let trial = 0; trial < 500; trial++) {
    const msg = `seed ${seed}, trial ${trial}`;
    const a = randomRanges(rng, 8, span);
    const b = randomRanges(rng, 8, span);
    const ca = coverage(a, span);
    const cb = coverage(b, span);
    const merged = a.merge();
    assert.ok(merged.clearEmpty().isMerged(), msg);
    assert.equal(setOf(coverage(merged, span), (x) => coverage(merged, span)[x] > 0), setOf(ca, (x) => ca[x] > 0), msg);
    const overlap = a.findOverlapRanges(b);
    assert.ok(overlap.isMerged(), msg);
    assert.equal(setOf(coverage(overlap, span), (x) => coverage(overlap, span)[x] > 0), setOf(ca, (x) => ca[x] > 0 && cb[x] > 0), msg);
    const hole = a.findHoleRanges(b);
    assert.ok(hole.isMerged(), msg);
    assert.equal(setOf(coverage(hole, span), (x) => coverage(hole, span)[x] > 0), setOf(ca, (x) => ca[x] > 0 && cb[x] === 0), msg);
    assert.equal(a.intersectSize(), Array.from(ca).reduce((s, v) => s + Math.max(0, v - 1), 0), msg);
    // Local position of x = number of covered positions before x.
    const localOf = (x: number): number => Array.from(ca.subarray(0, x)).filter((v) => v > 0).length;
    const local = a.makeRangesLocal(a);
    [...a].forEach((r, i) => assert.deepEqual(local.at(i).toNaiveRange(), [localOf(r.start), localOf(r.start) + r.seqlen], msg));
  }
});

test('set operations on 20,000 ranges (run on the flat range algebra)', () => {
  const n = 20000;
  const a = Rs(Array.from({ length: n }, (_, i) => [i * 10, i * 10 + 6] as [number, number]).reverse());
  const b = Rs(Array.from({ length: n }, (_, i) => [i * 10 + 3, i * 10 + 9] as [number, number]));
  assert.equal(a.findOverlapRanges(b).totalSeqlen, 3 * n);
  assert.equal(a.findHoleRanges(b).totalSeqlen, 3 * n);
  assert.equal(a.merge().size, n);
  assert.equal(a.makeRangesLocal(b.truncate(0, 10 * n).toNaiveRanges().map(([s]) => [s, s + 2] as [number, number])).size, n);
});
