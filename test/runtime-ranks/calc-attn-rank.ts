/**
 * Rank script for test/runtime-calc-attn.test.ts: for each case, every rank draws the same mask
 * and full tensors from the case seed, dispatches them, runs calcAttn / calcAttnBackward on its
 * shard and undispatches the results; rank 0 then compares them with single-device
 * flexFlashAttn on the whole sequence and reports the worst error of every quantity.
 */
import type { ProcessGroup } from '../../src/comm/process-group.js';
import { createProcessMesh, type ProcessMesh } from '../../src/comm/mesh.js';
import type { DType } from '../../src/dtype.js';
import { flexFlashAttn, flexFlashAttnBackward } from '../../src/kernels/flex-flash-attn.js';
import { compareClose, type Tolerance } from '../../src/kernels/tolerance.js';
import { calcAttn, calcAttnBackward, dispatch, magiAttnFlexKey, undispatch } from '../../src/runtime/index.js';
import { Tensor } from '../../src/tensor.js';
import { Rng } from '../../src/util/rng.js';
import { randomMask, type MaskFamily } from '../util/solver-masks.js';
import { randomTensor } from '../util/attn-check.js';

export interface CalcAttnCase {
  seed: number;
  family: MaskFamily;
  n: number;
  headsQ: number;
  headsKv: number;
  headDim: number;
  /** Overlap degree (0: no overlap, planned as one stage). */
  degree: number;
  /** Number of sink tokens; 0 for none. */
  sink: number;
  softcap: number;
  dtype: DType;
  /** Ranks may hold different numbers of tokens (DispatchConfig.unevenShard). */
  unevenShard?: boolean;
  /** Hierarchical communication over a mesh of nodes of this many ranks. */
  ranksPerNode?: number;
}

export interface CalcAttnArgs {
  cases: CalcAttnCase[];
  tolerances: Record<'out' | 'lse' | 'maxLogits' | 'grad' | 'dsink', Tolerance>;
  /** Make this rank call calcAttn with a q of the wrong local length. */
  badRank?: number;
}

export interface QuantityReport {
  label: string;
  ok: boolean;
  worstRatio: number;
  message: string;
}

export interface CaseReport {
  name: string;
  stages: number;
  padSize: number;
  shardSeqlens: number[];
  reports: QuantityReport[];
}

export function caseName(c: CalcAttnCase, cp: number): string {
  const layout = `${c.unevenShard === true ? ' uneven' : ''}${c.ranksPerNode === undefined ? '' : ` mesh ${cp / c.ranksPerNode}x${c.ranksPerNode}`}`;
  return `cp ${cp}${layout} ${c.family} n=${c.n} hq=${c.headsQ} hkv=${c.headsKv} d=${c.headDim} degree=${c.degree} sink=${c.sink} softcap=${c.softcap} ${c.dtype} seed=${c.seed}`;
}

