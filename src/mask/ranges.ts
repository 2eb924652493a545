/**
 * AttnRanges: an ordered list of AttnRange, with the set operations the planners need (merge,
 * intersection, difference, chunking) and the map from a coordinate space to its packed "local"
 * coordinates.
 *
 * Vocabulary (as in the reference):
 *   sorted   ascending by start, ties in insertion order;
 *   merged   sorted with every neighbour strictly apart (prev.end < next.start: no tangents);
 *   local    the positions the merged ranges occupy when packed end to end from 0, so that
 *            [[5, 10), [25, 30), [15, 20)] occupies local [0, 5), [10, 15), [5, 10).
 * The ranges themselves are immutable, so lists may share them; only the list is mutable.
 * Every set operation is linear after a sort, so planners can call them on masks with thousands
 * of ranges.
 */
import { AttnRangeError } from '../errors.js';
import { AttnRange, type RangeLike } from './range.js';
import { intersectRanges, lastRangeStartingAtOrBefore, localOffsets, mergeRanges, rangesLength, subtractRanges } from './range-list.js';

/** Packed positions of the merged ranges, built once per list and dropped by every mutation. */
interface LocalIndex {
  /** The merged ranges, flat. */
  readonly merged: Int32Array;
  /** localStarts[t] = total length of merged ranges before t. */
  readonly localStarts: Float64Array;
}

export interface MergedHints {
  /** Promise that `this` is already merged, to skip the merge (not checked). */
  selfMerged?: boolean;
  /** Promise that the other list is already merged (not checked). */
  otherMerged?: boolean;
}

export class AttnRanges implements Iterable<AttnRange> {
  #ranges: AttnRange[];
  #localIndex: LocalIndex | undefined;

