/**
 * The shared median (src/util/stats.ts): the upper median, element ⌊n / 2⌋ of the sorted values,
 * which every timer and bench reports; NaN for no samples; the caller's array left as it was.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { median } from '../src/util/stats.js';
import { median as publicMedian } from '../src/index.js';

test('median of an odd count is the middle value of the sorted samples', () => {
  assert.equal(median([7]), 7);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([9, 1, 5, 3, 7]), 5);
});

test('median of an even count is the upper of the two middle values, never their mean', () => {
  assert.equal(median([1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 3);
  assert.equal(median([10, 40, 20, 30, 60, 50]), 40);
});

test('median sorts numerically, not as strings', () => {
  // Array.prototype.sort without a comparator would order these 10, 100, 9 and pick 100.
  assert.equal(median([100, 9, 10]), 10);
});

test('median of negative and mixed-sign samples', () => {
  assert.equal(median([-1, -5, -3]), -3);
  assert.equal(median([-2, 3, -7, 0]), 0);
  assert.equal(median([-0.5, -1.5]), -0.5);
});

test('median of no samples is NaN', () => {
  assert.ok(Number.isNaN(median([])));
});

test('median leaves its input unsorted and unchanged', () => {
  const xs = [5, 3, 9, 1, 7, 2];
  const before = [...xs];
  assert.equal(median(xs), 5);
  assert.deepEqual(xs, before);
  const frozen = Object.freeze([4, 2, 8]);
  assert.equal(median(frozen), 4);
});

test('the package exports the same median', () => {
  assert.equal(publicMedian, median);
});
