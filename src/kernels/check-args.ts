/**
 * The argument rules every flex-flash-attention entry shares, whatever backend and tensor kind
 * it serves (host Tensor, DeviceTensor): shapes, heads and dtypes of q/k/v, the scalars, and the
 * slice list built from the user's mask options. Each entry adds its own type and support checks.
 */
import { InvalidArgumentError, MaskError, ShapeError } from '../errors.js';
import { type MaskTypesLike, type RangeListLike, type SliceList, makeSliceList } from '../mask/slice-list.js';

/** What the rules read of a tensor: both Tensor and DeviceTensor have it. */
export interface ShapedTensor {
  readonly rank: number;
  readonly shape: readonly number[];
  readonly dtype: string;
}

export const formatShape = (shape: readonly number[]): string => `[${shape.join(', ')}]`;

export function requireShape(x: ShapedTensor, name: string, shape: readonly number[], what: string): void {
  if (x.rank !== shape.length || x.shape.some((d, i) => d !== shape[i])) {
    throw new ShapeError(name, `must have shape ${formatShape(shape)} (${what})`, `got ${formatShape(x.shape)}`);
  }
}

/** q [Tq, Hq, D], k and v [Tk, Hkv, D] with equal dtypes and Hq % Hkv == 0. */
export function checkQkvShapes(q: ShapedTensor, k: ShapedTensor, v: ShapedTensor): void {
  if (q.rank !== 3) throw new ShapeError('q', 'must be 3-D [tokens, heads, headDim]', `got ${formatShape(q.shape)}`);
  if (k.rank !== 3) throw new ShapeError('k', 'must be 3-D [tokens, heads, headDim]', `got ${formatShape(k.shape)}`);
  requireShape(v, 'v', k.shape, 'the same shape as k');
  const [, headsQ, dim] = q.shape;
  const [, headsKv, dimK] = k.shape;
  if (dim < 1) throw new ShapeError('q', 'head dim must be at least 1', `got ${formatShape(q.shape)}`);
  if (dimK !== dim) throw new ShapeError('k', "head dim must equal q's head dim", `${dimK} vs ${dim}`);
  if (headsQ < 1) throw new ShapeError('q', 'must have at least one head', `got ${formatShape(q.shape)}`);
  if (headsKv < 1) throw new ShapeError('k', 'must have at least one head', `got ${formatShape(k.shape)}`);
  if (headsQ % headsKv !== 0) throw new ShapeError('k', "number of heads must divide q's (GQA groups)", `${headsQ} query heads, ${headsKv} kv heads`);
  if (k.dtype !== q.dtype) throw new ShapeError('k', "dtype must equal q's", `${k.dtype} vs ${q.dtype}`);
  if (v.dtype !== q.dtype) throw new ShapeError('v', "dtype must equal q's", `${v.dtype} vs ${q.dtype}`);
}

export function checkScalars(softmaxScale: number, softcap: number): void {
  if (typeof softmaxScale !== 'number' || !Number.isFinite(softmaxScale) || softmaxScale <= 0) {
    throw new InvalidArgumentError('softmaxScale', 'must be a finite number > 0', `got ${softmaxScale}`);
  }
  if (typeof softcap !== 'number' || !Number.isFinite(softcap) || softcap < 0) {
    throw new InvalidArgumentError('softcap', 'must be a finite number >= 0 (0 disables it)', `got ${softcap}`);
  }
}

/** The slice list of the user's mask options, checked against the q and k lengths. */
export function sliceListFromOptions(
  options: { qRanges?: RangeListLike; kRanges?: RangeListLike; maskTypes?: MaskTypesLike },
  tokensQ: number,
  tokensK: number,
): SliceList {
  if (options.qRanges === undefined) throw new MaskError('qRanges', 'is required');
  if (options.kRanges === undefined) throw new MaskError('kRanges', 'is required');
  if (options.maskTypes === undefined) throw new MaskError('maskTypes', 'is required: one type for every slice or one per slice (full, causal, inv_causal, bi_causal or 0-3)');
  return makeSliceList(options.qRanges, options.kRanges, options.maskTypes, { totalQ: tokensQ, totalK: tokensK });
}
