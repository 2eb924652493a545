/**
 * A mask as plain data: B slices in three flat typed arrays. This is what kernels, planners and
 * plans carry around (cheap to copy to a worker or a GPU, trivially JSON-able); the object types
 * in ranges.ts are for people building masks.
 *
 *   qRanges[2b], qRanges[2b+1]   half-open query range of slice b, in the caller's coordinates
 *   kRanges[2b], kRanges[2b+1]   half-open key range of slice b
 *   types[b]                     integer mask type code (0 full, 1 causal, 2 inv_causal, 3 bi_causal)
 */
import { AttnRangeError, MaskError } from '../errors.js';
import { type AttnMaskType, parseMaskType, MASK_TYPE_CODES, maskTypeFromInt } from './mask-type.js';
import { sliceArea } from './geometry.js';
import { checkRangeEnds } from './range.js';

export interface SliceList {
  readonly qRanges: Int32Array;
  readonly kRanges: Int32Array;
  readonly maskTypes: Uint8Array;
}

/** Anything that reads as a list of half-open [start, end) pairs. */
export type RangeListLike = ReadonlyArray<readonly [number, number]> | { toNaiveRanges(): Array<[number, number]> } | Int32Array;
export type MaskTypesLike = AttnMaskType | string | number | ReadonlyArray<AttnMaskType | string | number> | Uint8Array;

function flattenRanges(ranges: RangeListLike, argument: string): Int32Array {
  if (ranges instanceof Int32Array) {
    if (ranges.length % 2 !== 0) throw new AttnRangeError(argument, 'a flat Int32Array of ranges must have an even length', `got ${ranges.length}`);
    for (let b = 0; 2 * b < ranges.length; b++) checkRangeEnds(ranges[2 * b], ranges[2 * b + 1], `${argument}[${b}]`);
    return ranges.slice();
  }
  const pairs: unknown = ranges !== null && typeof ranges === 'object' && 'toNaiveRanges' in ranges ? ranges.toNaiveRanges() : ranges;
  if (!Array.isArray(pairs)) {
    throw new AttnRangeError(argument, 'must be a list of [start, end) pairs, an AttnRanges or a flat Int32Array', `got ${describeValue(ranges)}`);
  }
  const out = new Int32Array(pairs.length * 2);
  pairs.forEach((pair: unknown, b) => {
    if (!Array.isArray(pair) || pair.length !== 2) throw new AttnRangeError(`${argument}[${b}]`, 'a range is a [start, end) pair', `got ${describeValue(pair)}`);
    checkRangeEnds(pair[0] as number, pair[1] as number, `${argument}[${b}]`);
    out[2 * b] = pair[0] as number;
    out[2 * b + 1] = pair[1] as number;
  });
  return out;
}

/** A short description of a value for an error message (never throws). */
export function describeValue(value: unknown): string {
  if (value === null || value === undefined || typeof value !== 'object') return String(value);
  try {
    const json = JSON.stringify(value);
    return json === undefined ? Object.prototype.toString.call(value) : json.length > 60 ? `${json.slice(0, 57)}...` : json;
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/**
 * Builds a validated SliceList. `maskTypes` may be one type for every slice or one per slice.
 * Bounds are checked against totals when given.
 */
export function makeSliceList(
  qRanges: RangeListLike,
  kRanges: RangeListLike,
  maskTypes: MaskTypesLike,
  bounds?: { totalQ?: number; totalK?: number },
): SliceList {
  const q = flattenRanges(qRanges, 'qRanges');
  const k = flattenRanges(kRanges, 'kRanges');
  const n = q.length / 2;
  if (k.length / 2 !== n) throw new MaskError('kRanges', 'must have as many ranges as qRanges', `${k.length / 2} vs ${n}`);
  if (maskTypes === undefined || maskTypes === null) {
    throw new MaskError('maskTypes', 'is required: one type for every slice or one per slice (full, causal, inv_causal, bi_causal or 0-3)');
  }
  const types = new Uint8Array(n);
  if (maskTypes instanceof Uint8Array || Array.isArray(maskTypes)) {
    const list = maskTypes as ArrayLike<AttnMaskType | string | number>;
    if (list.length !== n) throw new MaskError('maskTypes', 'must be one type or one per slice', `${list.length} types for ${n} slices`);
    for (let b = 0; b < n; b++) types[b] = MASK_TYPE_CODES[parseMaskType(list[b], `maskTypes[${b}]`)];
  } else {
    types.fill(MASK_TYPE_CODES[parseMaskType(maskTypes as AttnMaskType | string | number, 'maskTypes')]);
  }
  const slices = { qRanges: q, kRanges: k, maskTypes: types };
  if (bounds) checkSliceBounds(slices, bounds.totalQ, bounds.totalK);
  return slices;
}

/** Throws if any slice reaches past the given sequence lengths. */
export function checkSliceBounds(slices: SliceList, totalQ?: number, totalK?: number): void {
  for (let b = 0; b < sliceCount(slices); b++) {
    if (totalQ !== undefined && slices.qRanges[2 * b + 1] > totalQ) {
      throw new AttnRangeError(`qRanges[${b}]`, `must lie inside the ${totalQ} query tokens`, `ends at ${slices.qRanges[2 * b + 1]}`);
    }
    if (totalK !== undefined && slices.kRanges[2 * b + 1] > totalK) {
      throw new AttnRangeError(`kRanges[${b}]`, `must lie inside the ${totalK} key tokens`, `ends at ${slices.kRanges[2 * b + 1]}`);
    }
  }
}

export function sliceCount(slices: SliceList): number {
  return slices.maskTypes.length;
}

/** Total unmasked cells over all slices (cells shared by two slices count twice, as in the kernels). */
export function sliceListArea(slices: SliceList): number {
  let area = 0;
  for (let b = 0; b < sliceCount(slices); b++) {
    area += sliceArea(
      maskTypeFromInt(slices.maskTypes[b]),
      slices.qRanges[2 * b + 1] - slices.qRanges[2 * b],
      slices.kRanges[2 * b + 1] - slices.kRanges[2 * b],
    );
  }
  return area;
}

/** One slice as a readable triple. */
export function sliceAt(slices: SliceList, b: number): { qRange: [number, number]; kRange: [number, number]; type: AttnMaskType } {
  return {
    qRange: [slices.qRanges[2 * b], slices.qRanges[2 * b + 1]],
    kRange: [slices.kRanges[2 * b], slices.kRanges[2 * b + 1]],
    type: maskTypeFromInt(slices.maskTypes[b]),
  };
}

/** Plain-JSON form: [[qs, qe], [ks, ke], type][] */
export function sliceListToJSON(slices: SliceList): Array<[[number, number], [number, number], AttnMaskType]> {
  return Array.from({ length: sliceCount(slices) }, (_, b) => {
    const s = sliceAt(slices, b);
    return [s.qRange, s.kRange, s.type];
  });
}
