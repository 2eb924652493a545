/**
 * AttnRange: one half-open interval [start, end) of token positions. It is the unit every mask,
 * dispatch plan and communication plan is written in.
 *
 * Unlike the reference, a range is immutable (every operation returns a new one), so a range held
 * inside a key or a plan can never be changed behind its owner's back, and sharing is safe.
 * Positions are integers in [0, 2^31) (masks and plans hold them in Int32Arrays); an empty range
 * (start == end) is legal.
 */
import { AttnRangeError } from '../errors.js';

/** Anything that reads as one range: an AttnRange or a [start, end) pair. */
export type RangeLike = AttnRange | readonly [number, number];

export class AttnRange {
  readonly start: number;
  readonly end: number;

  /** Throws AttnRangeError (naming `argument`) unless 0 <= start <= end, both safe integers. */
  constructor(start: number, end: number, argument = 'range') {
    checkRangeEnds(start, end, argument);
    this.start = start;
    this.end = end;
  }

  /** Copies a range or a [start, end) pair into a new, validated AttnRange. */
  static fromRange(range: RangeLike, argument = 'range'): AttnRange {
    if (range instanceof AttnRange) return new AttnRange(range.start, range.end, argument);
    if (!Array.isArray(range) || range.length !== 2) {
      throw new AttnRangeError(argument, 'a range is an AttnRange or a [start, end) pair', `got ${describe(range)}`);
    }
    return new AttnRange(range[0], range[1], argument);
  }

  get seqlen(): number {
    return this.end - this.start;
  }

  toNaiveRange(): [number, number] {
    return [this.start, this.end];
  }

  clone(): AttnRange {
    return new AttnRange(this.start, this.end);
  }

  /** [start + delta, end + delta); throws if that would move the range below 0. */
  offset(delta: number): AttnRange {
    return new AttnRange(this.start + delta, this.end + delta, 'offset result');
  }

  /**
   * Clips to [lo, hi) (either side optional). A clip that leaves nothing gives the empty range at
   * max(start, lo), so the result still says where the cut happened.
   */
  truncate(lo?: number, hi?: number): AttnRange {
    const start = lo === undefined ? this.start : Math.max(this.start, lo);
    const end = hi === undefined ? this.end : Math.min(this.end, hi);
    return new AttnRange(start, Math.max(start, end), 'truncate result');
  }

  /**
   * The common part of two ranges. When they are disjoint the result is the empty range at
   * min(this.end, other.end), as in the reference (not at max of the starts): callers that only
   * look at `seqlen` do not care, and keeping the reference's position keeps plans comparable.
   */
  intersect(other: AttnRange): AttnRange {
    const start = Math.max(this.start, other.start);
    const end = Math.min(this.end, other.end);
    return new AttnRange(Math.min(start, end), end);
  }

  intersectSize(other: AttnRange): number {
    return Math.max(0, Math.min(this.end, other.end) - Math.max(this.start, other.start));
  }

  /**
   * Union as a list: the container when one range holds the other, the hull when they strictly
   * overlap, otherwise both ranges unchanged. Empty ranges are never absorbed, and tangent ranges
   * ([0, 5) and [5, 9)) are NOT fused here (AttnRanges.merge does fuse them), as in the reference.
   */
  union(other: AttnRange): AttnRange[] {
    if (this.isEmpty() || other.isEmpty()) return [this, other];
    if (other.isSubrangeOf(this)) return [this];
    if (this.isSubrangeOf(other)) return [other];
    if (this.start < other.end && other.start < this.end) {
      return [new AttnRange(Math.min(this.start, other.start), Math.max(this.end, other.end))];
    }
    return [this, other];
  }

  /** Sum of the lengths that union() returns. */
  unionSize(other: AttnRange): number {
    return this.union(other).reduce((sum, r) => sum + r.seqlen, 0);
  }

  /**
   * `other` minus `this` (note the direction, kept from the reference): at most two non-empty
   * ranges, in order. [3, 6).diffBy([0, 10)) is [[0, 3), [6, 10)].
   */
  diffBy(other: AttnRange): AttnRange[] {
    if (other.isEmpty()) return [];
    // An empty range removes nothing; splitting `other` at its point would invent a boundary.
    if (this.isEmpty()) return [other];
    const out: AttnRange[] = [];
    const leftEnd = Math.min(other.end, this.start);
    if (other.start < leftEnd) out.push(new AttnRange(other.start, leftEnd));
    const rightStart = Math.max(other.start, this.end);
    if (rightStart < other.end) out.push(new AttnRange(rightStart, other.end));
    return out;
  }

  isSubrangeOf(other: AttnRange): boolean {
    return this.start >= other.start && this.end <= other.end;
  }

  /**
   * True unless one range ends at or before the other starts. As in the reference, an empty range
   * strictly inside another counts as overlapping it ([3, 3) overlaps [0, 10)).
   */
  isOverlapWith(other: AttnRange): boolean {
    return !(this.start >= other.end || this.end <= other.start);
  }

  isEmpty(): boolean {
    return this.start === this.end;
  }

  equals(other: AttnRange): boolean {
    return this.start === other.start && this.end === other.end;
  }

  toString(): string {
    return `[${this.start}, ${this.end})`;
  }

  toJSON(): [number, number] {
    return this.toNaiveRange();
  }
}

/** Shared by AttnRange and AttnRanges so both reject the same inputs with the same words. */
export function checkRangeEnds(start: number, end: number, argument: string): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end)) {
    throw new AttnRangeError(argument, 'range ends must be safe integers', `got [${start}, ${end})`);
  }
  if (start < 0) throw new AttnRangeError(argument, 'range start must be >= 0', `got [${start}, ${end})`);
  if (end < start) throw new AttnRangeError(argument, 'range end must be >= start', `got [${start}, ${end})`);
  if (end > INT32_MAX) throw new AttnRangeError(argument, 'range ends must fit in int32, as every mask and plan does', `got [${start}, ${end})`);
}

const INT32_MAX = 2 ** 31 - 1;

function describe(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
