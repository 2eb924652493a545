/**
 * The host side of the Hopper backward's schedule-variant experiment (issue 11; removed with it):
 * the FFA_BWD_SM90_VARIANT environment variable is validated before any compile, and the shared
 * memory the launcher requests per variant is the kernel's own Smem<variant>::kRequest (read from
 * the static_asserts of ffa_bwd_sm90.cu, which hold the kernel layout to those numbers).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../src/errors.js';
import { FFA_BWD_SM90_VARIANTS, sm90BackwardSmemBytes, sm90BackwardVariantFromEnv } from '../src/kernels/cuda/ffa-backward-sm90.js';
import { readKernelSource } from '../src/kernels/cuda/source.js';

test('sm90BackwardVariantFromEnv: 0 when unset or empty, the listed variants, a typed error otherwise', () => {
  assert.equal(sm90BackwardVariantFromEnv({}), 0);
  assert.equal(sm90BackwardVariantFromEnv({ FFA_BWD_SM90_VARIANT: '' }), 0);
  for (const v of FFA_BWD_SM90_VARIANTS) assert.equal(sm90BackwardVariantFromEnv({ FFA_BWD_SM90_VARIANT: String(v) }), v);
  for (const bad of ['2', '6', '7', '8', '11', '15', '16', '-1', '1.0', ' 1', 'one']) {
    assert.throws(() => sm90BackwardVariantFromEnv({ FFA_BWD_SM90_VARIANT: bad }), (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'FFA_BWD_SM90_VARIANT', bad);
  }
});

test("sm90BackwardSmemBytes matches the kernel's Smem<variant>::kRequest static_asserts", () => {
  const src = readKernelSource('ffa_bwd_sm90.cu');
  const asserted = new Map<number, number>();
  for (const m of src.matchAll(/static_assert\(Smem<(\d+)>::kRequest == (\d+),/g)) asserted.set(Number(m[1]), Number(m[2]));
  assert.deepEqual([...asserted.keys()].sort(), [0, 1]);
  for (const v of FFA_BWD_SM90_VARIANTS) assert.equal(sm90BackwardSmemBytes(v), asserted.get(v & 1), `variant ${v}`);
  // the default kernel's request is today's, and every variant fits the 227 KB a block may have
  assert.equal(sm90BackwardSmemBytes(0), 198728);
  for (const v of FFA_BWD_SM90_VARIANTS) assert.ok(sm90BackwardSmemBytes(v) <= 227 * 1024, `variant ${v}`);
});