export default async function main(group: ProcessGroup, args: CalcAttnArgs): Promise<CaseReport[]> {
  const reports: CaseReport[] = [];
  const meshes = new Map<number, ProcessMesh>();
  for (const c of args.cases) {
    let cpGroup: ProcessGroup | ProcessMesh = group;
    if (c.ranksPerNode !== undefined) {
      let mesh = meshes.get(c.ranksPerNode);
      if (mesh === undefined) meshes.set(c.ranksPerNode, (mesh = await createProcessMesh(group, c.ranksPerNode)));
      cpGroup = mesh;
    }
    const rng = new Rng(c.seed);
    const mask = randomMask(rng, c.family, c.n);
    const q = randomTensor(rng, c.dtype, [c.n, c.headsQ, c.headDim]);
    const k = randomTensor(rng, c.dtype, [c.n, c.headsKv, c.headDim]);
    const v = randomTensor(rng, c.dtype, [c.n, c.headsKv, c.headDim]);
    const dout = randomTensor(rng, c.dtype, [c.n, c.headsQ, c.headDim]);
    const sink = c.sink > 0 ? randomTensor(rng, 'float32', [c.sink, c.headsQ]) : undefined;
    const keyArgs = {
      qRanges: mask.qRanges,
      kRanges: mask.kRanges,
      maskTypes: mask.maskTypes,
      totalSeqlenQ: c.n,
      numHeadsQ: c.headsQ,
      numHeadsKv: c.headsKv,
      headDim: c.headDim,
      group: cpGroup,
      // Small overlap chunks, so that short sequences still split into several stages.
      overlapConfig: { degree: c.degree, minChunkSize: 4 },
      dispatchConfig: { unevenShard: c.unevenShard === true },
    };
    const key = magiAttnFlexKey(keyArgs);
    if (magiAttnFlexKey({ ...keyArgs, qRanges: mask.qRanges.slice() }) !== key) throw new Error('an equal second key request did not hit the cache');
    if ((key.plan.mesh === null) !== (c.ranksPerNode === undefined)) throw new Error('the key plans hierarchical communication exactly when given a mesh');

    let ql = dispatch(q, key);
    if (args.badRank === group.rank) ql = Tensor.zeros(c.dtype, [ql.shape[0] + 1, c.headsQ, c.headDim]);
    const kl = dispatch(k, key);
    const vl = dispatch(v, key);
    const opts = { sink, softcap: c.softcap };
    const fwd = await calcAttn(ql, kl, vl, key, { ...opts, returnMaxLogits: true });
    const grads = await calcAttnBackward(dispatch(dout, key), ql, kl, vl, fwd.out, fwd.lse, key, opts);

    const out = await undispatch(fwd.out, key);
    const lse = await undispatch(fwd.lse, key);
    const dq = await undispatch(grads.dq, key);
    const dk = await undispatch(grads.dk, key);
    const dv = await undispatch(grads.dv, key);
    let dsink: Tensor | undefined;
    if (grads.dsink !== undefined) {
      // The reference's default: each rank returns its partial; the full gradient is their sum.
      dsink = grads.dsink.clone();
      await group.allReduce(dsink.data as Float32Array, 'sum').wait();
    }
    if (group.rank !== 0) continue;

    const maskOpts = { qRanges: mask.qRanges, kRanges: mask.kRanges, maskTypes: mask.maskTypes, sink, softcap: c.softcap };
    const ref = flexFlashAttn(q, k, v, { ...maskOpts, returnMaxLogits: true });
    // The reference backward gets the distributed out and lse (what a user's backward sees): with
    // 16-bit inputs a flipped rounding of out would otherwise pass into every gradient through
    // rowsum(out·dout). The forward comparison above covers out and lse themselves.
    const refGrads = flexFlashAttnBackward(dout, q, k, v, out, lse, maskOpts);
    const tol = args.tolerances;
    const rs: QuantityReport[] = [];
    const check = (label: string, a: Tensor | undefined, e: Tensor | undefined, t: Tolerance): void => {
      if (a === undefined || e === undefined) {
        rs.push({ label, ok: a === e, worstRatio: a === e ? 0 : Infinity, message: `${label}: present ${a !== undefined} vs expected ${e !== undefined}` });
        return;
      }
      const r = compareClose(a, e, t, label);
      rs.push({ label, ok: r.ok, worstRatio: r.worstRatio, message: r.message });
    };
    check('out', out, ref.out, tol.out);
    check('lse', lse, ref.lse, tol.lse);
    check('maxLogits', fwd.maxLogits, ref.maxLogits, tol.maxLogits);
    check('dq', dq, refGrads.dq, tol.grad);
    check('dk', dk, refGrads.dk, tol.grad);
    check('dv', dv, refGrads.dv, tol.grad);
    check('dsink', dsink, refGrads.dsink, tol.dsink);
    reports.push({ name: caseName(c, group.size), stages: key.plan.overlapDegree, padSize: key.padSize, shardSeqlens: Array.from(key.plan.dispatch.shardSeqlens), reports: rs });
  }
  return reports;
}
