/**
 * Chunking: the effective dispatch chunk size, the padding that makes the sequence a multiple of
 * chunkSize × cp (or, with an uneven shard, no padding and a shorter last chunk), and every
 * chunk's share of the mask (each slice clipped exactly to the chunk's query rows, with its
 * area). This is the input of the dispatch algorithms and of the per-rank slicing; nothing here
 * knows about ranks yet.
 *
 * Chunk c always spans [c·chunkSize, chunkEnd(c)) of the padded sequence, so only the globally
 * last chunk can be short; as every rank keeps its chunks in ascending order, that chunk is the
 * last of whichever rank holds it, and local chunk i of any rank starts at local row i·chunkSize.
 */
import { AttnRangeError, InvalidArgumentError, MaskError } from '../errors.js';
import { checkSliceBounds, sliceCount, type SliceList } from '../mask/slice-list.js';
import type { ResolvedDispatchConfig } from './config.js';
import { bandHi, bandLo, sliceArea } from '../mask/geometry.js';

export interface Chunking {
  readonly cpSize: number;
  /** N: the caller's sequence length. */
  readonly unpaddedSeqlen: number;
  /** N + padSize: a multiple of chunkSize × cpSize. */
  readonly paddedSeqlen: number;
  readonly padSize: number;
  readonly chunkSize: number;
  readonly numChunks: number;
  /**
   * Tokens per rank: every rank's (numChunks / cpSize chunks) with an even shard; with an uneven
   * shard, the most any rank holds (DispatchMeta.shardSeqlens has each rank's).
   */
  readonly shardSeqlen: number;
  /** No padding; the last chunk may be short and ranks may hold different numbers of tokens. */
  readonly unevenShard: boolean;
}

/** End (exclusive) of chunk c in the padded sequence: only the last chunk of an uneven shard is short. */
export function chunkEnd(chunking: Pick<Chunking, 'chunkSize' | 'paddedSeqlen'>, c: number): number {
  return Math.min((c + 1) * chunking.chunkSize, chunking.paddedSeqlen);
}

/** The smallest pad that makes totalSeqlen + pad a multiple of chunkSize × cpSize: (−N) mod (chunk·cp). */
export function computePadSize(totalSeqlen: number, cpSize: number, chunkSize: number): number {
  checkSeqlen(totalSeqlen, 'totalSeqlen');
  checkCpSize(cpSize);
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) throw new InvalidArgumentError('chunkSize', 'must be a positive integer', `got ${String(chunkSize)}`);
  const unit = chunkSize * cpSize;
  return (unit - (totalSeqlen % unit)) % unit;
}

export function checkCpSize(cpSize: number, argument = 'cpSize'): void {
  if (!Number.isSafeInteger(cpSize) || cpSize < 1) throw new InvalidArgumentError(argument, 'must be an integer >= 1', `got ${String(cpSize)}`);
}

function checkSeqlen(n: number, argument: string): void {
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(argument, 'must be an integer >= 1', `got ${String(n)}`);
  if (n > 2 ** 31 - 1) throw new InvalidArgumentError(argument, 'must fit in int32', `got ${n}`);
}

/**
 * The reference's chunk size rule: auto = ceil(N / (minChunksPerRank · cp)); a user chunk size is
 * only an upper bound on it, so that each rank gets at least about minChunksPerRank chunks.
 * cp == 1 is a single chunk of N tokens with no padding. An uneven shard cuts ceil(N / chunk)
 * chunks with no padding.
 */
export function resolveChunking(totalSeqlen: number, cpSize: number, config: ResolvedDispatchConfig): Chunking {
  checkSeqlen(totalSeqlen, 'totalSeqlen');
  checkCpSize(cpSize);
  const unevenShard = config.unevenShard;
  if (cpSize === 1) {
    return { cpSize, unpaddedSeqlen: totalSeqlen, paddedSeqlen: totalSeqlen, padSize: 0, chunkSize: totalSeqlen, numChunks: 1, shardSeqlen: totalSeqlen, unevenShard };
  }
  const auto = Math.ceil(totalSeqlen / (config.minChunksPerRank * cpSize));
  const chunkSize = config.chunkSize === null ? auto : Math.min(auto, config.chunkSize);
  if (Math.ceil(totalSeqlen / chunkSize) < cpSize) {
    throw new InvalidArgumentError('cpSize', 'needs at least one chunk per rank: ceil(totalSeqlen / chunkSize) >= cpSize', `${totalSeqlen} tokens, chunk ${chunkSize}, cp ${cpSize}`);
  }
  if (unevenShard) {
    const numChunks = Math.ceil(totalSeqlen / chunkSize);
    const most = Math.min(totalSeqlen, Math.ceil(numChunks / cpSize) * chunkSize);
    return { cpSize, unpaddedSeqlen: totalSeqlen, paddedSeqlen: totalSeqlen, padSize: 0, chunkSize, numChunks, shardSeqlen: most, unevenShard };
  }
  const padSize = computePadSize(totalSeqlen, cpSize, chunkSize);
  const padded = totalSeqlen + padSize;
  const numChunks = padded / chunkSize;
  return { cpSize, unpaddedSeqlen: totalSeqlen, paddedSeqlen: padded, padSize, chunkSize, numChunks, shardSeqlen: padded / cpSize, unevenShard };
}

