/**
 * The preset masks (src/mask/presets.ts) that `magi-attn plan`, `magi-attn simulate` and the
 * planner page build by name: each one checked cell by cell against its definition, seeded
 * documents replayable, and bad options refused with the argument named as the caller typed it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../src/errors.js';
import { denseMaskCounts } from '../src/mask/dense.js';
import { isMaskPreset, MASK_PRESETS, presetMask, type MaskPreset } from '../src/mask/presets.js';
import { sliceListArea } from '../src/mask/slice-list.js';
import { runCli } from '../src/cli/program.js';

test('every preset is the mask its name says, cell by cell', () => {
  const n = 300;
  // Whether query q sees key k, given q's document [s, e).
  const visible: Record<MaskPreset, (q: number, k: number, s: number, e: number) => boolean> = {
    full: () => true,
    causal: (q, k) => k <= q,
    'varlen-full': (q, k, s, e) => k >= s && k < e,
    'varlen-causal': (q, k, s) => k >= s && k <= q,
    // Blocks of 32 from each document's start: a query sees its document up to the end of its block.
    'block-causal': (q, k, s, e) => k >= s && k < Math.min(e, s + (Math.floor((q - s) / 32) + 1) * 32),
    // Window of 20 keys left and 3 right, inside the document.
    'sliding-window': (q, k, s, e) => k >= Math.max(s, q - 20) && k < Math.min(e, q + 4),
  };
  for (const kind of MASK_PRESETS) {
    for (const docs of [undefined, 5]) {
      const spec = presetMask(kind, n, { seed: 11, ...(docs === undefined ? {} : { docs }), blockSize: 32, window: [20, 3] });
      assert.equal(spec.totalSeqlen, n);
      const cu = spec.cuSeqlens ?? [0, n];
      assert.equal(cu[0], 0);
      assert.equal(cu[cu.length - 1], n);
      if (docs !== undefined && kind !== 'full' && kind !== 'causal') assert.equal(cu.length - 1, docs, `${kind}: ${docs} documents`);
      const dense = denseMaskCounts(spec.mask, n, n);
      let cells = 0;
      for (let q = 0, d = 0; q < n; q++) {
        while (cu[d + 1] <= q) d++;
        for (let k = 0; k < n; k++) {
          const want = visible[kind](q, k, cu[d], cu[d + 1]) ? 1 : 0;
          assert.equal(dense[q * n + k], want, `${kind} docs=${docs}: cell (${q}, ${k})`);
          cells += want;
        }
      }
      assert.equal(sliceListArea(spec.mask), cells, `${kind}: area`);
      assert.match(spec.description, new RegExp(`^${kind}`));
    }
  }
});

test('documents are drawn from the seed: the same seed gives the same mask, another seed another', () => {
  const a = presetMask('varlen-causal', 1 << 16, { seed: 3 });
  const b = presetMask('varlen-causal', 1 << 16, { seed: 3 });
  const c = presetMask('varlen-causal', 1 << 16, { seed: 4 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.cuSeqlens, c.cuSeqlens);
  assert.match(a.description, /lengths from the dataset histogram, seed 3/);
});

test('bad preset options are refused, naming the argument as the caller spells it', async () => {
  const refuses = (f: () => unknown, argument: string): void => {
    assert.throws(f, (e: unknown) => e instanceof InvalidArgumentError && e.argument === argument, argument);
  };
  refuses(() => presetMask('varlen-full', 10, { seed: 1, docs: 11 }), 'docs');
  refuses(() => presetMask('varlen-full', 10, { seed: 1, docs: 0 }), 'docs');
  refuses(() => presetMask('block-causal', 10, { seed: 1, docs: 11, argumentPrefix: '--' }), '--docs');
  refuses(() => presetMask('causal', 0, { seed: 1 }), 'seqlen');
  refuses(() => presetMask('nope' as MaskPreset, 10, { seed: 1 }), 'kind');
  assert.equal(isMaskPreset('causal'), true);
  assert.equal(isMaskPreset('mask.json'), false);
  let err = '';
  const code = await runCli(['plan', '--mask', 'varlen-causal', '--seqlen', '10', '--docs', '20', '--cp', '2'], { out: () => {}, err: (t) => (err += t) });
  assert.equal(code, 2);
  assert.match(err, /^magi-attn plan: --docs: must be an integer in \[1, --seqlen\]/);
});
