/**
 * Rank script for test/baselines-attn.test.ts: for each case every rank draws the same mask and
 * full tensors from the case seed, shards them the strategy's way (zig-zag for ring, contiguous
 * for Ulysses), runs the strategy's forward and backward on its shard and gathers the results
 * back; rank 0 compares them with single-device flexFlashAttn on the whole sequence.
 */
import type { ProcessGroup } from '../../src/comm/process-group.js';
import {
  ringAttn,
  ringAttnBackward,
  ringAttnKey,
  ringDispatch,
  ringUndispatch,
  ulyssesAttn,
  ulyssesAttnBackward,
  ulyssesAttnKey,
  ulyssesDispatch,
  ulyssesUndispatch,
} from '../../src/baselines/index.js';
import { flexFlashAttn, flexFlashAttnBackward } from '../../src/kernels/flex-flash-attn.js';
import { compareClose, type Tolerance } from '../../src/kernels/tolerance.js';
import { makeSliceList, type SliceList } from '../../src/mask/slice-list.js';
import type { Tensor } from '../../src/tensor.js';
import { Rng } from '../../src/util/rng.js';
import { randomTensor } from '../util/attn-check.js';
import { randomMask } from '../util/solver-masks.js';

export type BaselineMask = 'full' | 'causal' | 'varlen-causal' | 'block-causal' | 'sliding-window';

export interface BaselineCase {
  strategy: 'ring' | 'ulysses';
  mask: BaselineMask;
  seed: number;
  n: number;
  headsQ: number;
  headsKv: number;
  headDim: number;
  softcap: number;
  /** Ulysses: hand the forward's head-sharded tensors to the backward. */
  saved?: boolean;
}

export interface BaselineArgs {
  cases: BaselineCase[];
  tolerances: Record<'out' | 'lse' | 'grad', Tolerance>;
}

export interface BaselineReport {
  name: string;
  failures: string[];
  worst: Record<string, number>;
}

export function caseMask(rng: Rng, mask: BaselineMask, n: number): SliceList {
  if (mask === 'full' || mask === 'causal') return makeSliceList([[0, n]], [[0, n]], mask);
  return randomMask(rng, mask === 'varlen-causal' ? 'varlen-causal' : mask, n);
}

export default async function main(group: ProcessGroup, args: BaselineArgs): Promise<BaselineReport[]> {
  const reports: BaselineReport[] = [];
  for (const c of args.cases) {
    const rng = new Rng(c.seed);
    const mask = caseMask(rng, c.mask, c.n);
    const [q, k, v, dout] = [c.headsQ, c.headsKv, c.headsKv, c.headsQ].map((h) => randomTensor(rng, 'float32', [c.n, h, c.headDim]));
    const keyArgs = { ...mask, totalSeqlenQ: c.n, numHeadsQ: c.headsQ, numHeadsKv: c.headsKv, headDim: c.headDim, group };
    const opts = { softcap: c.softcap };
    let out: Tensor;
    let lse: Tensor;
    let grads: Tensor[];
    if (c.strategy === 'ring') {
      const key = ringAttnKey(keyArgs);
      const [lq, lk, lv, ld] = [q, k, v, dout].map((x) => ringDispatch(x, key));
      const f = await ringAttn(lq, lk, lv, key, opts);
      const g = await ringAttnBackward(ld, lq, lk, lv, f.out, f.lse, key, opts);
      [out, lse, ...grads] = await Promise.all([f.out, f.lse, g.dq, g.dk, g.dv].map((t) => ringUndispatch(t, key)));
    } else {
      const key = ulyssesAttnKey(keyArgs);
      const [lq, lk, lv, ld] = [q, k, v, dout].map((x) => ulyssesDispatch(x, key));
      const f = await ulyssesAttn(lq, lk, lv, key, { ...opts, saveForBackward: c.saved === true });
      const g = await ulyssesAttnBackward(ld, lq, lk, lv, f.out, f.lse, key, { ...opts, ...(f.saved === undefined ? {} : { saved: f.saved }) });
      [out, lse, ...grads] = await Promise.all([f.out, f.lse, g.dq, g.dk, g.dv].map((t) => ulyssesUndispatch(t, key)));
    }
    if (group.rank !== 0) continue;
    const maskOpts = { ...mask, softcap: c.softcap };
    const ref = flexFlashAttn(q, k, v, maskOpts);
    // The reference backward gets the distributed out and lse, as in the calcAttn test.
    const refGrads = flexFlashAttnBackward(dout, q, k, v, out, lse, maskOpts);
    const failures: string[] = [];
    const worst: Record<string, number> = {};
    const check = (label: string, a: Tensor, e: Tensor, t: Tolerance): void => {
      const r = compareClose(a, e, t, label);
      worst[label] = r.worstRatio;
      if (!r.ok) failures.push(r.message);
    };
    check('out', out, ref.out, args.tolerances.out);
    check('lse', lse, ref.lse, args.tolerances.lse);
    check('dq', grads[0], refGrads.dq, args.tolerances.grad);
    check('dk', grads[1], refGrads.dk, args.tolerances.grad);
    check('dv', grads[2], refGrads.dv, args.tolerances.grad);
    const name = `${c.strategy}${c.saved === true ? ' (saved)' : ''} cp ${group.size} ${c.mask} n=${c.n} hq=${c.headsQ} hkv=${c.headsKv} d=${c.headDim} softcap=${c.softcap} seed=${c.seed}`;
    reports.push({ name, failures, worst });
  }
  return reports;
}
