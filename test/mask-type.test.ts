import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MaskError } from '../src/errors.js';
import { AttnMaskType, maskTypeFromInt, maskTypeToInt, parseMaskType } from '../src/mask/mask-type.js';
import { isCellUnmasked, rowKeyInterval, sliceArea } from '../src/mask/geometry.js';

const TYPES = [AttnMaskType.FULL, AttnMaskType.CAUSAL, AttnMaskType.INVCAUSAL, AttnMaskType.BICAUSAL];

/** The local-rule table of the reference, written out independently of the module under test. */
function tableRule(type: AttnMaskType, i: number, j: number, lq: number, lk: number): boolean {
  const bottomRight = j - i <= lk - lq;
  const topLeft = j >= i;
  if (type === 'full') return true;
  if (type === 'causal') return bottomRight;
  if (type === 'inv_causal') return topLeft;
  return bottomRight && topLeft;
}

/** The reference's dense construction: an M x M triangle, M = max(Lq, Lk), cut to Lq x Lk. */
function denseFromTriangles(type: AttnMaskType, lq: number, lk: number): boolean[][] {
  const m = Math.max(lq, lk);
  const tril = (r: number, c: number): boolean => c <= r;
  const triu = (r: number, c: number): boolean => c >= r;
  return Array.from({ length: lq }, (_, i) =>
    Array.from({ length: lk }, (_, j) => {
      const causal = tril(m - lq + i, m - lk + j); // tril(M)[-Lq:, -Lk:]
      const inv = triu(i, j); // triu(M)[:Lq, :Lk]
      if (type === 'full') return true;
      if (type === 'causal') return causal;
      if (type === 'inv_causal') return inv;
      return causal && inv;
    }),
  );
}

function picture(type: AttnMaskType, lq: number, lk: number): string {
  return Array.from({ length: lq }, (_, i) => Array.from({ length: lk }, (_, j) => (isCellUnmasked(type, i, j, lq, lk) ? '1' : '0')).join('')).join('/');
}

test('every cell of every type follows the local-rule table and the dense triangle construction, 1 <= Lq, Lk <= 12', () => {
  for (const type of TYPES) {
    for (let lq = 1; lq <= 12; lq++) {
      for (let lk = 1; lk <= 12; lk++) {
        const dense = denseFromTriangles(type, lq, lk);
        for (let i = 0; i < lq; i++) {
          for (let j = 0; j < lk; j++) {
            const got = isCellUnmasked(type, i, j, lq, lk);
            assert.equal(got, tableRule(type, i, j, lq, lk), `${type} ${lq}x${lk} cell (${i}, ${j}) vs table`);
            assert.equal(got, dense[i][j], `${type} ${lq}x${lk} cell (${i}, ${j}) vs triangles`);
          }
        }
      }
    }
  }
});

test('cells outside the slice are masked', () => {
  for (const type of TYPES) {
    assert.equal(isCellUnmasked(type, -1, 0, 4, 4), false);
    assert.equal(isCellUnmasked(type, 0, -1, 4, 4), false);
    assert.equal(isCellUnmasked(type, 4, 3, 4, 4), false);
    assert.equal(isCellUnmasked(type, 3, 4, 4, 4), false);
  }
});

test('closed-form areas equal counted cells for all types, 1 <= Lq, Lk <= 12 (BICAUSAL clamps at 0 when Lq > Lk)', () => {
  for (const type of TYPES) {
    for (let lq = 1; lq <= 12; lq++) {
      for (let lk = 1; lk <= 12; lk++) {
        let count = 0;
        for (let i = 0; i < lq; i++) for (let j = 0; j < lk; j++) if (tableRule(type, i, j, lq, lk)) count++;
        assert.equal(sliceArea(type, lq, lk), count, `${type} ${lq}x${lk}`);
      }
    }
  }
  assert.equal(sliceArea('bi_causal', 9, 3), 0);
  assert.equal(sliceArea('causal', 0, 5), 0);
  assert.equal(sliceArea('full', 5, 0), 0);
});

test('rowKeyInterval is exactly the set of unmasked keys of the global row, for all types and shapes up to 12x12', () => {
  const qStart = 7;
  const kStart = 3;
  for (const type of TYPES) {
    for (let lq = 1; lq <= 12; lq++) {
      for (let lk = 1; lk <= 12; lk++) {
        for (let i = 0; i < lq; i++) {
          const [s, e] = rowKeyInterval(type, qStart, qStart + lq, kStart, kStart + lk, qStart + i);
          assert.ok(s <= e, `${type} ${lq}x${lk} row ${i}: interval [${s}, ${e}) is not ordered`);
          for (let j = 0; j < lk; j++) {
            const inInterval = kStart + j >= s && kStart + j < e;
            assert.equal(inInterval, tableRule(type, i, j, lq, lk), `${type} ${lq}x${lk} row ${i} key ${j}`);
          }
        }
      }
    }
  }
});

test('the docstring pictures: CAUSAL 2x5, INVCAUSAL 5x2, BICAUSAL 2x5', () => {
  assert.equal(picture('causal', 2, 5), '11110/11111');
  assert.equal(picture('inv_causal', 5, 2), '11/01/00/00/00');
  assert.equal(picture('bi_causal', 2, 5), '11110/01111');
});

test('causal slice with Lq > Lk leaves the first Lq - Lk rows empty; bi-causal with Lq == Lk is the diagonal', () => {
  assert.equal(picture('causal', 4, 2), '00/00/10/11');
  assert.equal(picture('bi_causal', 3, 3), '100/010/001');
  assert.equal(picture('bi_causal', 3, 2), '00/00/00');
});

test('integer codes are 0 full, 1 causal, 2 inv_causal, 3 bi_causal (not declaration order) and round-trip', () => {
  assert.equal(maskTypeToInt('full'), 0);
  assert.equal(maskTypeToInt('causal'), 1);
  assert.equal(maskTypeToInt('inv_causal'), 2);
  assert.equal(maskTypeToInt('bi_causal'), 3);
  for (const type of TYPES) assert.equal(maskTypeFromInt(maskTypeToInt(type)), type);
  assert.equal(parseMaskType(2), 'inv_causal');
  assert.equal(parseMaskType('bi_causal'), 'bi_causal');
});

test('bad mask types are rejected with a MaskError naming the argument: wrong case, unknown names, bad codes', () => {
  assert.throws(() => parseMaskType('FULL'), MaskError);
  assert.throws(() => parseMaskType('causal ', 'maskTypes[3]'), (e: unknown) => e instanceof MaskError && e.argument === 'maskTypes[3]');
  assert.throws(() => maskTypeFromInt(4), MaskError);
  assert.throws(() => maskTypeFromInt(-1), MaskError);
  assert.throws(() => maskTypeFromInt(1.5), MaskError);
  assert.throws(() => maskTypeToInt('bicausal' as AttnMaskType), MaskError);
});