/**
 * The mask with the reference's padding slice appended: q = [N, N + pad) against the empty key
 * range [0, 0), so pad rows attend nothing and nobody attends pad keys.
 */
export function applyPadding(mask: SliceList, chunking: Chunking): SliceList {
  if (chunking.padSize === 0) return mask;
  const n = sliceCount(mask);
  const qRanges = new Int32Array(2 * n + 2);
  const kRanges = new Int32Array(2 * n + 2);
  qRanges.set(mask.qRanges);
  kRanges.set(mask.kRanges);
  qRanges[2 * n] = chunking.unpaddedSeqlen;
  qRanges[2 * n + 1] = chunking.paddedSeqlen;
  const types = new Uint8Array(n + 1);
  types.set(mask.maskTypes);
  return { qRanges, kRanges, maskTypes: types };
}

/**
 * Checks a self-attention mask against its totals: equal q and k lengths, every range inside the
 * sequence, valid type codes, at least one slice with cells.
 */
export function validateMask(mask: SliceList, totalSeqlenQ: number, totalSeqlenK: number): void {
  checkSeqlen(totalSeqlenQ, 'totalSeqlenQ');
  checkSeqlen(totalSeqlenK, 'totalSeqlenK');
  if (totalSeqlenQ !== totalSeqlenK) {
    throw new InvalidArgumentError('totalSeqlenK', 'self-attention needs equal q and k lengths (cross-attention is not supported)', `${totalSeqlenQ} vs ${totalSeqlenK}`);
  }
  const n = sliceCount(mask);
  if (mask.qRanges.length !== 2 * n || mask.kRanges.length !== 2 * n) {
    throw new MaskError('mask', 'qRanges and kRanges must hold two numbers per slice', `${mask.qRanges.length}, ${mask.kRanges.length} for ${n} types`);
  }
  let valid = false;
  for (let b = 0; b < n; b++) {
    const qs = mask.qRanges[2 * b];
    const qe = mask.qRanges[2 * b + 1];
    const ks = mask.kRanges[2 * b];
    const ke = mask.kRanges[2 * b + 1];
    if (qs < 0 || qe < qs) throw new AttnRangeError(`mask.qRanges[${b}]`, 'must be a half-open range with 0 <= start <= end', `got [${qs}, ${qe})`);
    if (ks < 0 || ke < ks) throw new AttnRangeError(`mask.kRanges[${b}]`, 'must be a half-open range with 0 <= start <= end', `got [${ks}, ${ke})`);
    if (mask.maskTypes[b] > 3) throw new MaskError(`mask.maskTypes[${b}]`, 'integer mask type codes are 0=full, 1=causal, 2=inv_causal, 3=bi_causal', `got ${mask.maskTypes[b]}`);
    if (qe > qs && ke > ks) valid = true;
  }
  checkSliceBounds(mask, totalSeqlenQ, totalSeqlenK);
  if (!valid) throw new MaskError('mask', 'must contain at least one slice with non-empty q and k ranges');
}

/** Largest q end over slices whose q and k ranges are both non-empty (position ids are clamped below it). */
export function maxValidIds(mask: SliceList): number {
  let m = 0;
  for (let b = 0; b < sliceCount(mask); b++) {
    if (mask.qRanges[2 * b + 1] > mask.qRanges[2 * b] && mask.kRanges[2 * b + 1] > mask.kRanges[2 * b]) m = Math.max(m, mask.qRanges[2 * b + 1]);
  }
  return m;
}

/**
 * Every chunk's clipped slices, stored as one CSR table: the entries of chunk c are
 * [offsets[c], offsets[c+1]). Entries are in global coordinates, tight (no empty row or column),
 * and keep the original slice's type; within a chunk they follow the mask sorted by (q start, q end).
 */
