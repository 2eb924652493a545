/**
 * The distributed API around calcAttn, on in-process ranks (no worker start-up): runtime keys and
 * their per-group cache by value (cleared per group or all at once), dispatch / undispatch with
 * padding or an uneven shard, position ids, a second mask over the same dispatch (flex and
 * varlen forms), keys over a 2-D mesh, ProcessGroup.split, and the errors a wrong tensor or key gets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLocalGroups, runLocalRanks } from '../src/comm/local-group.js';
import { createProcessMesh } from '../src/comm/mesh.js';
import { RankFailedError } from '../src/comm/errors.js';
import { IssueQueue } from '../src/runtime/stage-comm.js';
import type { ProcessGroup } from '../src/comm/process-group.js';
import {
  calcAttn,
  calcAttnBackward,
  clearKeyCache,
  dispatch,
  getMostRecentKey,
  getPositionIds,
  cachedKeyCount,
  magiAttnFlexKey,
  magiAttnVarlenKey,
  makeKeyForNewMaskAfterDispatch,
  makeVarlenKeyForNewMaskAfterDispatch,
  setKeyCacheCapacity,
  undispatch,
  undispatchBackward,
  dispatchBackward,
  roll,
  type DistAttnRuntimeKey,
} from '../src/runtime/index.js';
import { computePadSize } from '../src/solver/chunking.js';
import { flexFlashAttn, flexFlashAttnBackward } from '../src/kernels/flex-flash-attn.js';
import { compareClose } from '../src/kernels/tolerance.js';
import { ShapeError } from '../src/errors.js';
import { slidingWindowMask, varlenCausalMask } from '../src/mask/helpers.js';
import { Tensor } from '../src/tensor.js';
import { Rng, freshSeed } from '../src/util/rng.js';
import { randomTensor } from './util/attn-check.js';

const heads = { numHeadsQ: 4, numHeadsKv: 2, headDim: 16 };

function flexKey(group: ProcessGroup, n: number, cu: number[], degree = 2): DistAttnRuntimeKey {
  const mask = varlenCausalMask(cu);
  return magiAttnFlexKey({ qRanges: mask.qRanges, kRanges: mask.kRanges, maskTypes: mask.maskTypes, totalSeqlenQ: n, ...heads, group, overlapConfig: { degree, minChunkSize: 4 } });
}

test('an equal key request returns the cached key; a different mask, head count, config or group does not', () => {
  const [g0] = createLocalGroups(3);
  const [h0] = createLocalGroups(3);
  const cu = [0, 40, 100, 150];
  const a = flexKey(g0, 150, cu);
  assert.equal(flexKey(g0, 150, [...cu]), a);
  assert.equal(getMostRecentKey(g0), a);
  assert.notEqual(flexKey(g0, 150, [0, 41, 100, 150]), a);
  assert.notEqual(flexKey(g0, 150, cu, 3), a);
  assert.notEqual(flexKey(h0, 150, cu), a);
  const mask = varlenCausalMask(cu);
  const otherHeads = magiAttnFlexKey({ qRanges: mask.qRanges, kRanges: mask.kRanges, maskTypes: mask.maskTypes, totalSeqlenQ: 150, ...heads, numHeadsQ: 8, group: g0, overlapConfig: { degree: 2, minChunkSize: 4 } });
  assert.notEqual(otherHeads, a);
  // The varlen constructor plans the same mask; its key is equal by value to the flex one.
  const v = magiAttnVarlenKey({ cuSeqlensQ: cu, causal: true, ...heads, group: g0, overlapConfig: { degree: 2, minChunkSize: 4 } });
  assert.equal(v, a);
  assert.equal(cachedKeyCount(g0), 4);
  setKeyCacheCapacity(g0, 2);
  assert.equal(cachedKeyCount(g0), 2);
  clearKeyCache(g0);
  assert.equal(cachedKeyCount(g0), 0);
  assert.notEqual(flexKey(g0, 150, cu), a, 'a cleared cache plans again');
  setKeyCacheCapacity(g0, 100);
});

test('dispatch keeps ascending chunks with padding rows; undispatch restores x; position ids name the rows', async () => {
  const n = 203;
  const x = Tensor.fromValues('float32', [n, 3], Array.from({ length: 3 * n }, (_, i) => i + 1));
  const out = await runLocalRanks(4, async (group) => {
    const key = flexKey(group, n, [0, 70, 150, 203]);
    const local = dispatch(x, key, -1);
    const ids = getPositionIds(key);
    const d = key.plan.dispatch;
    assert.equal(d.padSize, computePadSize(n, 4, d.chunkSize));
    assert.equal(local.shape[0], key.shardSeqlen);
    let row = 0;
    for (const c of d.partitions[group.rank]) {
      for (let t = 0; t < d.chunkSize; t++, row++) {
        const g = c * d.chunkSize + t;
        assert.equal(local.data[row * 3], g < n ? 3 * g + 1 : -1);
        assert.equal(ids[row], Math.min(g, d.maxValidIds - 1));
      }
    }
    const back = await undispatch(local, key);
    return Array.from(back.data);
  });
  for (const r of out) assert.deepEqual(r, Array.from(x.data));
});

test('a key for a new mask after dispatch shares the layout and computes the new mask', async () => {
  const seed = freshSeed();
  const rng = new Rng(seed);
  const n = 180;
  const q = randomTensor(rng, 'float32', [n, 4, 16]);
  const k = randomTensor(rng, 'float32', [n, 2, 16]);
  const v = randomTensor(rng, 'float32', [n, 2, 16]);
  const dout = randomTensor(rng, 'float32', [n, 4, 16]);
  const swa = slidingWindowMask([0, 100, 180], [20, 0]);
  const results = await runLocalRanks(3, async (group) => {
    const key = flexKey(group, n, [0, 60, 180]);
    const key2 = makeKeyForNewMaskAfterDispatch({ qRanges: swa.qRanges, kRanges: swa.kRanges, maskTypes: swa.maskTypes }, key);
    assert.equal(makeKeyForNewMaskAfterDispatch({ qRanges: swa.qRanges, kRanges: swa.kRanges, maskTypes: swa.maskTypes }, key), key2);
    assert.deepEqual(key2.plan.dispatch.partitions, key.plan.dispatch.partitions);
    assert.deepEqual(getPositionIds(key2), getPositionIds(key));
    const ql = dispatch(q, key);
    assert.deepEqual(dispatch(q, key2).data, ql.data);
    const kl = dispatch(k, key);
    const vl = dispatch(v, key);
    const fwd = await calcAttn(ql, kl, vl, key2);
    const g = await calcAttnBackward(dispatch(dout, key), ql, kl, vl, fwd.out, fwd.lse, key2);
    return { out: await undispatch(fwd.out, key2), dk: await undispatch(g.dk, key2) };
  });
  const m = { qRanges: swa.qRanges, kRanges: swa.kRanges, maskTypes: swa.maskTypes };
  const ref = flexFlashAttn(q, k, v, m);
  const refG = flexFlashAttnBackward(dout, q, k, v, ref.out, ref.lse, m);
  const r1 = compareClose(results[0].out, ref.out, { rtol: 2e-6, atol: 2e-6 }, 'out');
  assert.ok(r1.ok, `${r1.message} (seed ${seed})`);
  const r2 = compareClose(results[0].dk, refG.dk, { rtol: 8e-6, atol: 8e-6 }, 'dk');
  assert.ok(r2.ok, `${r2.message} (seed ${seed})`);
});

test('dsinkReduce sum gives every rank the full sink gradient', async () => {
  const rng = new Rng(7);
  const n = 120;
  const q = randomTensor(rng, 'float32', [n, 4, 16]);
  const k = randomTensor(rng, 'float32', [n, 2, 16]);
  const v = randomTensor(rng, 'float32', [n, 2, 16]);
  const dout = randomTensor(rng, 'float32', [n, 4, 16]);
  const sink = randomTensor(rng, 'float32', [2, 4]);
  const mask = varlenCausalMask([0, 50, 120]);
  const dsinks = await runLocalRanks(2, async (group) => {
    const key = flexKey(group, n, [0, 50, 120]);
    const [ql, kl, vl] = [dispatch(q, key), dispatch(k, key), dispatch(v, key)];
    const fwd = await calcAttn(ql, kl, vl, key, { sink });
    const g = await calcAttnBackward(dispatch(dout, key), ql, kl, vl, fwd.out, fwd.lse, key, { sink, dsinkReduce: 'sum' });
    return g.dsink as Tensor;
  });
  const m = { qRanges: mask.qRanges, kRanges: mask.kRanges, maskTypes: mask.maskTypes, sink };
  const ref = flexFlashAttn(q, k, v, m);
  const refG = flexFlashAttnBackward(dout, q, k, v, ref.out, ref.lse, m);
  for (const d of dsinks) assert.ok(compareClose(d, refG.dsink as Tensor, { rtol: 8e-6, atol: 8e-6 }, 'dsink').ok);
  assert.deepEqual(dsinks[0].data, dsinks[1].data);
});

test('tensors that do not fit the key get an error naming the argument', async () => {
  await runLocalRanks(2, async (group) => {
    const key = flexKey(group, 100, [0, 100]);
    const T = key.shardSeqlen;
    const ok = Tensor.zeros('float32', [T, 4, 16]);
    const kv = Tensor.zeros('float32', [T, 2, 16]);
    await assert.rejects(calcAttn(Tensor.zeros('float32', [T + 1, 4, 16]), kv, kv, key), (e: unknown) => e instanceof ShapeError && /^q: must be this rank's shard: \d+ local rows/.test(e.message));
    await assert.rejects(calcAttn(ok, Tensor.zeros('float32', [T, 4, 16]), kv, key), (e: unknown) => e instanceof ShapeError && /^k: must have numHeadsKv = 2 heads/.test(e.message));
    await assert.rejects(calcAttn(ok, kv, Tensor.zeros('float32', [T, 2, 8]), key), (e: unknown) => e instanceof ShapeError && /^v: must have head dim 16/.test(e.message));
    assert.throws(() => dispatch(Tensor.zeros('float32', [99, 4]), key), /^ShapeError: x: must hold the whole sequence: shape\[0\] = 100/);
    await assert.rejects(undispatch(Tensor.zeros('float32', [T - 1, 4]), key), /local: must be this rank's shard/);
    await assert.rejects(calcAttn(ok, kv, kv, {} as DistAttnRuntimeKey), /key: must be a runtime key/);
    // Both ranks leave no collective half-done: the errors come before any communication.
    await group.barrier().wait();
  });
});

test('the varlen form of the new-mask key equals the flex form over the same dispatch', async () => {
  await runLocalRanks(3, async (group) => {
    const key = flexKey(group, 180, [0, 60, 180]);
    const cu = [0, 100, 180];
    const v = makeVarlenKeyForNewMaskAfterDispatch({ cuSeqlensQ: cu, windowSize: [20, 0] }, key);
    const swa = slidingWindowMask(cu, [20, 0]);
    const f = makeKeyForNewMaskAfterDispatch({ qRanges: swa.qRanges, kRanges: swa.kRanges, maskTypes: swa.maskTypes }, key);
    assert.deepEqual(v.plan.globalMask, f.plan.globalMask);
    assert.deepEqual(v.plan.perRank, f.plan.perRank);
    assert.deepEqual(v.plan.dispatch.partitions, key.plan.dispatch.partitions);
    const causal = makeVarlenKeyForNewMaskAfterDispatch({ cuSeqlensQ: cu, causal: true }, key);
    assert.deepEqual(Array.from(causal.plan.globalMask.maskTypes), [1, 1]);
    assert.throws(() => makeVarlenKeyForNewMaskAfterDispatch({ cuSeqlensQ: [0, 100, 181] }, key), /181/);
    assert.throws(() => makeVarlenKeyForNewMaskAfterDispatch({ cuSeqlensQ: cu, window: [1, 1] } as never, key), /options\.window: is not an option here/);
  });
});

test('clearKeyCache() with no group forgets the keys of every group; capacities stay', () => {
  const [g0] = createLocalGroups(2);
  const [h0] = createLocalGroups(3);
  setKeyCacheCapacity(h0, 7);
  const a = flexKey(g0, 150, [0, 40, 150]);
  const b = flexKey(h0, 150, [0, 40, 150]);
  assert.equal(cachedKeyCount(g0), 1);
  assert.equal(cachedKeyCount(h0), 1);
  clearKeyCache();
  assert.equal(cachedKeyCount(g0), 0);
  assert.equal(cachedKeyCount(h0), 0);
  assert.throws(() => getMostRecentKey(g0), /has no cached runtime key yet/);
  assert.notEqual(flexKey(g0, 150, [0, 40, 150]), a);
  assert.notEqual(flexKey(h0, 150, [0, 40, 150]), b);
  for (let i = 0; i < 9; i++) flexKey(h0, 150 + i, [0, 40, 150 + i]);
  assert.equal(cachedKeyCount(h0), 7);
  setKeyCacheCapacity(h0, 100);
});

test('split on in-process ranks: sub-groups by color, ranked by key, with their own collectives; an abort reaches them', async () => {
  const sums = await runLocalRanks(6, async (group) => {
    const sub = await group.split(group.rank % 3, 10 - group.rank);
    assert.equal(sub.size, 2);
    assert.equal(sub.rank, group.rank < 3 ? 1 : 0);
    const x = new Float64Array([group.rank]);
    await sub.allReduce(x, 'sum').wait();
    await group.barrier().wait();
    return x[0];
  });
  assert.deepEqual(sums, [3, 5, 7, 3, 5, 7]);
  await assert.rejects(
    runLocalRanks(4, async (group) => {
      const sub = await group.split(0);
      if (group.rank === 3) throw new Error('boom');
      await sub.barrier().wait();
    }),
    (e: unknown) => e instanceof RankFailedError && /rank 3 failed: Error: boom/.test(e.message) && e.outcomes.filter((o) => o.status === 'aborted').length === 3,
  );
  await runLocalRanks(2, async (group) => {
    await assert.rejects(group.split(-1), /color: must be an integer in \[0, 2\^31\)/);
    await assert.rejects(createProcessMesh(group, 3), /ranksPerNode: must be a positive integer dividing the group size/);
  });
});

test('a key over a mesh plans hierarchical communication; a mesh whose groups do not tile it is refused', async () => {
  await runLocalRanks(4, async (group) => {
    const mesh = await createProcessMesh(group, 2);
    assert.deepEqual([mesh.intra.rank, mesh.intra.size, mesh.inter.rank, mesh.inter.size], [group.rank % 2, 2, Math.floor(group.rank / 2), 2]);
    const mask = varlenCausalMask([0, 60, 150]);
    const opts = { qRanges: mask.qRanges, kRanges: mask.kRanges, maskTypes: mask.maskTypes, totalSeqlenQ: 150, ...heads };
    const hier = magiAttnFlexKey({ ...opts, group: mesh });
    const flat = magiAttnFlexKey({ ...opts, group });
    assert.notEqual(hier, flat);
    assert.equal(hier.group, group);
    assert.deepEqual(hier.plan.mesh, { nodes: 2, ranksPerNode: 2 });
    assert.equal(flat.plan.mesh, null);
    assert.ok(hier.rankPlan.stages.every((s) => s.hierGroupCast !== undefined));
    // A key for a new mask keeps the mesh.
    const swa = slidingWindowMask([0, 150], [10, 0]);
    assert.deepEqual(makeKeyForNewMaskAfterDispatch({ qRanges: swa.qRanges, kRanges: swa.kRanges, maskTypes: swa.maskTypes }, hier).plan.mesh, { nodes: 2, ranksPerNode: 2 });
    assert.throws(() => magiAttnFlexKey({ ...opts, group: { ...mesh, intra: mesh.inter, inter: mesh.intra, nodes: 1, ranksPerNode: 4 } }), /group: is a mesh whose groups do not tile it/);
    await group.barrier().wait();
  });
});

test('dispatch with an uneven shard: ranks hold different lengths, no padding; position ids follow the short last chunk', async () => {
  const n = 203;
  const x = Tensor.fromValues('float32', [n, 1], Array.from({ length: n }, (_, i) => i));
  const out = await runLocalRanks(4, async (group) => {
    const mask = varlenCausalMask([0, 70, 203]);
    const key = magiAttnFlexKey({ qRanges: mask.qRanges, kRanges: mask.kRanges, maskTypes: mask.maskTypes, totalSeqlenQ: n, ...heads, group, dispatchConfig: { unevenShard: true, chunkSize: 9 } });
    const local = dispatch(x, key);
    assert.equal(key.padSize, 0);
    assert.equal(local.shape[0], key.shardSeqlen);
    assert.deepEqual(Array.from(getPositionIds(key)), Array.from(local.data));
    return key.shardSeqlen;
  });
  assert.equal(out.reduce((a, b) => a + b, 0), n);
  assert.ok(new Set(out).size > 1, `lengths ${out}`);
});

test('roll and the backward passes refuse bad arguments by name, before any communication', async () => {
  await runLocalRanks(2, async (group) => {
    const key = flexKey(group, 100, [0, 100]);
    const local = Tensor.zeros('float32', [key.shardSeqlen, 3]);
    await assert.rejects(roll(local, 1.5, key), /^InvalidArgumentError: shift: must be an integer/);
    await assert.rejects(roll(Tensor.zeros('float32', [key.shardSeqlen + 1, 3]), 1, key), /local: must be this rank's shard/);
    await assert.rejects(undispatchBackward(Tensor.zeros('float32', [100, 3]), key, { partial: true } as never), /options\.partial: is not an option here/);
    await assert.rejects(undispatchBackward(Tensor.zeros('float32', [99, 3]), key, { isPartialGrad: true }), /gradFull: must hold the whole sequence/);
    await assert.rejects(dispatchBackward(Tensor.zeros('float32', [100, 3]), key), /gradLocal: must be this rank's shard/);
    await group.barrier().wait();
  });
});

test('the issue queue starts collectives in program order: one waiting for its input holds back the ones after it', async () => {
  const q = new IssueQueue();
  const log: string[] = [];
  let open: () => void = () => undefined;
  const gate = new Promise<void>((r) => (open = r));
  const a = q.issue(async () => log.push('a'));
  const b = q.issue(async () => log.push('b'), gate);
  const c = q.issue(async () => log.push('c'));
  await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(log, ['a'], 'nothing overtakes the waiting one');
  open();
  await Promise.all([a, b, c]);
  assert.deepEqual(log, ['a', 'b', 'c']);
  const d = q.issue(async () => log.push('d'));
  assert.deepEqual(log, ['a', 'b', 'c', 'd'], 'with nothing waiting, a collective starts at once');
  await d;
  const failed = q.issue(async () => log.push('never'), Promise.reject(new Error('input lost')));
  const after = q.issue(async () => log.push('never either'));
  await assert.rejects(failed, /input lost/);
  await assert.rejects(after, /input lost/);
  assert.equal(log.length, 4);
});
