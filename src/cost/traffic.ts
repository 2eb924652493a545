/**
 * Who sends what to whom in a plan: per stage and rank, the k/v tokens its GroupCast sends and
 * receives, split by whether the peer shares its node; and the rank × rank token matrix over all
 * stages. Read straight from the GroupCast arguments the runtime passes, so the figures are the
 * plan's own. A GroupReduce moves the same tokens back along the same routes.
 */
import type { DistAttnPlan } from '../solver/plan.js';
import type { LinkModel } from './links.js';

/** Tokens one rank moves in one stage's GroupCast (a token sent to m ranks counts m times). */
export interface StageTokens {
  readonly intraSend: number;
  readonly intraRecv: number;
  readonly interSend: number;
  readonly interRecv: number;
}

/** stageTokens[s][r]: rank r's GroupCast tokens in stage s. */
export function stageTokens(plan: DistAttnPlan, link: LinkModel): StageTokens[][] {
  const P = plan.cpSize;
  // Node of every rank, once: a dense mask at cp 1024 has millions of (split, destination) pairs.
  const node = Float64Array.from({ length: P }, (_, r) => Math.floor(r / link.gpusPerNode));
  const out: StageTokens[][] = [];
  for (let s = 0; s < plan.overlapDegree; s++) {
    const row: StageTokens[] = [];
    for (let r = 0; r < P; r++) {
      const gc = plan.perRank[r].stages[s].groupCast;
      const own = node[r];
      let intraSend = 0;
      let interSend = 0;
      let intraRecv = 0;
      let interRecv = 0;
      for (let i = 0; i < gc.inputSplitSizes.length; i++) {
        const size = gc.inputSplitSizes[i];
        const dsts = gc.dstIndices[i];
        for (let k = 0; k < dsts.length; k++) {
          if (node[dsts[k]] === own) intraSend += size;
          else interSend += size;
        }
      }
      for (let j = 0; j < gc.outputSplitSizes.length; j++) {
        if (node[gc.srcIndex[j]] === own) intraRecv += gc.outputSplitSizes[j];
        else interRecv += gc.outputSplitSizes[j];
      }
      row.push({ intraSend, intraRecv, interSend, interRecv });
    }
    out.push(row);
  }
  return out;
}

/** matrix[src * P + dst]: k/v tokens src sends dst over all stages of the forward GroupCasts. */
export function trafficMatrix(plan: DistAttnPlan): Float64Array {
  const P = plan.cpSize;
  const m = new Float64Array(P * P);
  for (const rp of plan.perRank) {
    for (const st of rp.stages) {
      const gc = st.groupCast;
      for (let j = 0; j < gc.outputSplitSizes.length; j++) m[gc.srcIndex[j] * P + rp.rank] += gc.outputSplitSizes[j];
    }
  }
  return m;
}

/** Bytes of one k/v token row: k and v, all kv heads. */
export function kvTokenBytes(numHeadsKv: number, headDim: number, bytesPerElement: number): number {
  return 2 * numHeadsKv * headDim * bytesPerElement;
}
