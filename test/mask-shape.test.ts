/**
 * One mask shape everywhere: what a mask helper returns goes straight into every entry point and
 * means the same mask there. A missing or foreign field is an error naming it, never a default
 * (a helper's mask once arrived as `types`, was ignored, and every call ran full attention).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor } from '../src/tensor.js';
import { InvalidArgumentError, MaskError } from '../src/errors.js';
import { blockCausalMask, causalMask, slidingWindowMask, varlenCausalMask } from '../src/mask/helpers.js';
import { sliceListArea } from '../src/mask/slice-list.js';
import { flexFlashAttn, flexFlashAttnBackward } from '../src/kernels/flex-flash-attn.js';
import { referenceForward } from '../src/kernels/reference.js';
import { magiAttnFlexKey } from '../src/runtime/key.js';
import { createLocalGroups } from '../src/comm/local-group.js';
import { Rng, freshSeed } from '../src/util/rng.js';
import { compareClose, randomTensor } from './util/attn-check.js';

const n = 96;
const masks = {
  causal: causalMask(n),
  varlenCausal: varlenCausalMask([0, 30, 70, n]),
  slidingWindow: slidingWindowMask(n, [16, 0]),
  blockCausal: blockCausalMask([0, 50, n], 16),
};

test('a helper mask passed straight to flexFlashAttn is that mask, not full attention', (t) => {
  const seed = freshSeed();
  t.diagnostic(`seed ${seed}`);
  const rng = new Rng(seed);
  const [q, k, v] = [0, 1, 2].map(() => randomTensor(rng, 'float32', [n, 2, 16]));
  for (const [name, mask] of Object.entries(masks)) {
    const got = flexFlashAttn(q, k, v, mask);
    const want = referenceForward({ q, k, v, slices: mask, softmaxScale: 0.25, softcap: 0, outDtype: 'float32', returnMaxLogits: false, deterministic: false });
    const r = compareClose(got.out, want.out, { rtol: 1e-5, atol: 1e-6 }, `${name} out`);
    assert.ok(r.ok, `${r.message} (seed ${seed})`);
    // Row 0 of a causal document sees one key: its out is that key's v row exactly (not a full average).
    if (name === 'causal') assert.deepEqual(Array.from(got.out.toFloat32().subarray(0, 16)), Array.from(v.toFloat32().subarray(0, 16)));
  }
});

test('a helper mask spread into magiAttnFlexKey plans that mask (its area, not the full square)', () => {
  const [group] = createLocalGroups(1);
  for (const [name, mask] of Object.entries(masks)) {
    const key = magiAttnFlexKey({ ...mask, totalSeqlenQ: n, numHeadsQ: 2, numHeadsKv: 2, headDim: 16, group });
    assert.equal(sliceListArea(key.plan.globalMask), sliceListArea(mask), name);
    assert.ok(sliceListArea(key.plan.globalMask) < n * n, name);
  }
});

test('a mask without maskTypes, or with a field no entry reads, is an error naming the field', () => {
  const q = Tensor.zeros('float32', [8, 1, 4]);
  const bare = { qRanges: [[0, 8]] as Array<[number, number]>, kRanges: [[0, 8]] as Array<[number, number]> };
  const names = (argument: string, cls: typeof InvalidArgumentError) => (e: unknown) => e instanceof cls && e.argument === argument;
  assert.throws(() => flexFlashAttn(q, q, q, bare as never), names('maskTypes', MaskError));
  assert.throws(() => flexFlashAttn(q, q, q, { ...bare, types: ['causal'] } as never), names('options.types', InvalidArgumentError));
  assert.throws(() => flexFlashAttn(q, q, q, { ...bare, maskTypes: 'causal', causal: true } as never), names('options.causal', InvalidArgumentError));
  const { out, lse } = flexFlashAttn(q, q, q, { ...bare, maskTypes: 'full' });
  assert.throws(() => flexFlashAttnBackward(q, q, q, q, out, lse, { ...bare, maskTypes: 'full', out } as never), names('options.out', InvalidArgumentError));
  const [group] = createLocalGroups(1);
  const shape = { totalSeqlenQ: 8, numHeadsQ: 1, numHeadsKv: 1, headDim: 4, group };
  assert.throws(() => magiAttnFlexKey({ ...bare, ...shape } as never), names('maskTypes', MaskError));
  assert.throws(() => magiAttnFlexKey({ ...bare, types: Uint8Array.of(1), ...shape } as never), names('options.types', InvalidArgumentError));
});
