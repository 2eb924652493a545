/**
 * The four slice types by name and by integer code, and the parsing of either. What each type
 * covers is in geometry.ts.
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
