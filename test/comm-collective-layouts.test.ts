/**
 * The row layouts a GPU runs GroupCast / GroupReduce with (comm/collective-layouts.ts), checked
 * without a GPU: for every stage of random plans, packing by `pack`, an all-to-all-v by the
 * lowering's counts, and placing by `place` (cast) or adding by `reduce` (reduce) give exactly
 * what the reference model of the collective gives. Replay with MAGI_SEED=<seed>.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { collectiveLayouts } from '../src/comm/collective-layouts.js';
import { prepareGroupCast, prepareGroupReduce, type PreparedGroupCollective } from '../src/comm/group-collective.js';
import { planDistAttn } from '../src/solver/solve.js';
import { Rng, freshSeed } from '../src/util/rng.js';
import { MASK_FAMILIES, randomMask } from './util/solver-masks.js';
import { simulateGroupCast, simulateGroupReduce } from './util/group-collective-sim.js';

/** Rows of `src` by flat [s, e) ranges, back to back (what range_gather does). */
function gather(src: readonly number[], ranges: Int32Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < ranges.length; i += 2) out.push(...src.slice(ranges[i], ranges[i + 1]));
  return out;
}

/** An all-to-all-v of per-rank send buffers by the lowerings' counts; receive buffers in rank order. */
function allToAllV(sends: number[][], preps: PreparedGroupCollective[]): number[][] {
  const P = preps.length;
  const off = preps.map((p) => {
    const o = [0];
    for (let r = 0; r < P; r++) o.push(o[r] + p.lowering.sendCounts[r]);
    return o;
  });
  return preps.map((p, r) => {
    const recv: number[] = [];
    for (let s = 0; s < P; s++) {
      const part = sends[s].slice(off[s][r], off[s][r + 1]);
      assert.equal(part.length, p.lowering.recvCounts[s], `rank ${r} expects ${p.lowering.recvCounts[s]} rows from ${s}`);
      recv.push(...part);
    }
    return recv;
  });
}

test('device row layouts reproduce GroupCast and GroupReduce(sum) on every stage of random plans', (t) => {
  const seed = freshSeed();
  t.diagnostic(`seed ${seed}`);
  const rng = new Rng(seed);
  let stages = 0;
  for (let trial = 0; trial < 24; trial++) {
    const n = rng.int(64, 600);
    const cp = rng.int(2, 5);
    const mask = randomMask(rng, MASK_FAMILIES[trial % MASK_FAMILIES.length], n);
    let plan: ReturnType<typeof planDistAttn>;
    try {
      plan = planDistAttn({ mask, totalSeqlenQ: n, cpSize: cp, overlapConfig: { degree: rng.int(1, 3), minChunkSize: 4 } });
    } catch {
      continue;
    }
    for (let s = 0; s < plan.overlapDegree; s++) {
      const castArgs = plan.perRank.map((rp) => rp.stages[s].groupCast);
      const reduceArgs = plan.perRank.map((rp) => rp.stages[s].groupReduce);
      // Row values that name their rank and row, so any misplacement shows.
      const inputs = plan.perRank.map((rp) => Array.from({ length: plan.dispatch.shardSeqlen }, (_, i) => rp.rank * 100_000 + i));
      const castPreps = castArgs.map((a) => prepareGroupCast(a, cp));
      const castLayouts = castPreps.map((p) => collectiveLayouts(p, true));
      const recv = allToAllV(inputs.map((x, r) => (castLayouts[r].pack === null ? x : gather(x, castLayouts[r].pack as Int32Array))), castPreps);
      const got = recv.map((rv, r) => (castLayouts[r].place === null ? rv : gather(rv, castLayouts[r].place as Int32Array)));
      assert.deepEqual(got, simulateGroupCast(inputs, castArgs), `trial ${trial} stage ${s}: cast`);

      const partials = plan.perRank.map((rp, r) => Array.from({ length: rp.stages[s].stageBufferLength }, (_, i) => r * 1000 + i + 0.5));
      const accs = plan.perRank.map(() => Array.from({ length: plan.dispatch.shardSeqlen }, (_, i) => i * 0.25));
      const redPreps = reduceArgs.map((a) => prepareGroupReduce(a, cp));
      const redLayouts = redPreps.map((p) => collectiveLayouts(p, false));
      const rrecv = allToAllV(partials.map((x, r) => (redLayouts[r].pack === null ? x : gather(x, redLayouts[r].pack as Int32Array))), redPreps);
      const reduced = accs.map((acc, r) => {
        const out = [...acc];
        const l = redLayouts[r].reduce as NonNullable<(typeof redLayouts)[number]['reduce']>;
        for (let i = 0; i < l.dstStarts.length; i++) {
          for (let x = 0; x < l.srcRanges[2 * i + 1] - l.srcRanges[2 * i]; x++) out[l.dstStarts[i] + x] += rrecv[r][l.srcRanges[2 * i] + x];
        }
        return out;
      });
      assert.deepEqual(reduced, simulateGroupReduce(partials, accs, reduceArgs, 'sum'), `trial ${trial} stage ${s}: reduce`);
      stages++;
    }
  }
  assert.ok(stages > 20, `only ${stages} stages checked`);
});
