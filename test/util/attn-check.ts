/**
 * Test helpers for attention kernels: random inputs and masks drawn from a seeded Rng, and an
 * element-wise closeness check against the float64 reference that reports the worst element
 * (with its index and the seed) instead of a bare boolean.
 */
import { Tensor } from '../../src/tensor.js';
import type { DType } from '../../src/dtype.js';
import type { SliceList } from '../../src/mask/slice-list.js';
import { makeSliceList } from '../../src/mask/slice-list.js';
import { Rng, freshSeed } from '../../src/util/rng.js';
import assert from 'node:assert/strict';
import { compareClose, type KernelQuantity, type Tolerance } from '../../src/kernels/tolerance.js';
import type { FfaBackwardResult, FfaForwardArgs, FfaForwardResult, KernelBackend } from '../../src/kernels/backend.js';
import { referenceBackward } from '../../src/kernels/reference.js';
export { type Tolerance, compareClose } from '../../src/kernels/tolerance.js';

/** Asserts every [name, got, expected, tolerance] close (compareClose), the message naming `context` (seed, case). */
export function assertAllClose(checks: ReadonlyArray<readonly [string, Tensor, Tensor, Tolerance]>, context: string): void {
  for (const [name, got, expected, tol] of checks) {
    const r = compareClose(got, expected, tol, name);
    assert.ok(r.ok, `${r.message} ${context}`);
  }
}

/**
 * One CPU kernel call pair against the float64 reference: the forward's out, lse and maxLogits
 * against `want` (referenceForward's), then the backward on the kernel's own out and lse against
 * referenceBackward on the same inputs (dq, dk, dv, and dsink where there is a sink). Returns the
 * forward and the reference backward; pass that back as `ref` where the next call's backward has
 * bit-identical inputs, to skip recomputing it.
 */
export function assertKernelMatchesReference(
  backend: KernelBackend<Tensor>,
  args: FfaForwardArgs<Tensor>,
  dout: Tensor,
  want: FfaForwardResult<Tensor>,
  tol: Readonly<Record<KernelQuantity, Tolerance>>,
  context: string,
  ref?: FfaBackwardResult<Tensor>,
): { got: FfaForwardResult<Tensor>; ref: FfaBackwardResult<Tensor> } {
  const got = backend.forward(args);
  assertAllClose(
    [
      ['out', got.out, want.out, tol.out],
      ['lse', got.lse, want.lse, tol.lse],
      ['maxLogits', got.maxLogits!, want.maxLogits!, tol.maxLogits],
    ],
    context,
  );
  const bargs = { ...args, dout, out: got.out, lse: got.lse };
  const grads = backend.backward(bargs);
  const r = ref ?? referenceBackward(bargs);
  assertAllClose((['dq', 'dk', 'dv'] as const).map((name) => [name, grads[name], r[name], tol.grad] as const), context);
  if (args.sink !== undefined) assertAllClose([['dsink', grads.dsink!, r.dsink!, tol.dsink]], context);
  return { got, ref: r };
}

/** The random inputs of one forward-and-backward kernel check: the tensors, the mask and the softcap. */
export interface AttnProblem {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  dout: Tensor;
  slices: SliceList;
  softcap: number;
}

/** Standard-normal values times `scale`, narrowed to `dtype` (16-bit inputs are rounded here, once). */
export function randomTensor(rng: Rng, dtype: DType, shape: number[], scale = 1): Tensor {
  return Tensor.fromValues(dtype, shape, rng.normals(shape.reduce((a, b) => a * b, 1), scale));
}

export interface RandomMaskOptions {
  slices: number;
  /** Allow two slices to cover the same cell (it then counts twice). */
  allowSharedCells?: boolean;
}

/**
 * Random slices over Tq x Tk with every type, lengths from 1 up to the whole range (so Lq > Lk
 * happens), overlapping q ranges (several slices per row) and, unless asked otherwise, disjoint
 * key ranges among slices whose rows overlap.
 */
export function randomSlices(rng: Rng, tokensQ: number, tokensK: number, opts: RandomMaskOptions): SliceList {
  const q: [number, number][] = [];
  const k: [number, number][] = [];
  const types: number[] = [];
  let attempts = 0;
  while (q.length < opts.slices && attempts++ < 1000) {
    const qs = rng.int(0, tokensQ - 1);
    const qe = rng.int(qs + 1, Math.min(tokensQ, qs + 1 + rng.int(0, tokensQ)));
    const ks = rng.int(0, tokensK - 1);
    const ke = rng.int(ks + 1, Math.min(tokensK, ks + 1 + rng.int(0, tokensK)));
    if (!opts.allowSharedCells) {
      const clash = q.some((r, b) => r[0] < qe && qs < r[1] && k[b][0] < ke && ks < k[b][1]);
      if (clash) continue;
    }
    q.push([qs, qe]);
    k.push([ks, ke]);
    types.push(rng.int(0, 3));
  }
  return makeSliceList(q, k, types);
}

/** A fresh seed (MAGI_SEED replays one), printed as the test's diagnostic, and its Rng. */
export function seeded(t: { diagnostic(message: string): void }): { seed: number; rng: Rng } {
  const seed = freshSeed();
  t.diagnostic(`seed ${seed} (replay with MAGI_SEED=${seed})`);
  return { seed, rng: new Rng(seed) };
}
