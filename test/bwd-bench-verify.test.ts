/**
 * The verify rules of the backward benches (bench/kernel/bwd-bench.ts; no GPU needed): two runs'
 * fp32 sums bit-identical or not, and agreement within a tolerance of max |ref| with NaN caught.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sameBits, sumsAgree } from '../bench/kernel/bwd-bench.js';

const three = (f: (i: number) => number): Float32Array[] => [0, 1, 2].map((t) => Float32Array.from({ length: 64 }, (_, i) => f(i + 100 * t)));

test('sameBits: equal bits pass; one changed bit, or +0 against -0, fails', () => {
  const a = three((i) => Math.sin(i));
  assert.equal(sameBits(a, three((i) => Math.sin(i))), true);
  const b = three((i) => Math.sin(i));
  b[2][5] = Math.fround(b[2][5] * (1 + 2 ** -20));
  assert.equal(sameBits(a, b), false);
  const z = three(() => 0);
  const nz = three(() => 0);
  nz[1][0] = -0;
  assert.equal(sameBits(z, nz), false);
});

test('sumsAgree: within tol of max |ref| passes, beyond it or any NaN fails and names the tensor', () => {
  const ref = three((i) => Math.cos(i) * 4);
  const near = ref.map((x) => x.map((v) => v + 3e-3));
  assert.equal(sumsAgree(near, ref).ok, true);
  const far = ref.map((x) => x.slice());
  far[1][3] += 0.01; // max |ref| is ~4: 0.01 > 1e-3 * 4
  const r = sumsAgree(far, ref);
  assert.equal(r.ok, false);
  assert.match(r.line, /dk [0-9.e+-]+ BAD/);
  const nan = ref.map((x) => x.slice());
  nan[0][7] = Number.NaN;
  const n = sumsAgree(nan, ref);
  assert.equal(n.ok, false);
  assert.match(n.line, /dq .* 1 NaN BAD/);
});
