/**
 * Overlap stages: a rank's remote k/v tokens are cut into "overlap chunks" (runs of at least
 * minChunkSize tokens, at most maxNumChunks of them) and the chunks are grouped into D stages, so
 * that fetching stage i+1 runs while stage i (or the host stage, for i = 0) computes. Stages are
 * runs of consecutive chunks, so every stage buffer is a few merged global ranges.
 *
 * Cost model (the reference's): a stage's comm cost is commCostFactor × its tokens, its compute
 * cost calcCostFactor × its area, and a plan of D stages costs
 *   max(comm_0, host) + Σ_{s≥1} max(comm_s, calc_{s−1}) + calc_{D−1}
 * i.e. each fetch hides behind the compute before it.
 */
import type { ResolvedOverlapConfig } from './config.js';

/** The reference's rule: minChunkSize tokens per chunk unless that makes more than maxNumChunks. */
export function overlapChunking(remoteTokens: number, minChunkSize: number, maxNumChunks: number): { chunkSize: number; numChunks: number } {
  if (remoteTokens <= 0) return { chunkSize: minChunkSize, numChunks: 0 };
  let chunkSize = minChunkSize;
  let numChunks = Math.ceil(remoteTokens / chunkSize);
  if (numChunks > maxNumChunks) {
    chunkSize = Math.ceil(remoteTokens / maxNumChunks);
    numChunks = Math.ceil(remoteTokens / chunkSize);
  }
  return { chunkSize, numChunks };
}

/**
 * The reference's uniform split: the host stage counts as element 0 of 1 + nChunks cost entries,
 * which are cut into `degree` consecutive groups (the first groups one larger when it does not
 * divide), so the first remote stage gets one chunk fewer. Returns, per stage, [first chunk,
 * end chunk) over the overlap chunks; stages past the last chunk are empty.
 */
export function uniformStages(numChunks: number, degree: number): Int32Array {
  const bounds = new Int32Array(degree + 1);
  const n = 1 + numChunks;
  const d = Math.min(degree, n - 1);
  if (d === 0) return bounds; // no remote data: every stage empty
  const per = Math.floor(n / d);
  const extra = n % d;
  let at = 0; // position among the 1 + numChunks entries
  for (let s = 0; s < degree; s++) {
    const size = s < d ? per + (s < extra ? 1 : 0) : 0;
    at += size;
    bounds[s + 1] = Math.max(0, at - 1); // entries 1..numChunks are chunks 0..numChunks-1
  }
  return bounds;
}

/** Cost of a stage split (bounds as from uniformStages) under the pipeline model above. */
export function overlapCost(bounds: Int32Array, hostCalc: number, chunkComm: ArrayLike<number>, chunkCalc: ArrayLike<number>): number {
  const degree = bounds.length - 1;
  let prevCalc = hostCalc;
  let cost = 0;
  for (let s = 0; s < degree; s++) {
    let comm = 0;
    let calc = 0;
    for (let j = bounds[s]; j < bounds[s + 1]; j++) {
      comm += chunkComm[j];
      calc += chunkCalc[j];
    }
    cost += Math.max(comm, prevCalc);
    prevCalc = calc;
  }
  return cost + prevCalc;
}

/**
 * Ours (the reference leaves "greedy" unimplemented): fill each stage while its fetch still hides
 * behind the compute before it (the host stage for stage 0, the previous stage otherwise), always
 * at least one chunk, and leaving one chunk for every later stage; the last stage takes the rest.
 * Kept only when the model says it beats the uniform split, so greedy is never worse than uniform.
 */
export function greedyStages(degree: number, hostCalc: number, chunkComm: ArrayLike<number>, chunkCalc: ArrayLike<number>): Int32Array {
  const n = chunkComm.length;
  const bounds = new Int32Array(degree + 1);
  let j = 0;
  let budget = hostCalc;
  for (let s = 0; s < degree; s++) {
    bounds[s] = j;
    if (s === degree - 1) {
      j = n;
    } else {
      let comm = 0;
      let calc = 0;
      const reserve = degree - 1 - s; // chunks kept back so later stages are not starved
      while (j < n - reserve && (comm === 0 || comm + chunkComm[j] <= budget)) {
        comm += chunkComm[j];
        calc += chunkCalc[j];
        j++;
      }
      budget = calc;
    }
    bounds[s + 1] = j;
  }
  const uniform = uniformStages(n, degree);
  return overlapCost(bounds, hostCalc, chunkComm, chunkCalc) < overlapCost(uniform, hostCalc, chunkComm, chunkCalc) ? bounds : uniform;
}

/**
 * Stage bounds for one rank. Static mode uses the configured degree; dynamic mode tries every
 * degree up to dynamicMaxDegree and keeps the cheapest (the smallest degree on ties).
 * chunkComm / chunkCalc are already multiplied by their cost factors.
 */
export function solveOverlapStages(config: ResolvedOverlapConfig, hostCalc: number, chunkComm: ArrayLike<number>, chunkCalc: ArrayLike<number>): Int32Array {
  const split = (degree: number): Int32Array =>
    config.alg === 'greedy' ? greedyStages(degree, hostCalc, chunkComm, chunkCalc) : uniformStages(chunkComm.length, degree);
  if (config.mode === 'static') return split(config.degree ?? 1);
  const maxDegree = Math.max(1, Math.min(config.dynamicMaxDegree, chunkComm.length));
  let best = split(1);
  let bestCost = overlapCost(best, hostCalc, chunkComm, chunkCalc);
  for (let d = 2; d <= maxDegree; d++) {
    const b = split(d);
    const cost = overlapCost(b, hostCalc, chunkComm, chunkCalc);
    if (cost < bestCost * (1 - 1e-12)) {
      best = b;
      bestCost = cost;
    }
  }
  return best;
}

/** Appends empty trailing stages so every rank has `degree` stages (the reference's all-reduce MAX). */
export function padStages(bounds: Int32Array, degree: number): Int32Array {
  if (bounds.length - 1 >= degree) return bounds;
  const out = new Int32Array(degree + 1);
  out.set(bounds);
  out.fill(bounds[bounds.length - 1], bounds.length);
  return out;
}
