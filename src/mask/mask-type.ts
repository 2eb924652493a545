/**
 * The four slice types and their exact geometry.
 *
 * A slice is (qRange, kRange, type). In slice-local coordinates i = q - qStart, j = k - kStart,
 * with Lq, Lk the range lengths, a cell is unmasked when:
 *   FULL       always
 *   CAUSAL     j - i <= Lk - Lq      (bottom-right aligned: the last row sees the last key)
 *   INVCAUSAL  j >= i                (top-left aligned: the first row sees the first key)
 *   BICAUSAL   both of the above     (a band of width Lk - Lq + 1; empty when Lq > Lk)
 * Every row's visible keys are one contiguous interval, which is what the kernels iterate over.
 */
import { MaskError } from '../errors.js';

export const AttnMaskType = {
  FULL: 'full',
  CAUSAL: 'causal',
  INVCAUSAL: 'inv_causal',
  BICAUSAL: 'bi_causal',
} as const;
export type AttnMaskType = (typeof AttnMaskType)[keyof typeof AttnMaskType];

/** Integer codes as the reference's kernels use them (not declaration order). */
export const MASK_TYPE_CODES: Readonly<Record<AttnMaskType, number>> = {
  full: 0,
  causal: 1,
  inv_causal: 2,
  bi_causal: 3,
};
const TYPES_BY_CODE: readonly AttnMaskType[] = ['full', 'causal', 'inv_causal', 'bi_causal'];

export function maskTypeToInt(type: AttnMaskType): number {
  return MASK_TYPE_CODES[parseMaskType(type)];
}

export function maskTypeFromInt(code: number, argument = 'maskType'): AttnMaskType {
  const type = Number.isInteger(code) ? TYPES_BY_CODE[code] : undefined;
  if (type === undefined) {
    throw new MaskError(argument, 'integer mask type codes are 0=full, 1=causal, 2=inv_causal, 3=bi_causal', `got ${code}`);
  }
  return type;
}

/** Accepts the string names (case-sensitive, as the reference) or integer codes. */
export function parseMaskType(value: AttnMaskType | string | number, argument = 'maskType'): AttnMaskType {
  if (typeof value === 'number') return maskTypeFromInt(value, argument);
  if (typeof value === 'string' && (TYPES_BY_CODE as readonly string[]).includes(value)) return value as AttnMaskType;
  throw new MaskError(argument, `mask type must be one of ${TYPES_BY_CODE.join(', ')} or 0-3`, `got ${JSON.stringify(value)}`);
}

/** True if the slice-local cell (i, j) of an Lq x Lk slice of this type is unmasked. */
export function isCellUnmasked(type: AttnMaskType, i: number, j: number, lq: number, lk: number): boolean {
  if (i < 0 || j < 0 || i >= lq || j >= lk) return false;
  const causalOk = j - i <= lk - lq;
  const invOk = j >= i;
  switch (type) {
    case 'full':
      return true;
    case 'causal':
      return causalOk;
    case 'inv_causal':
      return invOk;
    case 'bi_causal':
      return causalOk && invOk;
  }
}

/** Number of unmasked cells of an Lq x Lk slice (closed form; BICAUSAL clamped at 0). */
export function sliceArea(type: AttnMaskType, lq: number, lk: number): number {
  if (lq <= 0 || lk <= 0) return 0;
  switch (type) {
    case 'full':
      return lq * lk;
    case 'causal':
    case 'inv_causal':
      return lk >= lq ? lq * lk - (lq * (lq - 1)) / 2 : (lk * (lk + 1)) / 2;
    case 'bi_causal':
      return lk >= lq ? (lk - lq + 1) * lq : 0;
  }
}

/** Integer-code variant of the row interval below, for hot loops over Int32Array slice lists. */
export function rowKeyStart(code: number, qStart: number, kStart: number, q: number): number {
  return (code & 2) !== 0 ? kStart + (q - qStart) : kStart;
}
export function rowKeyEnd(code: number, qEnd: number, kEnd: number, q: number): number {
  return (code & 1) !== 0 ? kEnd - (qEnd - q - 1) : kEnd;
}

/**
 * The keys a global query row q sees through one slice, as a half-open interval [start, end)
 * clipped to the slice's k range; empty (end <= start) when the row sees nothing.
 */
export function rowKeyInterval(
  type: AttnMaskType,
  qStart: number,
  qEnd: number,
  kStart: number,
  kEnd: number,
  q: number,
): [number, number] {
  const code = MASK_TYPE_CODES[type];
  const start = Math.max(kStart, rowKeyStart(code, qStart, kStart, q));
  const end = Math.min(kEnd, rowKeyEnd(code, qEnd, kEnd, q));
  return [start, Math.max(start, end)];
}
