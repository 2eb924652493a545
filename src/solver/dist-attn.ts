/**
 * The static dist-attn solver: from the dispatch, every rank's work in local coordinates.
 * q and o never move (a rank computes exactly its own rows), so per rank it decides
 *   - the host slices: its rows against the keys it already holds;
 *   - the remote k/v it needs: exactly the keys its rows read, minus its own (zero redundancy);
 *   - how those remote keys split into overlap stages, and each stage's slices re-based onto the
 *     stage's receive buffer.
 * All ranks are planned in one pass, with no collective: the plan is one piece of data that each
 * rank (or a browser) reads its part of. The GroupCast arguments that move the remote keys are
 * built from these results in group-collective-args.ts.
 */
import type { ChunkBuckets } from './chunking.js';
import type { ResolvedOverlapConfig } from './config.js';
import { bandHi, bandLo, emitBand, SliceBuffer } from '../mask/geometry.js';
import { firstRangeEndingAfter, localOffsets, mergeRanges, rangesLength, RangeBuffer, subtractRanges } from '../mask/range-list.js';
import { tidyPieces } from './pieces.js';
import { overlapChunking, padStages, solveOverlapStages } from './overlap.js';
import type { DispatchMeta } from './plan.js';
import type { SliceList } from '../mask/slice-list.js';

/**
 * Visits every mask entry of chunk `c` against every range of `ranges` (sorted, disjoint
 * [start, end) pairs) that its keys overlap, with the keys clipped to the range: the one walk
 * behind host slicing, overlap-chunk costs and stage slicing.
 */
function forEachEntryInRanges(
  buckets: ChunkBuckets,
  c: number,
  ranges: Int32Array,
  visit: (q0: number, q1: number, a: number, b: number, dLo: number, dHi: number, p: number) => void,
): void {
  const nRanges = ranges.length / 2;
  for (let i = buckets.offsets[c]; i < buckets.offsets[c + 1]; i++) {
    const q0 = buckets.q0[i];
    const q1 = buckets.q1[i];
    const k0 = buckets.k0[i];
    const k1 = buckets.k1[i];
    const t = buckets.type[i];
    const dLo = bandLo(t, q0, k0);
    const dHi = bandHi(t, q1, k1);
    for (let p = firstRangeEndingAfter(ranges, k0); p < nRanges && ranges[2 * p] < k1; p++) {
      visit(q0, q1, Math.max(k0, ranges[2 * p]), Math.min(k1, ranges[2 * p + 1]), dLo, dHi, p);
    }
  }
}

/** One rank's plan before communication arguments are attached. */
export interface RankSlicing {
  readonly rank: number;
  readonly hostGlobalRanges: Int32Array;
  readonly hostSlices: SliceList;
  readonly hostArea: number;
  readonly remoteGlobalKRanges: Int32Array;
}

/** Host slices and remote ranges of one rank (the work before overlap stages are known). */
export function planRankHost(rank: number, dispatch: DispatchMeta, buckets: ChunkBuckets, scratch: SliceBuffer = new SliceBuffer()): RankSlicing {
  const cs = dispatch.chunkSize;
  const part = dispatch.partitions[rank];
  const host = dispatch.hostGlobalRangesPerRank[rank];
  const hostLocal = localOffsets(host);

  // Keys read by this rank's rows, merged, minus the keys it holds.
  let nEntries = 0;
  for (const c of part) nEntries += buckets.offsets[c + 1] - buckets.offsets[c];
  const read = new Int32Array(2 * nEntries);
  let w = 0;
  for (const c of part) {
    for (let i = buckets.offsets[c]; i < buckets.offsets[c + 1]; i++) {
      read[w++] = buckets.k0[i];
      read[w++] = buckets.k1[i];
    }
  }
  const remote = subtractRanges(mergeRanges(read), host);

  const out = new SliceBuffer(Math.max(16, 2 * nEntries));
  let area = 0;
  for (let idx = 0; idx < part.length; idx++) {
    const c = part[idx];
    const qShift = idx * cs - c * cs;
    const chunkStart = out.length;
    forEachEntryInRanges(buckets, c, host, (q0, q1, a, b, dLo, dHi, p) => {
      area += emitBand(out, q0, q1, a, b, dLo, dHi, qShift, hostLocal[p] - host[2 * p], 0);
    });
    tidyPieces(out, chunkStart, scratch);
  }
  return { rank, hostGlobalRanges: host, hostSlices: out.toSliceList(), hostArea: area, remoteGlobalKRanges: remote };
}

/** One rank's overlap stages: stage buffers (global) and remote slices (local q × stage buffer k). */
export interface RankStages {
  readonly stageBufferGlobalKRanges: Int32Array[];
  readonly remoteSlices: SliceList[];
  readonly remoteArea: Float64Array;
}

/**
 * Splits a rank's remote keys into overlap chunks, picks its stages (stage bounds over the chunks)
 * with the overlap solver, and returns the bounds in remote-token coordinates: stage s holds
 * remote tokens [tokenBounds[s], tokenBounds[s+1]) of the rank's remote ranges packed end to end.
 */
