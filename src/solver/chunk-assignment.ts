/**
 * Dispatch: which rank holds which chunks. The algorithms only see per-chunk workloads (and, for
 * the affinity ones, the chunks' key ranges or source slices); all of them are deterministic, so
 * every rank that runs the solver on its own gets the same answer. The result, DispatchMeta, is
 * the permutation of the sequence that every later stage (dist-attn plan, dispatch/undispatch,
 * position ids) works in.
 */
import { InvalidArgumentError } from '../errors.js';
import { chunkEnd, type ChunkBuckets, type Chunking } from './chunking.js';
import type { ResolvedDispatchAlg } from './config.js';
import { mergeRanges, RangeBuffer } from '../mask/range-list.js';
import type { DispatchMeta } from './plan.js';

/** A binary min-heap of buckets keyed by (load, bucket id), the reference's tuple order. */
class BucketHeap {
  private loads: number[] = [];
  private ids: number[] = [];

  get size(): number {
    return this.ids.length;
  }

  private less(i: number, j: number): boolean {
    return this.loads[i] < this.loads[j] || (this.loads[i] === this.loads[j] && this.ids[i] < this.ids[j]);
  }

  private swap(i: number, j: number): void {
    const l = this.loads[i];
    this.loads[i] = this.loads[j];
    this.loads[j] = l;
    const d = this.ids[i];
    this.ids[i] = this.ids[j];
    this.ids[j] = d;
  }

