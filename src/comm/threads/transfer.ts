/**
 * What crosses into and out of a thread rank: structured clone keeps typed arrays and plain data
 * but drops classes, so a Tensor would arrive as a plain object. Tensors are therefore wrapped in
 * a tagged record on the way in or out and rebuilt on the other side, wherever they sit inside
 * arrays and plain objects.
 */
import { Tensor } from '../../tensor.js';

const TAG = '__magiAttnTensor';

interface WrappedTensor {
  readonly [TAG]: true;
  readonly dtype: Tensor['dtype'];
  readonly shape: readonly number[];
  readonly data: Tensor['data'];
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (x === null || typeof x !== 'object') return false;
  const proto = Object.getPrototypeOf(x) as unknown;
  return proto === Object.prototype || proto === null;
}

/** A copy of `value` with every Tensor replaced by its tagged record (other values untouched). */
export function wrapTensors(value: unknown): unknown {
  if (value instanceof Tensor) return { [TAG]: true, dtype: value.dtype, shape: [...value.shape], data: value.data } satisfies WrappedTensor;
  if (Array.isArray(value)) return value.map(wrapTensors);
  if (isPlainObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, wrapTensors(v)]));
  return value;
}

/** The inverse of wrapTensors, applied after the structured clone. */
export function unwrapTensors(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(unwrapTensors);
  if (isPlainObject(value)) {
    if (value[TAG] === true) {
      const w = value as unknown as WrappedTensor;
      return new Tensor(w.dtype, w.shape, w.data);
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unwrapTensors(v)]));
  }
  return value;
}
