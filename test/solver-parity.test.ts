/**
 * The planner side of MagiAttention 1.1.1 parity: uneven shards (no padding, a short last chunk,
 * ranks holding different numbers of tokens) proven by checkPlan; the roll's point-to-point
 * moves, run through the ordering contract, put every row at its rolled position; hierarchical
 * GroupCast arguments over 2-D meshes proven by checkPlan (delivery, each token crossing into a
 * node once) and caught when broken; their inter-node rows counted from the arguments; plan JSON
 * with both; and `magi-attn plan` reporting inter-node bytes with and without hierarchical
 * communication on packed-document masks at cp 16 and 64 (2 and 8 nodes of 8).
 *
 * Random cases print their seed; replay with MAGI_SEED=<seed>.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../src/cli/program.js';
import { InvalidArgumentError } from '../src/errors.js';
import { varlenCausalMask } from '../src/mask/helpers.js';
import { checkPlan } from '../src/solver/check-plan.js';
import type { DispatchAlg } from '../src/solver/config.js';
import { buildHierGroupCast, interNodeRows, type HierGroupCastArgs } from '../src/solver/hier-group-collective.js';
import type { DistAttnPlan, RankPlan, StagePlan } from '../src/solver/plan.js';
import { planFromJSON, planToJSON } from '../src/solver/plan-json.js';
import { planRoll } from '../src/solver/roll.js';
import { planDistAttn } from '../src/solver/solve.js';
import { Rng, freshSeed } from '../src/util/rng.js';
import { MASK_FAMILIES, randomCuSeqlens, randomMask } from './util/solver-masks.js';
import { simulateGroupCast } from './util/group-collective-sim.js';

const ALGS: DispatchAlg[] = [{ type: 'min-heap' }, { type: 'sequential' }, { type: 'sorted-sequential' }, { type: 'topp-heap', topP: 0.5 }, { type: 'contiguous-runs' }];

test('uneven shards: no padding, ceil(N / chunk) chunks with a short last one, lengths adding up to N; checkPlan proves them', (t) => {
  const seed = freshSeed();
  t.diagnostic(`seed ${seed}`);
  const rng = new Rng(seed);
  let plans = 0;
  let unequal = 0;
  let refused = 0;
  for (const cp of [1, 2, 3, 4, 7, 8, 16]) {
    for (let i = 0; i < 12; i++) {
      const n = rng.int(Math.max(cp, 16), i < 8 ? 400 : 3000);
      const mask = randomMask(rng, MASK_FAMILIES[i % MASK_FAMILIES.length], n);
      const chunkSize = rng.int(1, Math.max(1, Math.floor(n / cp)));
      const alg = i % 3 === 0 ? rng.pick(ALGS) : ALGS[0];
      const what = `seed ${seed}: n ${n} cp ${cp} chunk ${chunkSize} ${alg.type}`;
      let plan: DistAttnPlan;
      try {
        plan = planDistAttn({ mask, totalSeqlenQ: n, cpSize: cp, dispatchConfig: { unevenShard: true, chunkSize, alg }, overlapConfig: { degree: rng.int(0, 3), minChunkSize: 8 } });
      } catch (e) {
        // Algorithms other than min-heap only cap chunk counts; an empty rank is refused by name.
        assert.ok(alg.type !== 'min-heap' && e instanceof InvalidArgumentError && /every rank needs at least one chunk/.test(e.message), `${what}: ${String(e)}`);
        refused++;
        continue;
      }
      const d = plan.dispatch;
      assert.equal(d.padSize, 0, what);
      assert.equal(d.paddedSeqlen, n, what);
      assert.equal(d.numChunks, Math.ceil(n / d.chunkSize), what);
      assert.equal(d.shardSeqlens.reduce((a, b) => a + b, 0), n, what);
      assert.equal(d.shardSeqlen, Math.max(...d.shardSeqlens), what);
      if (alg.type === 'min-heap') {
        const counts = d.partitions.map((p) => p.length);
        assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `${what}: chunk counts ${counts}`);
      }
      if (new Set(d.shardSeqlens).size > 1) unequal++;
      const r = checkPlan(plan);
      assert.ok(r.ok, `${what}\n${r.errors.join('\n')}`);
      plans++;
    }
  }
  t.diagnostic(`${plans} uneven plans checked (${unequal} with ranks of different lengths), ${refused} refused for an empty rank`);
  assert.ok(unequal > plans / 3);
});

test('checkPlan catches an uneven plan whose shard lengths do not add up', () => {
  const plan = planDistAttn({ mask: varlenCausalMask([0, 300, 1001]), totalSeqlenQ: 1001, cpSize: 3, dispatchConfig: { unevenShard: true, chunkSize: 37 } });
  assert.ok(checkPlan(plan).ok);
  const lens = plan.dispatch.shardSeqlens.slice();
  lens[0] += 1;
  const r = checkPlan({ ...plan, dispatch: { ...plan.dispatch, shardSeqlens: lens } });
  assert.ok(!r.ok && r.errors.some((e) => /rank 0 holds \d+ rows/.test(e)), r.errors.join('\n'));
});

test('the roll plan, run by the ordering contract and gathered into place, puts every row at its rolled position', (t) => {
  const seed = freshSeed();
  t.diagnostic(`seed ${seed}`);
  const rng = new Rng(seed);
  for (let iter = 0; iter < 40; iter++) {
    const cp = rng.pick([1, 2, 3, 4, 5, 8]);
    const n = rng.int(Math.max(cp, 8), 300);
    const uneven = iter % 2 === 1;
    const plan = planDistAttn({ mask: randomMask(rng, 'varlen-causal', n), totalSeqlenQ: n, cpSize: cp, dispatchConfig: { unevenShard: uneven, chunkSize: rng.int(1, Math.max(1, Math.floor(n / cp))) } });
    const d = plan.dispatch;
    // Each local row labelled by its global position (padding rows by -1 - position, which must stay put).
    const label = (g: number): number => (g < n ? g : -1 - g);
    const shards = d.partitions.map((part) => Array.from(part).flatMap((c) => Array.from({ length: Math.min((c + 1) * d.chunkSize, d.paddedSeqlen) - c * d.chunkSize }, (_, t) => label(c * d.chunkSize + t))));
    for (const shift of [1, -1, rng.int(-3 * n, 3 * n), n - 1]) {
      const rolls = planRoll(d, shift);
      const received = simulateGroupCast(shards, rolls.map((r) => r.groupCast));
      rolls.forEach((r, rank) => {
        const got: number[] = [];
        for (let i = 0; i < r.placeRanges.length; i += 2) got.push(...received[rank].slice(r.placeRanges[i], r.placeRanges[i + 1]));
        const want = shards[rank].map((x) => (x < 0 ? x : (((x - shift) % n) + n) % n));
        assert.deepEqual(got, want, `seed ${seed}: cp ${cp} n ${n} ${uneven ? 'uneven' : 'even'} shift ${shift} rank ${rank}`);
      });
    }
  }
});

test('hierarchical GroupCasts of random plans on 1x4, 2x2, 2x4, 4x2 and 2x8 meshes are proven by checkPlan; each sends a row across once per node', (t) => {
  const seed = freshSeed();
  t.diagnostic(`seed ${seed}`);
  const rng = new Rng(seed);
  let plans = 0;
  let saved = 0;
  for (const [nodes, ranksPerNode] of [
    [1, 4],
    [2, 2],
    [2, 4],
    [4, 2],
    [2, 8],
  ]) {
    const cp = nodes * ranksPerNode;
    for (let i = 0; i < 8; i++) {
      const n = rng.int(4 * cp, 1500);
      const what = `seed ${seed}: mesh ${nodes}x${ranksPerNode} case ${i}`;
      const plan = planDistAttn({
        mask: randomMask(rng, MASK_FAMILIES[i % MASK_FAMILIES.length], n),
        totalSeqlenQ: n,
        cpSize: cp,
        mesh: { nodes, ranksPerNode },
        dispatchConfig: { unevenShard: i % 2 === 1 },
        overlapConfig: { degree: rng.int(0, 3), minChunkSize: 8 },
      });
      const r = checkPlan(plan);
      assert.ok(r.ok, `${what}\n${r.errors.join('\n')}`);
      for (let s = 0; s < plan.overlapDegree; s++) {
        const flat = plan.perRank.map((rp) => rp.stages[s].groupCast);
        const hier = plan.perRank.map((rp) => rp.stages[s].hierGroupCast as HierGroupCastArgs);
        // The counting function agrees with what the inter step's arguments carry.
        let carried = 0;
        for (const h of hier) h.inter.dstIndices.forEach((dsts, k) => (carried += h.inter.inputSplitSizes[k] * dsts.length));
        const rows = interNodeRows(flat, plan.mesh as NonNullable<DistAttnPlan['mesh']>);
        assert.equal(rows.hier, carried, what);
        assert.ok(rows.hier <= rows.flat, what);
        if (nodes === 1) assert.equal(rows.flat, 0, what);
        saved += rows.flat - rows.hier;
      }
      plans++;
    }
  }
  t.diagnostic(`${plans} hierarchical plans checked; ${saved} inter-node rows saved over all`);
  assert.ok(saved > 0);
});

function withHier(plan: DistAttnPlan, rank: number, edit: (h: HierGroupCastArgs) => HierGroupCastArgs): DistAttnPlan {
  const perRank = plan.perRank.map((r): RankPlan => (r.rank !== rank ? r : { ...r, stages: r.stages.map((s, i): StagePlan => (i === 0 ? { ...s, hierGroupCast: edit(s.hierGroupCast as HierGroupCastArgs) } : s)) }));
  return { ...plan, perRank };
}

test('checkPlan catches broken hierarchical arguments: misplaced rows, a relay in its own node, a wrong relay destination, a missing stage', () => {
  const plan = planDistAttn({ mask: varlenCausalMask(randomCuSeqlens(new Rng(5), 4096, 5)), totalSeqlenQ: 4096, cpSize: 8, mesh: { nodes: 2, ranksPerNode: 4 }, overlapConfig: { degree: 1 } });
  assert.ok(checkPlan(plan).ok);
  const rank = plan.perRank.findIndex((r) => (r.stages[0].hierGroupCast as HierGroupCastArgs).placeRanges.length >= 4);
  assert.ok(rank >= 0, 'a rank with two placed pieces');

  // Two placed pieces swapped (keeping the buffer's size): the stage buffer gets wrong rows.
  const swapped = withHier(plan, rank, (h) => {
    const p = Array.from(h.placeRanges);
    const a = p.slice(0, 2);
    const b = p.slice(2, 4);
    return { ...h, placeRanges: Int32Array.from([...b, ...a, ...p.slice(4)]) };
  });
  const e1 = checkPlan(swapped);
  assert.ok(!e1.ok && e1.errors.some((e) => /hierarchical GroupCast delivers/.test(e)), e1.errors.join('\n'));

  const sender = plan.perRank.findIndex((r) => (r.stages[0].hierGroupCast as HierGroupCastArgs).inter.dstIndices.some((d) => d.length > 0));
  const ownNode = withHier(plan, sender, (h) => ({ ...h, inter: { ...h.inter, dstIndices: h.inter.dstIndices.map((d) => (d.length > 0 ? [...new Set([...d, Math.floor(sender / 4)])].sort() : d)) } }));
  const e2 = checkPlan(ownNode);
  assert.ok(!e2.ok && e2.errors.some((e) => /own node/.test(e)), e2.errors.join('\n'));

  const relay = plan.perRank.findIndex((r) => (r.stages[0].hierGroupCast as HierGroupCastArgs).postIntra.dstIndices.some((d) => d.length === 1));
  const wrongDst = withHier(plan, relay, (h) => {
    const k = h.postIntra.dstIndices.findIndex((d) => d.length === 1);
    const dsts = h.postIntra.dstIndices.map((d, i) => (i === k ? [(d[0] + 1) % 4] : d));
    return { ...h, postIntra: { ...h.postIntra, dstIndices: dsts } };
  });
  assert.ok(!checkPlan(wrongDst).ok);

  const missing: DistAttnPlan = { ...plan, perRank: plan.perRank.map((r, i) => (i !== 0 ? r : { ...r, stages: r.stages.map((s) => ({ ...s, hierGroupCast: undefined })) })) };
  const e4 = checkPlan(missing);
  assert.ok(!e4.ok && e4.errors.some((e) => /no hierarchical GroupCast/.test(e)), e4.errors.join('\n'));
});

test('buildHierGroupCast refuses a mesh that does not tile the ranks', () => {
  const plan = planDistAttn({ mask: varlenCausalMask([0, 100, 256]), totalSeqlenQ: 256, cpSize: 6 });
  assert.throws(() => buildHierGroupCast(plan.perRank.map((r) => r.stages[0].groupCast), { nodes: 2, ranksPerNode: 4 }), /mesh: must have nodes × ranksPerNode = cp size/);
  assert.throws(() => planDistAttn({ mask: varlenCausalMask([0, 256]), totalSeqlenQ: 256, cpSize: 6, mesh: { nodes: 4, ranksPerNode: 2 } }), /mesh: must have nodes × ranksPerNode = cp size/);
});

test('plans with an uneven shard and a mesh round-trip through JSON; files without those fields still load', () => {
  const plan = planDistAttn({ mask: varlenCausalMask([0, 300, 777, 1001]), totalSeqlenQ: 1001, cpSize: 4, mesh: { nodes: 2, ranksPerNode: 2 }, dispatchConfig: { unevenShard: true, chunkSize: 30 }, overlapConfig: { degree: 2, minChunkSize: 16 } });
  const back = planFromJSON(JSON.parse(JSON.stringify(planToJSON(plan))));
  assert.deepEqual(back, plan);
  assert.ok(checkPlan(back).ok);
  const even = planDistAttn({ mask: varlenCausalMask([0, 300, 1001]), totalSeqlenQ: 1001, cpSize: 4 });
  const old = JSON.parse(JSON.stringify(planToJSON(even))) as Record<string, Record<string, unknown>>;
  delete old.mesh;
  delete old.dispatchConfig.unevenShard;
  delete old.dispatch.unevenShard;
  delete old.dispatch.shardSeqlens;
  assert.deepEqual(planFromJSON(old), even);
});

const inter = /inter-node k\/v bytes, forward \((\d+) nodes of 8\): flat ([\d.]+ [KMG]iB), hierarchical ([\d.]+ [KMG]iB) \(([\d.]+)x\)/;

test('magi-attn plan reports inter-node bytes with and without hierarchical communication on packed masks at cp 16 and 64 (2 and 8 nodes of 8)', async (t) => {
  for (const mask of ['varlen-full', 'varlen-causal']) {
    for (const cp of [16, 64]) {
      let out = '';
      const code = await runCli(['plan', '--mask', mask, '--seqlen', '262144', '--cp', String(cp), '--seed', '42'], { out: (s) => (out += s), err: () => undefined });
      assert.equal(code, 0);
      const m = inter.exec(out);
      assert.ok(m !== null, out);
      assert.equal(Number(m[1]), cp / 8);
      assert.ok(Number(m[4]) < 1, `${mask} cp ${cp}: ${m[0]}`);
      t.diagnostic(`${mask} cp ${cp}: ${m[0]}`);
    }
  }
  // The hierarchical plan itself, proven by --check.
  let out = '';
  const code = await runCli(['plan', '--mask', 'varlen-causal', '--seqlen', '65536', '--cp', '16', '--seed', '42', '--hier', '--check', '--uneven-shard'], { out: (s) => (out += s), err: () => undefined });
  assert.equal(code, 0, out);
  assert.match(out, /this plan is hierarchical/);
  assert.match(out, /check: the plan covers the mask exactly .* \(the hierarchical ones too/);
  assert.match(out, /uneven shard: [\d,]+-[\d,]+ tokens per rank/);
  let err = '';
  assert.equal(await runCli(['plan', '--mask', 'causal', '--seqlen', '4096', '--cp', '12', '--hier'], { out: () => undefined, err: (s) => (err += s) }), 2);
  assert.match(err, /--ranks-per-node: must divide --cp/);
});
