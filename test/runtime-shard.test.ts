/**
 * The sequence operations around calcAttn on worker-thread ranks at cp 2, 3, 4 and 8, each
 * against its single-device meaning on random masks and tensors (test/runtime-ranks/shard-rank.ts):
 * roll (1.1.1's distributed roll: positive, negative, zero and wrapping shifts) equals
 * dispatching the rolled sequence, undispatch inverts dispatch, the partial-gradient backward of
 * undispatch (a reduce-scatter) equals dispatching the sum of every rank's gradient, and
 * dispatch's backward gathers; with even and uneven shards, float32 and bfloat16. All bit for
 * bit: rows only move, and the one sum runs in float32 in rank order, which the check repeats.
 * Also ProcessGroup.split on thread ranks (the mesh of hierarchical communication).
 *
 * Random cases print their seed; replay with MAGI_SEED=<seed>.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnRanks } from '../src/comm/threads/index.js';
import { Rng, freshSeed } from '../src/util/rng.js';
import type { MaskFamily } from './util/solver-masks.js';
import type { ShardArgs, ShardCase, ShardReport } from './runtime-ranks/shard-rank.js';
import { runnable } from './util/paths.js';

const rankScript = runnable('test/runtime-ranks/shard-rank');

function makeCases(seed: number, cp: number): ShardCase[] {
  const rng = new Rng(seed);
  const families: MaskFamily[] = ['varlen-causal', 'sliding-window', 'random-slices', 'block-causal'];
  return Array.from({ length: 6 }, (_, i) => {
    const drawn = rng.int(Math.max(16, 4 * cp), 150);
    // An uneven case gets a length cp does not divide, so its ranks cannot all hold the same
    // number of rows (with a multiple of cp, all six cases came out even at cp 2: seed 2884863999).
    const n = i % 2 === 1 && drawn % cp === 0 ? drawn + 1 : drawn;
    return {
      seed: rng.int(0, 2 ** 31),
      family: families[i % families.length],
      n,
      unevenShard: i % 2 === 1,
      dtype: i % 3 === 2 ? ('bfloat16' as const) : ('float32' as const),
      rowShape: i % 2 === 0 ? [3] : [2, 4],
      shifts: [1, -1, 0, rng.int(2, n - 1), -rng.int(n, 3 * n), n, 2 * n + 1],
    };
  });
}

for (const cp of [2, 3, 4, 8]) {
  test(`roll, undispatch and their backward passes (partial gradients too) equal their single-device meaning at cp ${cp}`, async (t) => {
    const seed = freshSeed();
    t.diagnostic(`seed ${seed}`);
    const cases = makeCases(seed, cp);
    const reports = await spawnRanks<ShardReport, ShardArgs>(cp, rankScript, { cases });
    assert.deepEqual(reports.flatMap((r) => r.failures), [], `seed ${seed}`);
    for (const r of reports) assert.ok(r.checks >= cases.length * 11 + 4, `only ${r.checks} checks ran`);
    const lengths = reports[0].shardSeqlens;
    t.diagnostic(`shard lengths: ${lengths.map((l) => l.join('/')).join(' ')}`);
    assert.ok(
      cases.some((c, i) => c.unevenShard && new Set(lengths[i]).size > 1),
      'some uneven case gives ranks different lengths',
    );
  });
}