export function planRankStageBounds(
  rank: number,
  slicing: RankSlicing,
  dispatch: DispatchMeta,
  buckets: ChunkBuckets,
  config: ResolvedOverlapConfig,
): Int32Array {
  const remote = slicing.remoteGlobalKRanges;
  const total = rangesLength(remote);
  const { chunkSize: ocs, numChunks } = overlapChunking(total, config.minChunkSize, config.maxNumChunks);
  const chunkComm = new Float64Array(numChunks);
  for (let j = 0; j < numChunks; j++) chunkComm[j] = config.commCostFactor * (Math.min(total, (j + 1) * ocs) - j * ocs);
  const chunkCalc = new Float64Array(numChunks);
  const needCosts = config.mode === 'dynamic' || config.alg === 'greedy';
  if (needCosts && numChunks > 0) {
    // Area of this rank's rows against each overlap chunk.
    const remoteLocal = localOffsets(remote);
    for (const c of dispatch.partitions[rank]) {
      forEachEntryInRanges(buckets, c, remote, (q0, q1, a, e, dLo, dHi, p) => {
        while (a < e) {
          const tok = remoteLocal[p] + (a - remote[2 * p]);
          const j = Math.floor(tok / ocs);
          const b = Math.min(e, a + ((j + 1) * ocs - tok));
          chunkCalc[j] += config.calcCostFactor * emitBand(null, q0, q1, a, b, dLo, dHi, 0, 0, 0);
          a = b;
        }
      });
    }
  }
  const chunkBounds = solveOverlapStages(config, config.calcCostFactor * slicing.hostArea, chunkComm, chunkCalc);
  const tokenBounds = new Int32Array(chunkBounds.length);
  for (let s = 0; s < chunkBounds.length; s++) tokenBounds[s] = Math.min(total, chunkBounds[s] * ocs);
  return tokenBounds;
}

/**
 * Builds the stage buffers and remote slices of one rank for the given stage bounds (in remote
 * token coordinates; padded to the plan's degree beforehand).
 */
export function planRankStages(
  rank: number,
  slicing: RankSlicing,
  tokenBounds: Int32Array,
  dispatch: DispatchMeta,
  buckets: ChunkBuckets,
  scratch: SliceBuffer = new SliceBuffer(),
): RankStages {
  const degree = tokenBounds.length - 1;
  const remote = slicing.remoteGlobalKRanges;
  const cs = dispatch.chunkSize;

  // Remote ranges cut at stage boundaries: piece i is [pStart, pEnd) in stage pStage at buffer offset pOffset.
  const pStart: number[] = [];
  const pEnd: number[] = [];
  const pStage: number[] = [];
  const pOffset: number[] = [];
  const stageRanges = Array.from({ length: degree }, () => new RangeBuffer(4));
  let tok = 0;
  let s = 0;
  for (let p = 0; p < remote.length; p += 2) {
    let a = remote[p];
    const e = remote[p + 1];
    while (a < e) {
      while (s < degree - 1 && tok >= tokenBounds[s + 1]) s++;
      const b = Math.min(e, a + (s < degree - 1 ? tokenBounds[s + 1] - tok : e - a));
      pStart.push(a);
      pEnd.push(b);
      pStage.push(s);
      pOffset.push(tok - tokenBounds[s]);
      stageRanges[s].pushMerged(a, b);
      tok += b - a;
      a = b;
    }
  }
  const nPieces = pStart.length;
  const pieceBounds = new Int32Array(2 * nPieces);
  for (let i = 0; i < nPieces; i++) {
    pieceBounds[2 * i] = pStart[i];
    pieceBounds[2 * i + 1] = pEnd[i];
  }

  const outs = Array.from({ length: degree }, () => new SliceBuffer(16));
  const areas = new Float64Array(degree);
  const chunkStart = new Int32Array(degree);
  const part = dispatch.partitions[rank];
  if (nPieces > 0) {
    for (let idx = 0; idx < part.length; idx++) {
      const c = part[idx];
      const qShift = idx * cs - c * cs;
      for (let st = 0; st < degree; st++) chunkStart[st] = outs[st].length;
      forEachEntryInRanges(buckets, c, pieceBounds, (q0, q1, a, b, dLo, dHi, p) => {
        const st = pStage[p];
        areas[st] += emitBand(outs[st], q0, q1, a, b, dLo, dHi, qShift, pOffset[p] - pStart[p], st);
      });
      for (let st = 0; st < degree; st++) if (outs[st].length - chunkStart[st] > 1) tidyPieces(outs[st], chunkStart[st], scratch);
    }
  }
  return {
    stageBufferGlobalKRanges: stageRanges.map((r) => r.toArray()),
    remoteSlices: outs.map((o) => o.toSliceList()),
    remoteArea: areas,
  };
}

/**
 * Host slicing, overlap stages and remote slicing for every rank. In dynamic mode each rank picks
 * its own degree and the plan takes the largest, the others getting empty trailing stages.
 */
export function planAllRanks(
  dispatch: DispatchMeta,
  buckets: ChunkBuckets,
  config: ResolvedOverlapConfig,
  onPhase?: (phase: 'host' | 'overlap' | 'remote') => void,
): { slicing: RankSlicing[]; stages: RankStages[]; degree: number } {
  const scratch = new SliceBuffer(64);
  const slicing: RankSlicing[] = [];
  for (let r = 0; r < dispatch.cpSize; r++) slicing.push(planRankHost(r, dispatch, buckets, scratch));
  onPhase?.('host');
  const bounds: Int32Array[] = [];
  let degree = 1;
  for (let r = 0; r < dispatch.cpSize; r++) {
    const b = planRankStageBounds(r, slicing[r], dispatch, buckets, config);
    bounds.push(b);
    degree = Math.max(degree, b.length - 1);
  }
  onPhase?.('overlap');
  const stages: RankStages[] = [];
  for (let r = 0; r < dispatch.cpSize; r++) stages.push(planRankStages(r, slicing[r], padStages(bounds[r], degree), dispatch, buckets, scratch));
  onPhase?.('remote');
  return { slicing, stages, degree };
}