export interface ChunkBuckets {
  readonly numChunks: number;
  readonly chunkSize: number;
  readonly offsets: Int32Array;
  readonly q0: Int32Array;
  readonly q1: Int32Array;
  readonly k0: Int32Array;
  readonly k1: Int32Array;
  readonly type: Uint8Array;
  /** Index of the source slice in the mask sorted by (q start, q end). */
  readonly sampleId: Int32Array;
  readonly area: Float64Array;
  /** Workload of each chunk: the sum of its entries' areas. */
  readonly chunkAreas: Float64Array;
  /** Area of each (sorted) mask slice. */
  readonly sampleAreas: Float64Array;
}

/**
 * Clips the mask to every chunk's rows. Each slice visits only the chunks its non-empty rows
 * cross, so the work is O(slices + entries) even when one long slice spans the sequence (where the
 * reference's walk degrades to chunks × slices).
 */
export function buildChunkBuckets(mask: SliceList, chunking: Chunking): ChunkBuckets {
  const nSlices = sliceCount(mask);
  const cs = chunking.chunkSize;
  const numChunks = chunking.numChunks;
  const order = Array.from({ length: nSlices }, (_, i) => i);
  order.sort((a, b) => mask.qRanges[2 * a] - mask.qRanges[2 * b] || mask.qRanges[2 * a + 1] - mask.qRanges[2 * b + 1] || a - b);

  // Pass 1: tight row span and chunk span of every slice, and entry counts per chunk.
  const rowLo = new Float64Array(nSlices);
  const rowHi = new Float64Array(nSlices);
  const dLo = new Float64Array(nSlices);
  const dHi = new Float64Array(nSlices);
  const counts = new Int32Array(numChunks + 1);
  for (let s = 0; s < nSlices; s++) {
    const b = order[s];
    const qs = mask.qRanges[2 * b];
    const qe = mask.qRanges[2 * b + 1];
    const ks = mask.kRanges[2 * b];
    const ke = mask.kRanges[2 * b + 1];
    const t = mask.maskTypes[b];
    const lo = bandLo(t, qs, ks);
    const hi = bandHi(t, qe, ke);
    dLo[s] = lo;
    dHi[s] = hi;
    let r0 = Math.max(qs, ks - hi);
    let r1 = Math.min(qe, ke - lo);
    if (ks >= ke || lo > hi || r0 >= r1) r0 = r1 = 0;
    rowLo[s] = r0;
    rowHi[s] = r1;
    if (r1 > r0) for (let c = Math.floor(r0 / cs); c * cs < r1; c++) counts[c + 1]++;
  }
  const offsets = new Int32Array(numChunks + 1);
  for (let c = 0; c < numChunks; c++) offsets[c + 1] = offsets[c] + counts[c + 1];
  const total = offsets[numChunks];
  const q0 = new Int32Array(total);
  const q1 = new Int32Array(total);
  const k0 = new Int32Array(total);
  const k1 = new Int32Array(total);
  const type = new Uint8Array(total);
  const sampleId = new Int32Array(total);
  const area = new Float64Array(total);
  const chunkAreas = new Float64Array(numChunks);
  const sampleAreas = new Float64Array(nSlices);
  const fill = offsets.slice(0, numChunks);

  // Pass 2: the clipped entries, in sorted-slice order within each chunk.
  for (let s = 0; s < nSlices; s++) {
    const r0 = rowLo[s];
    const r1 = rowHi[s];
    if (r1 <= r0) continue;
    const b = order[s];
    const ks = mask.kRanges[2 * b];
    const ke = mask.kRanges[2 * b + 1];
    const t = mask.maskTypes[b];
    for (let c = Math.floor(r0 / cs); c * cs < r1; c++) {
      const a = Math.max(r0, c * cs);
      const e = Math.min(r1, (c + 1) * cs);
      const kA = Math.max(ks, a + dLo[s]);
      const kE = Math.min(ke, e + dHi[s]);
      const i = fill[c]++;
      q0[i] = a;
      q1[i] = e;
      k0[i] = kA;
      k1[i] = kE;
      type[i] = t;
      sampleId[i] = s;
      const w = sliceArea(t, e - a, kE - kA);
      area[i] = w;
      chunkAreas[c] += w;
      sampleAreas[s] += w;
    }
  }
  return { numChunks, chunkSize: cs, offsets, q0, q1, k0, k1, type, sampleId, area, chunkAreas, sampleAreas };
}