  constructor(ranges: Iterable<AttnRange> = []) {
    this.#ranges = [...ranges];
    this.#ranges.forEach((r, i) => {
      if (!(r instanceof AttnRange)) throw new AttnRangeError(`ranges[${i}]`, 'must be an AttnRange (use AttnRanges.fromRanges for pairs)');
    });
  }

  /** Validated copy of naive pairs, AttnRange objects or another AttnRanges. */
  static fromRanges(ranges: Iterable<RangeLike>, argument = 'ranges'): AttnRanges {
    const out: AttnRange[] = [];
    let i = 0;
    for (const r of ranges) out.push(AttnRange.fromRange(r, `${argument}[${i++}]`));
    return new AttnRanges(out);
  }

  /**
   * One range per sample from cumulative sequence lengths: cu[0] == 0, strictly increasing (no
   * empty samples), cu[last] == seqLen. An empty cu gives an empty list.
   */
  static fromCuSeqlens(cuSeqlens: ArrayLike<number>, seqLen: number, argument = 'cuSeqlens'): AttnRanges {
    const n = cuSeqlens.length;
    if (n === 0) return new AttnRanges();
    for (let i = 0; i < n; i++) {
      if (!Number.isSafeInteger(cuSeqlens[i])) throw new AttnRangeError(`${argument}[${i}]`, 'cu_seqlens entries must be integers', `got ${cuSeqlens[i]}`);
    }
    if (cuSeqlens[0] !== 0) throw new AttnRangeError(argument, 'cu_seqlens must start at 0', `got ${cuSeqlens[0]}`);
    for (let i = 1; i < n; i++) {
      if (cuSeqlens[i] <= cuSeqlens[i - 1]) {
        throw new AttnRangeError(argument, 'cu_seqlens must be strictly increasing (no empty samples)', `cu[${i - 1}] = ${cuSeqlens[i - 1]}, cu[${i}] = ${cuSeqlens[i]}`);
      }
    }
    if (cuSeqlens[n - 1] !== seqLen) throw new AttnRangeError(argument, `cu_seqlens must end at seqLen = ${seqLen}`, `ends at ${cuSeqlens[n - 1]}`);
    const out: AttnRange[] = [];
    for (let i = 1; i < n; i++) out.push(new AttnRange(cuSeqlens[i - 1], cuSeqlens[i]));
    return new AttnRanges(out);
  }

  // ---- list access and mutation ----

  get size(): number {
    return this.#ranges.length;
  }

  get length(): number {
    return this.#ranges.length;
  }

  /** The i-th range; negative i counts from the end. Throws when out of bounds. */
  at(i: number): AttnRange {
    const r = Number.isInteger(i) ? this.#ranges.at(i) : undefined;
    if (r === undefined) throw new AttnRangeError('index', `must be an integer in [-${this.size}, ${this.size})`, `got ${i}`);
    return r;
  }

  [Symbol.iterator](): Iterator<AttnRange> {
    return this.#ranges[Symbol.iterator]();
  }

  /** A shallow copy of the underlying array (ranges are immutable, so this is safe to keep). */
  toArray(): AttnRange[] {
    return this.#ranges.slice();
  }

  append(range: RangeLike): void {
    this.#ranges.push(AttnRange.fromRange(range));
    this.#localIndex = undefined;
  }

  /** Inserts before position idx (0 <= idx <= size). */
  insert(idx: number, range: RangeLike): void {
    if (!Number.isInteger(idx) || idx < 0 || idx > this.size) {
      throw new AttnRangeError('idx', `insert position must be an integer in [0, ${this.size}]`, `got ${idx}`);
    }
    this.#ranges.splice(idx, 0, AttnRange.fromRange(range));
    this.#localIndex = undefined;
  }

  extend(ranges: Iterable<RangeLike>): void {
    this.#ranges.push(...AttnRanges.fromRanges(ranges));
    this.#localIndex = undefined;
  }

  /** Removes and returns the range at idx (default: the last). */
  pop(idx = -1): AttnRange {
    if (this.size === 0) throw new AttnRangeError('ranges', 'cannot pop from an empty AttnRanges');
    const r = this.at(idx);
    this.#ranges.splice(idx < 0 ? idx + this.size : idx, 1);
    this.#localIndex = undefined;
    return r;
  }

  clone(): AttnRanges {
    return new AttnRanges(this.#ranges);
  }

  // ---- whole-list transforms (each returns a new list) ----

  /** Stable sort by start only. */
  sort(): AttnRanges {
    return new AttnRanges(this.#ranges.slice().sort((a, b) => a.start - b.start));
  }

  /**
   * Sorts and fuses overlapping and tangent ranges. An empty range at a point already reached by
   * the current run is absorbed; one beyond it survives as an empty merged range, as in the
   * reference ([[0, 5), [7, 7), [9, 12)] stays three ranges).
   */
  merge(): AttnRanges {
    return fromFlat(mergeRanges(this.#flat(), true));
  }

  /** merge() after widening every range outward to multiples of `alignment`. */
  mergeWithSplitAlignment(alignment = 1): AttnRanges {
    checkPositiveInt(alignment, 'alignment');
    if (alignment === 1) return this.merge();
    const widened = this.#flat().map((x, i) => (i % 2 === 0 ? Math.floor(x / alignment) : Math.ceil(x / alignment)) * alignment);
    return fromFlat(mergeRanges(widened, true));
  }

  /**
   * Cuts the ranges, walking them in their current order, into groups of exactly `chunkSize`
   * tokens (the last group may hold fewer); a range may be split across groups. Empty ranges are
   * skipped. With `check`, overlapping ranges are an error because a token would be counted twice.
   * [[0, 5), [10, 17), [20, 23)] by 4 gives [[0, 4)], [[4, 5), [10, 13)], [[13, 17)], [[20, 23)].
   */
  chunk(chunkSize: number, check = true): AttnRanges[] {
    checkPositiveInt(chunkSize, 'chunkSize');
    if (check && !this.isNonOverlap()) throw new AttnRangeError('ranges', 'chunk needs non-overlapping ranges');
    const groups: AttnRanges[] = [];
    let current: AttnRange[] = [];
    let room = chunkSize;
    for (const r of this.#ranges) {
      let start = r.start;
      while (start < r.end) {
        const take = Math.min(room, r.end - start);
        current.push(new AttnRange(start, start + take));
        start += take;
        room -= take;
        if (room === 0) {
          groups.push(new AttnRanges(current));
          current = [];
          room = chunkSize;
        }
      }
    }
    if (current.length > 0) groups.push(new AttnRanges(current));
    return groups;
  }

  /** Clips every range to [lo, hi) and drops the ones that become empty. */
  truncate(lo?: number, hi?: number): AttnRanges {
    const out: AttnRange[] = [];
    for (const r of this.#ranges) {
      const t = r.truncate(lo, hi);
      if (!t.isEmpty()) out.push(t);
    }
    return new AttnRanges(out);
  }

  clearEmpty(): AttnRanges {
    return new AttnRanges(this.#ranges.filter((r) => !r.isEmpty()));
  }

  // ---- predicates ----

  isSorted(): boolean {
    for (let i = 1; i < this.size; i++) if (this.#ranges[i - 1].start > this.#ranges[i].start) return false;
    return true;
  }

  isMerged(): boolean {
    for (let i = 1; i < this.size; i++) if (this.#ranges[i - 1].end >= this.#ranges[i].start) return false;
    return true;
  }

  /** No position is covered twice (empty ranges never conflict). */
  isNonOverlap(): boolean {
    const sorted = this.#sortedArray();
    let reach = 0;
    for (const r of sorted) {
      if (r.isEmpty()) continue;
      if (r.start < reach) return false;
      reach = r.end;
    }
    return true;
  }

  /** The ranges tile [0, seqLen) in order; an empty list tiles only seqLen == 0. */
  isCuSeqlens(seqLen: number): boolean {
    if (this.size === 0) return seqLen === 0;
    if (this.#ranges[0].start !== 0) return false;
    for (let i = 1; i < this.size; i++) if (this.#ranges[i - 1].end !== this.#ranges[i].start) return false;
    return this.#ranges[this.size - 1].end === seqLen;
  }

  equals(other: AttnRanges): boolean {
    if (other.size !== this.size) return false;
    for (let i = 0; i < this.size; i++) if (!this.#ranges[i].equals(other.#ranges[i])) return false;
    return true;
  }

  // ---- conversions and measures ----

  /** [0, r0.end, r1.end, ...]; throws unless the ranges tile [0, seqLen). */
  toCuSeqlens(seqLen: number): number[] {
    if (!this.isCuSeqlens(seqLen)) throw new AttnRangeError('ranges', `must tile [0, ${seqLen}) in order to become cu_seqlens`, `got ${this}`);
    return [0, ...this.#ranges.map((r) => r.end)];
  }

  toNaiveRanges(): Array<[number, number]> {
    return this.#ranges.map((r) => r.toNaiveRange());
  }

  toJSON(): Array<[number, number]> {
    return this.toNaiveRanges();
  }

  toString(): string {
    return `[${this.#ranges.map((r) => r.toString()).join(', ')}]`;
  }

  /** Sum of lengths; a position covered twice counts twice (the reference's union_size alias too). */
  get totalSeqlen(): number {
    let total = 0;
    for (const r of this.#ranges) total += r.seqlen;
    return total;
  }

  get maxSeqlen(): number {
    let max = 0;
    for (const r of this.#ranges) max = Math.max(max, r.seqlen);
    return max;
  }

  /** Smallest start; throws on an empty list. */
  get start(): number {
    if (this.size === 0) throw new AttnRangeError('ranges', 'an empty AttnRanges has no start');
    let s = Infinity;
    for (const r of this.#ranges) s = Math.min(s, r.start);
    return s;
  }

  /** Largest end; throws on an empty list. */
  get end(): number {
    if (this.size === 0) throw new AttnRangeError('ranges', 'an empty AttnRanges has no end');
    let e = -Infinity;
    for (const r of this.#ranges) e = Math.max(e, r.end);
    return e;
  }

  /** Sorted, de-duplicated endpoints of all ranges. */
  get points(): number[] {
    const all = new Float64Array(2 * this.size);
    this.#ranges.forEach((r, i) => {
      all[2 * i] = r.start;
      all[2 * i + 1] = r.end;
    });
    all.sort();
    const out: number[] = [];
    for (const p of all) if (out.length === 0 || out[out.length - 1] !== p) out.push(p);
    return out;
  }

  /**
   * Σ over positions of max(0, coverage − 1): how many tokens are counted more than once.
   * [[0, 10), [5, 15), [8, 12)] gives 9. (Σ coverage minus the covered set's size.)
   */
  intersectSize(): number {
    return this.totalSeqlen - rangesLength(mergeRanges(this.#flat()));
  }

  // ---- set operations (inputs are never modified; they run on the flat range algebra) ----

  /** Set intersection of the two lists' covered positions, as a merged list. */
  findOverlapRanges(other: AttnRanges, hints: MergedHints = {}): AttnRanges {
    return fromFlat(intersectRanges(this.#mergedFlat(hints.selfMerged), other.#mergedFlat(hints.otherMerged)));
  }

  /** Set difference: positions covered by this list and not by `other`, as a merged list. */
  findHoleRanges(other: AttnRanges, hints: MergedHints = {}): AttnRanges {
    return fromFlat(subtractRanges(this.#mergedFlat(hints.selfMerged), other.#mergedFlat(hints.otherMerged)));
  }

  // ---- local coordinates ----

  /**
   * Where `globalRange` lands when the merged ranges of this list are packed end to end from 0.
   * Returns the local range and the merged range that holds it. Throws when `globalRange` is not
   * inside a single merged range (outside every range, or straddling a gap).
   */
  makeRangeLocal(globalRange: RangeLike, argument = 'range'): { localRange: AttnRange; mergedRange: AttnRange } {
    const index = this.#getLocalIndex();
    const r = AttnRange.fromRange(globalRange, argument);
    const t = findHolder(index, r.start, r.end);
    if (t < 0) {
      throw new AttnRangeError(argument, 'must lie inside one merged range of the ranges it is made local to', `${r} is not inside any single range of ${this.merge()}`);
    }
    const localStart = index.localStarts[t] + r.start - index.merged[2 * t];
    return {
      localRange: new AttnRange(localStart, localStart + r.seqlen),
      mergedRange: new AttnRange(index.merged[2 * t], index.merged[2 * t + 1]),
    };
  }

  /** makeRangeLocal for every range of `globalRanges`, in order: O(m log m + n log m). */
  makeRangesLocal(globalRanges: Iterable<RangeLike>, argument = 'ranges'): AttnRanges {
    const index = this.#getLocalIndex();
    const out: AttnRange[] = [];
    let i = 0;
    for (const item of globalRanges) {
      const r = AttnRange.fromRange(item, `${argument}[${i}]`);
      const t = findHolder(index, r.start, r.end);
      if (t < 0) {
        throw new AttnRangeError(`${argument}[${i}]`, 'must lie inside one merged range of the ranges it is made local to', `${r} is not inside any single range of ${this.merge()}`);
      }
      const localStart = index.localStarts[t] + r.start - index.merged[2 * t];
      out.push(new AttnRange(localStart, localStart + r.seqlen));
      i++;
    }
    return new AttnRanges(out);
  }

  #sortedArray(): AttnRange[] {
    return this.isSorted() ? this.#ranges : this.#ranges.slice().sort((a, b) => a.start - b.start);
  }

  /** The ranges in list order as a flat [s0, e0, s1, e1, ...] list. */
  #flat(): Int32Array {
    const out = new Int32Array(2 * this.size);
    this.#ranges.forEach((r, i) => {
      out[2 * i] = r.start;
      out[2 * i + 1] = r.end;
    });
    return out;
  }

  /** The flat list merged (or as is, when the caller promises it already is). */
  #mergedFlat(promisedMerged = false): Int32Array {
    return promisedMerged ? this.#flat() : mergeRanges(this.#flat());
  }

  #getLocalIndex(): LocalIndex {
    if (this.#localIndex === undefined) {
      const merged = mergeRanges(this.#flat(), true);
      this.#localIndex = { merged, localStarts: localOffsets(merged) };
    }
    return this.#localIndex;
  }
}

function fromFlat(r: Int32Array): AttnRanges {
  const out: AttnRange[] = [];
  for (let i = 0; i < r.length; i += 2) out.push(new AttnRange(r[i], r[i + 1]));
  return new AttnRanges(out);
}

/** Index of the merged range holding [start, end), or -1. */
function findHolder(index: LocalIndex, start: number, end: number): number {
  const t = lastRangeStartingAtOrBefore(index.merged, start);
  if (t < 0 || end > index.merged[2 * t + 1]) return -1;
  return t;
}

function checkPositiveInt(value: number, argument: string): void {
  if (!Number.isSafeInteger(value) || value <= 0) throw new AttnRangeError(argument, 'must be a positive integer', `got ${value}`);
}
