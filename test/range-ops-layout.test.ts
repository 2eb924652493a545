/**
 * The host side of the GPU range kernels (src/kernels/cuda/range-ops.ts), no GPU needed: range
 * validation, the gather's output prefix and the reduce's segment layout, the latter checked
 * against a row-by-row model of what each destination row receives, in order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../src/errors.js';
import { flattenRowRanges, planGatherLayout, planReduceLayout, type ReduceLayout } from '../src/kernels/cuda/range-ops.js';
import { Rng } from '../src/util/rng.js';

function invalid(argument: string): (e: unknown) => boolean {
  return (e: unknown) => e instanceof InvalidArgumentError && e.argument === argument;
}

test('range lists: pairs and flat Int32Array, each range checked against the rows', () => {
  assert.deepEqual(Array.from(flattenRowRanges([[0, 2], [3, 3]], 3)), [0, 2, 3, 3]);
  assert.deepEqual(Array.from(flattenRowRanges(Int32Array.of(1, 2), 2)), [1, 2]);
  assert.throws(() => flattenRowRanges(Int32Array.of(1, 2, 3), 5), invalid('ranges'));
  assert.throws(() => flattenRowRanges([[0, 2], [4, 3]], 5), invalid('ranges[1]'));
  assert.throws(() => flattenRowRanges([[0, 6]], 5), invalid('ranges[0]'));
  assert.throws(() => flattenRowRanges([[-1, 2]], 5), invalid('ranges[0]'));
  assert.throws(() => flattenRowRanges([[0.5, 2]], 5), invalid('ranges[0]'));
  assert.throws(() => flattenRowRanges(Int32Array.of(-2, 1), 5), invalid('ranges[0]'));
  assert.throws(() => flattenRowRanges('0:3' as unknown as [number, number][], 5), invalid('ranges'));
});

test('gather layout: exclusive prefix of range lengths, empty ranges take no rows', () => {
  const g = planGatherLayout([[2, 5], [5, 5], [0, 1], [4, 6]], 6);
  assert.deepEqual(Array.from(g.prefix), [0, 3, 3, 4, 6]);
  assert.equal(g.totalRows, 6);
  assert.equal(g.numRanges, 4);
  const empty = planGatherLayout([], 0);
  assert.deepEqual(Array.from(empty.prefix), [0]);
  assert.equal(empty.totalRows, 0);
  assert.throws(() => planGatherLayout([[0, 1]], -1), invalid('inputRows'));
});

/** What the layout says each destination row receives: source rows in order, by destination row. */
function expand(layout: ReduceLayout): Map<number, number[]> {
  const got = new Map<number, number[]>();
  for (let j = 0; j < layout.numSegments; j++) {
    const len = layout.prefix[j + 1] - layout.prefix[j];
    assert.ok(len > 0, 'segments are non-empty');
    if (j > 0) assert.ok(layout.dst[j] >= layout.dst[j - 1] + (layout.prefix[j] - layout.prefix[j - 1]), 'segments ascend and do not overlap');
    for (let r = 0; r < len; r++) {
      const list: number[] = [];
      for (let k = layout.contribPrefix[j]; k < layout.contribPrefix[j + 1]; k++) list.push(layout.contribSrc[k] + r);
      got.set(layout.dst[j] + r, list);
    }
  }
  return got;
}

function model(src: Array<[number, number]>, dstStarts: number[]): Map<number, number[]> {
  const want = new Map<number, number[]>();
  src.forEach(([s, e], i) => {
    for (let r = 0; r < e - s; r++) {
      const d = dstStarts[i] + r;
      const list = want.get(d) ?? [];
      list.push(s + r);
      want.set(d, list);
    }
  });
  return want;
}

test('reduce layout: a small case by hand', () => {
  // dst rows 2..5 get range 0; rows 4..6 also get range 2; range 1 is empty.
  const layout = planReduceLayout([[0, 4], [4, 4], [10, 13]], [2, 8, 4], 13, 8);
  assert.deepEqual(Array.from(layout.dst), [2, 4, 6]);
  assert.deepEqual(Array.from(layout.prefix), [0, 2, 4, 5]);
  assert.deepEqual(Array.from(layout.contribPrefix), [0, 1, 3, 4]);
  assert.deepEqual(Array.from(layout.contribSrc), [0, 2, 10, 12]);
  assert.equal(layout.totalRows, 5);
});

test('reduce layout: every destination row receives exactly its ranges, in the order listed (random)', () => {
  const rng = new Rng(1234);
  const below = (n: number): number => rng.int(0, n - 1);
  for (let trial = 0; trial < 200; trial++) {
    const srcRows = 1 + below(60);
    const dstRows = 1 + below(40);
    const n = below(12);
    const src: Array<[number, number]> = [];
    const dst: number[] = [];
    for (let i = 0; i < n; i++) {
      const len = below(Math.min(srcRows, dstRows, 8) + 1);
      const s = below(srcRows - len + 1);
      src.push([s, s + len]);
      dst.push(below(dstRows - len + 1));
    }
    const layout = planReduceLayout(src, dst, srcRows, dstRows);
    const want = model(src, dst);
    assert.deepEqual(expand(layout), want, `trial ${trial}`);
    assert.equal(layout.totalRows, want.size);
  }
});

test('reduce layout: bad arguments name the culprit', () => {
  assert.throws(() => planReduceLayout([[0, 2]], [0, 1], 4, 4), invalid('dstStarts'));
  assert.throws(() => planReduceLayout([[0, 2]], [3], 4, 4), invalid('dstStarts[0]'));
  assert.throws(() => planReduceLayout([[0, 2]], [-1], 4, 4), invalid('dstStarts[0]'));
  assert.throws(() => planReduceLayout([[0, 5]], [0], 4, 8), invalid('srcRanges[0]'));
  assert.throws(() => planReduceLayout([[0, 1]], [0], 4, 1.5), invalid('dstRows'));
  assert.doesNotThrow(() => planReduceLayout([[4, 4]], [4], 4, 4));
  const none = planReduceLayout([], [], 0, 0);
  assert.equal(none.numSegments, 0);
  assert.deepEqual(Array.from(none.prefix), [0]);
});