  push(load: number, id: number): void {
    this.loads.push(load);
    this.ids.push(id);
    let i = this.ids.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  /** Removes and returns the smallest entry as [load, id]. */
  pop(): [number, number] {
    const top: [number, number] = [this.loads[0], this.ids[0]];
    const lastLoad = this.loads.pop() as number;
    const lastId = this.ids.pop() as number;
    if (this.ids.length > 0) {
      this.loads[0] = lastLoad;
      this.ids[0] = lastId;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.ids.length && this.less(l, m)) m = l;
        if (r < this.ids.length && this.less(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

function toPartitions(bucketOf: Int32Array, cpSize: number): Int32Array[] {
  const counts = new Int32Array(cpSize);
  for (let c = 0; c < bucketOf.length; c++) counts[bucketOf[c]]++;
  const parts = Array.from({ length: cpSize }, (_, b) => new Int32Array(counts[b]));
  const fill = new Int32Array(cpSize);
  for (let c = 0; c < bucketOf.length; c++) parts[bucketOf[c]][fill[bucketOf[c]]++] = c;
  return parts;
}

/**
 * Longest processing time first with a cap of ceil(n/P) jobs per bucket: jobs in descending
 * weight (ties: larger id first, as a reversed stable ascending sort), each to the least loaded
 * bucket that still has room (ties: lower bucket id). Returns the bucket of every job.
 * `balancedCounts` also keeps every bucket at floor(n/P) or ceil(n/P) jobs: once n mod P buckets
 * hold ceil(n/P), the others fill at floor(n/P) (so no bucket is left empty when n >= P).
 */
export function lptAssign(weights: ArrayLike<number>, numBuckets: number, cap = Math.ceil(weights.length / numBuckets), balancedCounts = false): Int32Array {
  const n = weights.length;
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => weights[b] - weights[a] || b - a);
  const heap = new BucketHeap();
  for (let b = 0; b < numBuckets; b++) heap.push(0, b);
  const count = new Int32Array(numBuckets);
  const bucketOf = new Int32Array(n);
  const floorCap = Math.floor(n / numBuckets);
  let bigLeft = balancedCounts && floorCap < cap ? n % numBuckets : numBuckets;
  for (const job of order) {
    let load: number;
    let b: number;
    for (;;) {
      [load, b] = heap.pop();
      // A full bucket leaves the heap for good.
      if (count[b] < cap && (bigLeft > 0 || count[b] < floorCap)) break;
    }
    bucketOf[job] = b;
    if (++count[b] === cap && balancedCounts) bigLeft--;
    heap.push(load + weights[job], b);
  }
  return bucketOf;
}

/** MinHeapDispatchAlg: LPT over the chunk areas (`balancedCounts`: see lptAssign; used for uneven shards). */
export function minHeapDispatch(areas: ArrayLike<number>, cpSize: number, balancedCounts = false): Int32Array[] {
  return toPartitions(lptAssign(areas, cpSize, Math.ceil(areas.length / cpSize), balancedCounts), cpSize);
}

/** SequentialDispatchAlg: rank b takes chunks [offset, offset + size), the first n % P ranks one more. */
export function sequentialDispatch(numChunks: number, cpSize: number): Int32Array[] {
  const base = Math.floor(numChunks / cpSize);
  const extra = numChunks % cpSize;
  const parts: Int32Array[] = [];
  let offset = 0;
  for (let b = 0; b < cpSize; b++) {
    const size = base + (b < extra ? 1 : 0);
    parts.push(Int32Array.from({ length: size }, (_, i) => offset + i));
    offset += size;
  }
  return parts;
}

/** Merged key ranges of every chunk's entries: what a chunk reads. */
export function chunkKeyRanges(buckets: ChunkBuckets): Int32Array[] {
  const out: Int32Array[] = [];
  for (let c = 0; c < buckets.numChunks; c++) {
    const a = buckets.offsets[c];
    const e = buckets.offsets[c + 1];
    const r = new Int32Array(2 * (e - a));
    for (let i = a; i < e; i++) {
      r[2 * (i - a)] = buckets.k0[i];
      r[2 * (i - a) + 1] = buckets.k1[i];
    }
    out.push(mergeRanges(r));
  }
  return out;
}

function intersectionSize(a: Int32Array, b: Int32Array): number {
  let i = 0;
  let j = 0;
  let n = 0;
  while (i < a.length && j < b.length) {
    const s = Math.max(a[i], b[j]);
    const e = Math.min(a[i + 1], b[j + 1]);
    if (e > s) n += e - s;
    if (a[i + 1] < b[j + 1]) i += 2;
    else j += 2;
  }
  return n;
}

function unionRanges(a: Int32Array, b: Int32Array): Int32Array {
  const out = new RangeBuffer((a.length + b.length) / 2 + 1);
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (j >= b.length || (i < a.length && a[i] <= b[j])) {
      out.pushMerged(a[i], a[i + 1]);
      i += 2;
    } else {
      out.pushMerged(b[j], b[j + 1]);
      j += 2;
    }
  }
  return out.toArray();
}

/**
 * ToppHeapDispatchAlg: jobs by descending area (ties: smaller id first); each job looks at the
 * m = max(1, ceil(P·topP)) least loaded buckets with room and joins the one whose accumulated key
 * ranges overlap its own most (first, i.e. least loaded, on ties). Overlap is the plain size of the
 * set intersection; the reference's composite measure breaks ties differently.
 */
export function toppHeapDispatch(areas: ArrayLike<number>, chunkKeys: readonly Int32Array[], cpSize: number, topP: number): Int32Array[] {
  const n = areas.length;
  const cap = Math.ceil(n / cpSize);
  const m = Math.max(1, Math.ceil(cpSize * topP));
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => areas[b] - areas[a] || a - b);
  const heap = new BucketHeap();
  for (let b = 0; b < cpSize; b++) heap.push(0, b);
  const count = new Int32Array(cpSize);
  const affinity: Int32Array[] = Array.from({ length: cpSize }, () => new Int32Array(0));
  const bucketOf = new Int32Array(n);
  for (const job of order) {
    const candidates: Array<[number, number]> = [];
    while (heap.size > 0 && candidates.length < m) {
      const [load, b] = heap.pop();
      if (count[b] < cap) candidates.push([load, b]);
    }
    let pick = 0;
    let best = -1;
    for (let i = 0; i < candidates.length; i++) {
      const overlap = intersectionSize(chunkKeys[job], affinity[candidates[i][1]]);
      if (overlap > best) {
        best = overlap;
        pick = i;
      }
    }
    const [load, b] = candidates[pick];
    bucketOf[job] = b;
    count[b]++;
    affinity[b] = unionRanges(affinity[b], chunkKeys[job]);
    heap.push(load + areas[job], b);
    for (let i = 0; i < candidates.length; i++) if (i !== pick) heap.push(candidates[i][0], candidates[i][1]);
  }
  return toPartitions(bucketOf, cpSize);
}

/**
 * SortedSequentialSelectAlg: mask slices ("samples") by descending area; each takes the least
 * loaded bucket and places its chunks there in descending order, handing over to the next least
 * loaded bucket when the bucket fills (or, with allocationRatio < 1, after that share of the
 * sample's chunks). A chunk shared by two samples goes with the larger one. Chunks no sample
 * touched fill the buckets left with room, in ascending id order.
 */
export function sortedSequentialDispatch(buckets: ChunkBuckets, cpSize: number, allocationRatio: number): Int32Array[] {
  const n = buckets.numChunks;
  const cap = Math.ceil(n / cpSize);
  const areas = buckets.chunkAreas;
  const nSamples = buckets.sampleAreas.length;
  const chunksOf: number[][] = Array.from({ length: nSamples }, () => []);
  for (let c = 0; c < n; c++) {
    for (let i = buckets.offsets[c]; i < buckets.offsets[c + 1]; i++) {
      const list = chunksOf[buckets.sampleId[i]];
      if (list[list.length - 1] !== c) list.push(c);
    }
  }
  const samples = Array.from({ length: nSamples }, (_, i) => i);
  samples.sort((a, b) => buckets.sampleAreas[b] - buckets.sampleAreas[a] || a - b);
  const heap = new BucketHeap();
  for (let b = 0; b < cpSize; b++) heap.push(0, b);
  const count = new Int32Array(cpSize);
  const bucketOf = new Int32Array(n).fill(-1);
  for (const s of samples) {
    if (heap.size === 0) break;
    let [load, b] = heap.pop();
    let k = 0;
    const chunks = chunksOf[s];
    const maxK = Math.max(1, Math.ceil(allocationRatio * chunks.length));
    for (let i = chunks.length - 1; i >= 0; i--) {
      const c = chunks[i];
      if (bucketOf[c] >= 0) continue;
      if (count[b] >= cap) break; // every bucket is full: nothing left to place
      bucketOf[c] = b;
      count[b]++;
      load += areas[c];
      k++;
      if (count[b] === cap && heap.size > 0) {
        [load, b] = heap.pop();
        k = 0;
      } else if (allocationRatio < 1 && k === maxK && heap.size > 0) {
        heap.push(load, b);
        [load, b] = heap.pop();
        k = 0;
      }
    }
    if (count[b] < cap) heap.push(load, b);
  }
  // Chunks left over (no sample touched them, or every sample was placed) fill the open buckets.
  let c = 0;
  while (heap.size > 0) {
    const [, b] = heap.pop();
    while (count[b] < cap) {
      while (c < n && bucketOf[c] >= 0) c++;
      if (c >= n) break;
      bucketOf[c] = b;
      count[b]++;
    }
  }
  for (let b = 0, cc = 0; cc < n; cc++) {
    // Safety net for degenerate inputs (never reached when every bucket can take cap chunks).
    if (bucketOf[cc] >= 0) continue;
    while (count[b] >= cap) b++;
    bucketOf[cc] = b;
    count[b]++;
  }
  return toPartitions(bucketOf, cpSize);
}

/**
 * Improves an equal-count assignment by swapping jobs between the most loaded bucket and any other,
 * taking the swap that lowers their larger load the most, until no swap lowers the maximum.
 */
export function refineBySwaps(weights: ArrayLike<number>, bucketOf: Int32Array, numBuckets: number, maxRounds = 4 * weights.length + 16): void {
  const loads = new Float64Array(numBuckets);
  const jobs: number[][] = Array.from({ length: numBuckets }, () => []);
  for (let j = 0; j < weights.length; j++) {
    loads[bucketOf[j]] += weights[j];
    jobs[bucketOf[j]].push(j);
  }
  for (let round = 0; round < maxRounds; round++) {
    let m = 0;
    for (let b = 1; b < numBuckets; b++) if (loads[b] > loads[m]) m = b;
    let bestPeak = loads[m];
    let bx = -1;
    let by = -1;
    let bb = -1;
    for (let b = 0; b < numBuckets; b++) {
      if (b === m) continue;
      const gap = loads[m] - loads[b];
      if (gap <= 0) continue;
      for (const x of jobs[m]) {
        for (const y of jobs[b]) {
          const delta = weights[x] - weights[y];
          if (delta <= 0 || delta >= gap) continue;
          const peak = Math.max(loads[m] - delta, loads[b] + delta);
          if (peak < bestPeak) {
            bestPeak = peak;
            bx = x;
            by = y;
            bb = b;
          }
        }
      }
    }
    if (bx < 0) return;
    const delta = weights[bx] - weights[by];
    loads[m] -= delta;
    loads[bb] += delta;
    jobs[m][jobs[m].indexOf(bx)] = by;
    jobs[bb][jobs[bb].indexOf(by)] = bx;
    bucketOf[bx] = bb;
    bucketOf[by] = m;
  }
}

/**
 * Ours ("contiguous-runs"). Token balance fixes k = n/P chunks per rank, so a rank can only be
 * contiguous by taking whole runs of consecutive chunks.
 *   1. For run lengths L over the divisors of k, longest first, cut the chunks into aligned runs,
 *      assign runs by LPT (k/L per rank) and refine by swaps; keep the first L whose max/mean area
 *      is within maxImbalance, otherwise the best balanced (L = 1 is LPT plus refinement, never
 *      worse balanced than min-heap's LPT).
 *   2. With the chunks' key ranges given, swap chunks between ranks to put neighbouring chunks on
 *      one rank wherever that lowers the k/v tokens moved, without raising the maximum area past
 *      max(maxImbalance·mean, the maximum after step 1).
 * Long runs mean a rank's queries mostly read keys it already holds (a document stays on one
 * rank), so fewer and shorter remote k/v ranges.
 */
export function contiguousRunsDispatch(areas: ArrayLike<number>, cpSize: number, maxImbalance: number, chunkKeys?: readonly Int32Array[], chunkSize = 1): Int32Array[] {
  const n = areas.length;
  if (n % cpSize !== 0) return minHeapDispatch(areas, cpSize);
  const k = n / cpSize;
  let total = 0;
  for (let c = 0; c < n; c++) total += areas[c];
  const mean = total / cpSize;
  let best: Int32Array | null = null;
  let bestMax = Infinity;
  for (let L = k; L >= 1; L--) {
    if (k % L !== 0) continue;
    const runs = n / L;
    const runWeights = new Float64Array(runs);
    for (let c = 0; c < n; c++) runWeights[Math.floor(c / L)] += areas[c];
    const runBucket = lptAssign(runWeights, cpSize, k / L);
    refineBySwaps(runWeights, runBucket, cpSize);
    const loads = new Float64Array(cpSize);
    for (let r = 0; r < runs; r++) loads[runBucket[r]] += runWeights[r];
    let max = 0;
    for (let b = 0; b < cpSize; b++) max = Math.max(max, loads[b]);
    const bucketOf = new Int32Array(n);
    for (let c = 0; c < n; c++) bucketOf[c] = runBucket[Math.floor(c / L)];
    if (max < bestMax) {
      bestMax = max;
      best = bucketOf;
    }
    if (mean === 0 || max <= maxImbalance * mean) break;
  }
  const bucketOf = best as Int32Array;
  if (chunkKeys !== undefined && mean > 0) localitySwaps(areas, bucketOf, cpSize, chunkKeys, chunkSize, Math.max(maxImbalance * mean, bestMax));
  return toPartitions(bucketOf, cpSize);
}

/**
 * k/v tokens a rank must fetch: what its chunks read, minus what it holds. The chunk list is
 * `chunks` with `out` replaced by `inn` (pass out = -1 for none), so a candidate swap is priced
 * without building its list. Allocation-free: this runs tens of thousands of times per plan.
 */
class RemoteCounter {
  private pairs = new Int32Array(64);

  constructor(
    private readonly chunkKeys: readonly Int32Array[],
    private readonly chunkSize: number,
  ) {}

  count(chunks: readonly number[], out: number, inn: number): number {
    let m = 0;
    for (const c0 of chunks) {
      const keys = this.chunkKeys[c0 === out ? inn : c0];
      if (m + keys.length > this.pairs.length) {
        const grown = new Int32Array(2 * (m + keys.length));
        grown.set(this.pairs.subarray(0, m));
        this.pairs = grown;
      }
      // Insertion sort by start: the lists are short and nearly sorted.
      for (let i = 0; i < keys.length; i += 2) {
        let j = m;
        while (j > 0 && this.pairs[j - 2] > keys[i]) {
          this.pairs[j] = this.pairs[j - 2];
          this.pairs[j + 1] = this.pairs[j - 1];
          j -= 2;
        }
        this.pairs[j] = keys[i];
        this.pairs[j + 1] = keys[i + 1];
        m += 2;
      }
    }
    // Merge in place, then subtract what each held chunk covers (binary search per chunk).
    const p = this.pairs;
    let r = 0;
    let total = 0;
    for (let i = 0; i < m; i += 2) {
      if (r > 0 && p[i] <= p[r - 1]) {
        if (p[i + 1] > p[r - 1]) {
          total += p[i + 1] - p[r - 1];
          p[r - 1] = p[i + 1];
        }
      } else {
        p[r] = p[i];
        p[r + 1] = p[i + 1];
        total += p[i + 1] - p[i];
        r += 2;
      }
    }
    const cs = this.chunkSize;
    for (const c0 of chunks) {
      const c = c0 === out ? inn : c0;
      const lo = c * cs;
      const hi = lo + cs;
      let a = 0;
      let b = r / 2;
      while (a < b) {
        const mid = (a + b) >>> 1;
        if (p[2 * mid + 1] <= lo) a = mid + 1;
        else b = mid;
      }
      for (let i = 2 * a; i < r && p[i] < hi; i += 2) total -= Math.min(hi, p[i + 1]) - Math.max(lo, p[i]);
    }
    return total;
  }
}

/**
 * Greedy passes over the chunks: where chunk c and its neighbour sit on different ranks, try
 * swapping c with a chunk of the neighbour's rank (or the neighbour with a chunk of c's rank);
 * take the swap that saves the most k/v tokens among those that keep both loads within
 * `maxLoad`. Stops when a pass finds nothing, or after a bounded number of evaluations.
 */
function localitySwaps(areas: ArrayLike<number>, bucketOf: Int32Array, numBuckets: number, chunkKeys: readonly Int32Array[], chunkSize: number, maxLoad: number): void {
  const n = areas.length;
  const members: number[][] = Array.from({ length: numBuckets }, () => []);
  const loads = new Float64Array(numBuckets);
  for (let c = 0; c < n; c++) {
    members[bucketOf[c]].push(c);
    loads[bucketOf[c]] += areas[c];
  }
  const counter = new RemoteCounter(chunkKeys, chunkSize);
  const comm = members.map((m) => counter.count(m, -1, -1));
  let budget = 16 * n + 4096; // swap pricings: bounds the work to about 16 candidates per chunk
  for (let pass = 0; pass < 8 && budget > 0; pass++) {
    let improved = false;
    for (let c = 0; c < n && budget > 0; c++) {
      for (const nb of [c - 1, c + 1]) {
        if (nb < 0 || nb >= n || bucketOf[nb] === bucketOf[c]) continue;
        // Bring c next to nb (swap c with some y of nb's rank), or nb next to c.
        let bestGain = 0;
        let bx = -1;
        let by = -1;
        for (const [x, target] of [
          [c, bucketOf[nb]],
          [nb, bucketOf[c]],
        ] as const) {
          const a = bucketOf[x];
          for (const y of members[target]) {
            if (y === nb || y === c) continue;
            const delta = areas[y] - areas[x];
            if (loads[a] + delta > maxLoad || loads[target] - delta > maxLoad) continue;
            if (budget-- <= 0) break;
            const gain = comm[a] + comm[target] - counter.count(members[a], x, y) - counter.count(members[target], y, x);
            if (gain > bestGain) {
              bestGain = gain;
              bx = x;
              by = y;
            }
          }
        }
        if (bx < 0) continue;
        const a = bucketOf[bx];
        const t = bucketOf[by];
        members[a][members[a].indexOf(bx)] = by;
        members[t][members[t].indexOf(by)] = bx;
        // Sorted member lists keep the gathered key ranges nearly sorted for the pricing.
        members[a].sort((u, v) => u - v);
        members[t].sort((u, v) => u - v);
        loads[a] += areas[by] - areas[bx];
        loads[t] += areas[bx] - areas[by];
        bucketOf[bx] = t;
        bucketOf[by] = a;
        comm[a] = counter.count(members[a], -1, -1);
        comm[t] = counter.count(members[t], -1, -1);
        improved = true;
      }
    }
    if (!improved) break;
  }
}

/**
 * Runs the configured algorithm; the result has every rank's chunk ids in ascending order. With
 * an uneven shard (numChunks need not be a multiple of cp) min-heap keeps chunk counts within one
 * of each other; the other algorithms cap counts at ceil(numChunks / cp), and makeDispatchMeta
 * refuses an assignment that leaves a rank empty.
 */
export function solveDispatch(buckets: ChunkBuckets, cpSize: number, alg: ResolvedDispatchAlg): Int32Array[] {
  if (cpSize === 1) return [Int32Array.from({ length: buckets.numChunks }, (_, i) => i)];
  switch (alg.type) {
    case 'min-heap':
      return minHeapDispatch(buckets.chunkAreas, cpSize, buckets.numChunks % cpSize !== 0);
    case 'sequential':
      return sequentialDispatch(buckets.numChunks, cpSize);
    case 'topp-heap':
      return toppHeapDispatch(buckets.chunkAreas, chunkKeyRanges(buckets), cpSize, alg.topP);
    case 'sorted-sequential':
      return sortedSequentialDispatch(buckets, cpSize, alg.allocationRatio);
    case 'contiguous-runs':
      return contiguousRunsDispatch(buckets.chunkAreas, cpSize, alg.maxImbalance, chunkKeyRanges(buckets), buckets.chunkSize);
  }
}

/**
 * Assembles the DispatchMeta from partitions: the permutation (rank 0's chunks, then rank 1's, ...)
 * and its inverse, every rank's merged global ranges, length and area. An even shard needs
 * numChunks / cp chunks on every rank; an uneven one at least one.
 */
export function makeDispatchMeta(
  chunking: Chunking,
  buckets: ChunkBuckets,
  partitions: readonly Int32Array[],
  algorithm: ResolvedDispatchAlg,
  maxValidIds: number,
): DispatchMeta {
  const { cpSize, numChunks, chunkSize } = chunking;
  if (partitions.length !== cpSize) throw new InvalidArgumentError('partitions', 'must have one entry per rank', `${partitions.length} for cp ${cpSize}`);
  const permIdxs = new Int32Array(numChunks);
  const unpermIdxs = new Int32Array(numChunks).fill(-1);
  const areaPerRank = new Float64Array(cpSize);
  const shardSeqlens = new Int32Array(cpSize);
  const hostRangesPerRank: Int32Array[] = [];
  let p = 0;
  for (let r = 0; r < cpSize; r++) {
    const part = partitions[r];
    if (part.length === 0) {
      throw new InvalidArgumentError('partitions', 'every rank needs at least one chunk', `rank ${r} has none${chunking.unevenShard ? ' (uneven shard: use min-heap, or a smaller chunkSize)' : ''}`);
    }
    if (!chunking.unevenShard && part.length * chunkSize !== chunking.shardSeqlen) {
      throw new InvalidArgumentError('partitions', `every rank must hold ${chunking.shardSeqlen / chunkSize} chunks`, `rank ${r} holds ${part.length}`);
    }
    const ranges = new RangeBuffer(part.length);
    for (let i = 0; i < part.length; i++) {
      const c = part[i];
      if (i > 0 && c <= part[i - 1]) throw new InvalidArgumentError(`partitions[${r}]`, 'chunk ids must be strictly ascending');
      if (c < 0 || c >= numChunks || unpermIdxs[c] >= 0) throw new InvalidArgumentError(`partitions[${r}]`, 'must hold each chunk id exactly once over all ranks', `chunk ${c}`);
      permIdxs[p] = c;
      unpermIdxs[c] = p++;
      areaPerRank[r] += buckets.chunkAreas[c];
      const end = chunkEnd(chunking, c);
      shardSeqlens[r] += end - c * chunkSize;
      ranges.pushMerged(c * chunkSize, end);
    }
    hostRangesPerRank.push(ranges.toArray());
  }
  return {
    cpSize,
    unpaddedSeqlen: chunking.unpaddedSeqlen,
    paddedSeqlen: chunking.paddedSeqlen,
    padSize: chunking.padSize,
    chunkSize,
    numChunks,
    shardSeqlen: Math.max(...shardSeqlens),
    unevenShard: chunking.unevenShard,
    shardSeqlens,
    maxValidIds,
    algorithm: algorithm.type,
    partitions: partitions.map((x) => Int32Array.from(x)),
    permIdxs,
    unpermIdxs,
    chunkAreas: Float64Array.from(buckets.chunkAreas),
    areaPerRank,
    hostGlobalRangesPerRank: hostRangesPerRank,
  };
}

/**
 * Global position of every local token of `rank`, in local order (its chunks ascending), clamped
 * to maxValidIds − 1 so pad tokens repeat the last real position.
 */
export function positionIds(meta: DispatchMeta, rank: number): Int32Array {
  if (!Number.isInteger(rank) || rank < 0 || rank >= meta.cpSize) throw new InvalidArgumentError('rank', `must be in [0, ${meta.cpSize})`, `got ${rank}`);
  const out = new Int32Array(meta.shardSeqlens[rank]);
  const clamp = Math.max(0, meta.maxValidIds - 1);
  let w = 0;
  for (const c of meta.partitions[rank]) {
    for (let g = c * meta.chunkSize; g < chunkEnd(meta, c); g++) out[w++] = Math.min(g, clamp);
  }
  return out;
}
