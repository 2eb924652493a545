import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AttnRangeError } from '../src/errors.js';
import { AttnRange } from '../src/mask/range.js';

const R = (s: number, e: number): AttnRange => new AttnRange(s, e);
const naive = (rs: AttnRange[]): Array<[number, number]> => rs.map((r) => r.toNaiveRange());

test('a range has start, end and seqlen; an empty range is legal', () => {
  const r = R(3, 8);
  assert.equal(r.start, 3);
  assert.equal(r.end, 8);
  assert.equal(r.seqlen, 5);
  assert.equal(R(4, 4).seqlen, 0);
  assert.equal(R(4, 4).isEmpty(), true);
  assert.equal(r.isEmpty(), false);
});

test('end < start, negative positions and non-integers are rejected with an AttnRangeError naming the argument and the rule', () => {
  assert.throws(() => R(5, 3), (e: unknown) => e instanceof AttnRangeError && /end must be >= start/.test(e.message));
  assert.throws(() => R(-1, 3), (e: unknown) => e instanceof AttnRangeError && /start must be >= 0/.test(e.message));
  assert.throws(() => R(0.5, 3), (e: unknown) => e instanceof AttnRangeError && /integers/.test(e.message));
  assert.throws(() => R(0, Infinity), AttnRangeError);
  assert.throws(() => R(0, NaN), AttnRangeError);
  assert.throws(() => new AttnRange(2, 1, 'qRange'), (e: unknown) => e instanceof AttnRangeError && e.argument === 'qRange');
  assert.throws(() => AttnRange.fromRange([1, 2, 3] as unknown as [number, number], 'kRange'), (e: unknown) => e instanceof AttnRangeError && e.argument === 'kRange');
});

test('fromRange copies pairs and ranges into a new object; toNaiveRange and clone round-trip', () => {
  const a = R(2, 9);
  const b = AttnRange.fromRange(a);
  assert.notEqual(b, a);
  assert.ok(b.equals(a));
  assert.deepEqual(AttnRange.fromRange([1, 4]).toNaiveRange(), [1, 4]);
  assert.ok(a.clone().equals(a));
  assert.notEqual(a.clone(), a);
});

test('offset shifts both ends and refuses to go below 0', () => {
  assert.deepEqual(R(2, 5).offset(10).toNaiveRange(), [12, 15]);
  assert.deepEqual(R(2, 5).offset(-2).toNaiveRange(), [0, 3]);
  assert.throws(() => R(2, 5).offset(-3), AttnRangeError);
});

test('truncate clips to [lo, hi); an emptied range sits at max(start, lo)', () => {
  assert.deepEqual(R(2, 10).truncate(4, 7).toNaiveRange(), [4, 7]);
  assert.deepEqual(R(2, 10).truncate(undefined, 7).toNaiveRange(), [2, 7]);
  assert.deepEqual(R(2, 10).truncate(4).toNaiveRange(), [4, 10]);
  assert.deepEqual(R(2, 10).truncate(12, 20).toNaiveRange(), [12, 12]);
  assert.deepEqual(R(5, 10).truncate(0, 3).toNaiveRange(), [5, 5]);
});

test('intersect of disjoint ranges is the empty range at min(ends), as in the reference', () => {
  assert.deepEqual(R(0, 10).intersect(R(5, 15)).toNaiveRange(), [5, 10]);
  assert.deepEqual(R(0, 5).intersect(R(8, 12)).toNaiveRange(), [5, 5]);
  assert.deepEqual(R(8, 12).intersect(R(0, 5)).toNaiveRange(), [5, 5]);
  assert.deepEqual(R(0, 5).intersect(R(5, 9)).toNaiveRange(), [5, 5]);
  assert.equal(R(0, 10).intersectSize(R(5, 15)), 5);
  assert.equal(R(0, 5).intersectSize(R(8, 12)), 0);
  assert.equal(R(2, 4).intersectSize(R(0, 10)), 2);
});

test('union: container, hull of strictly overlapping ranges, tangent and disjoint ranges stay apart, empty ranges are kept', () => {
  assert.deepEqual(naive(R(0, 10).union(R(2, 5))), [[0, 10]]);
  assert.deepEqual(naive(R(2, 5).union(R(0, 10))), [[0, 10]]);
  assert.deepEqual(naive(R(0, 6).union(R(4, 9))), [[0, 9]]);
  assert.deepEqual(naive(R(0, 5).union(R(5, 9))), [[0, 5], [5, 9]]);
  assert.deepEqual(naive(R(0, 3).union(R(5, 9))), [[0, 3], [5, 9]]);
  assert.deepEqual(naive(R(3, 3).union(R(0, 10))), [[3, 3], [0, 10]]);
  assert.equal(R(0, 6).unionSize(R(4, 9)), 9);
  assert.equal(R(0, 5).unionSize(R(5, 9)), 9);
  assert.equal(R(0, 5).unionSize(R(0, 5)), 5);
});

test('diffBy returns other minus this: [3, 6).diffBy([0, 10)) is [[0, 3), [6, 10)]', () => {
  assert.deepEqual(naive(R(3, 6).diffBy(R(0, 10))), [[0, 3], [6, 10]]);
  assert.deepEqual(naive(R(0, 6).diffBy(R(3, 10))), [[6, 10]]);
  assert.deepEqual(naive(R(5, 12).diffBy(R(3, 10))), [[3, 5]]);
  assert.deepEqual(naive(R(0, 20).diffBy(R(3, 10))), []);
  assert.deepEqual(naive(R(12, 15).diffBy(R(0, 10))), [[0, 10]]);
  assert.deepEqual(naive(R(4, 4).diffBy(R(0, 10))), [[0, 10]]);
  assert.deepEqual(naive(R(0, 10).diffBy(R(4, 4))), []);
});

test('isSubrangeOf and isOverlapWith, including the empty-range quirk ([3, 3) overlaps [0, 10))', () => {
  assert.equal(R(2, 5).isSubrangeOf(R(0, 5)), true);
  assert.equal(R(2, 6).isSubrangeOf(R(0, 5)), false);
  assert.equal(R(5, 5).isSubrangeOf(R(0, 5)), true);
  assert.equal(R(0, 5).isOverlapWith(R(4, 9)), true);
  assert.equal(R(0, 5).isOverlapWith(R(5, 9)), false);
  assert.equal(R(3, 3).isOverlapWith(R(0, 10)), true);
  assert.equal(R(0, 3).isOverlapWith(R(3, 3)), false);
});

test('equality is by ends and toString is "[s, e)"', () => {
  assert.ok(R(1, 2).equals(R(1, 2)));
  assert.ok(!R(1, 2).equals(R(1, 3)));
  assert.equal(R(1, 2).toString(), '[1, 2)');
  assert.equal(`${R(0, 0)}`, '[0, 0)');
  assert.equal(JSON.stringify(R(4, 7)), '[4,7]');
});
