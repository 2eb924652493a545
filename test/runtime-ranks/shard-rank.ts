/**
 * Rank script for test/runtime-shard.test.ts: every rank draws the same mask and full tensors
 * from each case's seed, dispatches them (even or uneven shard) and checks, on its own shard,
 * each sequence operation against its single-device meaning:
 *   roll(dispatch(x), s)                       == dispatch(torch.roll(x, s))        (bit for bit)
 *   undispatch(dispatch(x))                    == x                                  (bit for bit)
 *   undispatchBackward(g_r, {isPartialGrad})   == dispatch(Σ_r g_r), summed in float32 in rank order
 *   undispatchBackward(g)                      == dispatch(g)
 *   dispatchBackward(dispatch(g))              == g
 * It also splits the group (colors and keys chosen to scramble the order) and checks the
 * sub-groups' ranks and an all-reduce in each. Returns the failures (empty when all hold).
 */
import type { ProcessGroup } from '../../src/comm/process-group.js';
import type { DType } from '../../src/dtype.js';
import { dispatch, dispatchBackward, magiAttnFlexKey, roll, undispatch, undispatchBackward } from '../../src/runtime/index.js';
import { Tensor } from '../../src/tensor.js';
import { Rng } from '../../src/util/rng.js';
import { randomMask, type MaskFamily } from '../util/solver-masks.js';
import { randomTensor } from '../util/attn-check.js';

export interface ShardCase {
  seed: number;
  family: MaskFamily;
  n: number;
  unevenShard: boolean;
  dtype: DType;
  /** Row shape after the sequence dimension. */
  rowShape: number[];
  shifts: number[];
}

export interface ShardArgs {
  cases: ShardCase[];
}

export interface ShardReport {
  checks: number;
  failures: string[];
  /** Rank 0's view of each case's per-rank shard lengths. */
  shardSeqlens: number[][];
}

function rolled(x: Tensor, shift: number): Tensor {
  const n = x.shape[0];
  const w = x.data.length / n;
  const out = Tensor.zeros(x.dtype, x.shape);
  for (let g = 0; g < n; g++) {
    const src = (((g - shift) % n) + n) % n;
    out.data.set(x.data.subarray(src * w, (src + 1) * w), g * w);
  }
  return out;
}

function sameBits(a: Tensor, b: Tensor): string | null {
  if (a.dtype !== b.dtype || a.shape.join() !== b.shape.join()) return `shape/dtype ${a.dtype}[${a.shape}] vs ${b.dtype}[${b.shape}]`;
  for (let i = 0; i < a.data.length; i++) {
    if (!Object.is(a.data[i], b.data[i])) return `element ${i}: ${a.data[i]} vs ${b.data[i]}`;
  }
  return null;
}

export default async function main(group: ProcessGroup, args: ShardArgs): Promise<ShardReport> {
  const failures: string[] = [];
  let checks = 0;
  const expect = (what: string, problem: string | null): void => {
    checks++;
    if (problem !== null) failures.push(`rank ${group.rank}: ${what}: ${problem}`);
  };
  const shardSeqlens: number[][] = [];
  for (const c of args.cases) {
    const name = `${c.family} n=${c.n} ${c.unevenShard ? 'uneven' : 'even'} ${c.dtype} seed=${c.seed}`;
    const rng = new Rng(c.seed);
    const mask = randomMask(rng, c.family, c.n);
    const key = magiAttnFlexKey({
      qRanges: mask.qRanges,
      kRanges: mask.kRanges,
      maskTypes: mask.maskTypes,
      totalSeqlenQ: c.n,
      numHeadsQ: 2,
      numHeadsKv: 1,
      headDim: 8,
      group,
      dispatchConfig: { unevenShard: c.unevenShard, chunkSize: rng.int(1, 16) },
    });
    shardSeqlens.push(Array.from(key.plan.dispatch.shardSeqlens));
    const x = randomTensor(rng, c.dtype, [c.n, ...c.rowShape]);
    const local = dispatch(x, key, 7);
    expect(`${name}: undispatch(dispatch(x))`, sameBits(await undispatch(local, key), x));
    for (const s of c.shifts) expect(`${name}: roll by ${s}`, sameBits(await roll(local, s, key), dispatch(rolled(x, s), key, 7)));

    // Every rank's partial gradient, drawn from the case seed and the rank (so rank 0 can add them all).
    const partials = Array.from({ length: group.size }, (_, r) => randomTensor(new Rng(c.seed + 1000 * (r + 1)), c.dtype, [c.n, ...c.rowShape]));
    const sum = new Float32Array(partials[0].data.length);
    for (const p of partials) {
      const v = p.toFloat32();
      for (let i = 0; i < sum.length; i++) sum[i] += v[i];
    }
    const total = new Tensor('float32', partials[0].shape, sum).to(c.dtype);
    expect(`${name}: undispatchBackward with partial gradients`, sameBits(await undispatchBackward(partials[group.rank], key, { isPartialGrad: true }), dispatch(total, key)));
    expect(`${name}: undispatchBackward`, sameBits(await undispatchBackward(x, key), dispatch(x, key)));
    expect(`${name}: dispatchBackward`, sameBits(await dispatchBackward(dispatch(total, key), key), total));
  }

  // Sub-groups: colors by rank mod 2, keys in reverse rank order.
  const sub = await group.split(group.rank % 2, -group.rank);
  const members: number[] = [];
  for (let r = group.size - 1; r >= 0; r--) if (r % 2 === group.rank % 2) members.push(r);
  expect('split: sub-group size', sub.size === members.length ? null : `${sub.size} vs ${members.length}`);
  expect('split: sub-group rank (ordered by key)', sub.rank === members.indexOf(group.rank) ? null : `${sub.rank} vs ${members.indexOf(group.rank)}`);
  const ids = new Float64Array(sub.size);
  ids[sub.rank] = group.rank;
  await sub.allReduce(ids, 'sum').wait();
  expect('split: all-reduce inside the sub-group', ids.join() === members.join() ? null : `[${ids.join()}] vs [${members.join()}]`);
  // The parent's sequence is untouched by the sub-group's collectives.
  const all = new Float64Array([1]);
  await group.allReduce(all, 'sum').wait();
  expect('split: the parent group still meets', all[0] === group.size ? null : `${all[0]}`);
  return { checks, failures, shardSeqlens };
}
