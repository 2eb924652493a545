/**
 * The CPU backend of the trainer: the layers of layers/ over the library's host `Tensor`,
 * single-threaded plain TypeScript. One dtype for everything ('float32' for training,
 * 'float64' for gradient checks against finite differences).
 */
import { InvalidArgumentError, ShapeError, Tensor } from 'magi-attention';
import { adamwUpdate, sumOfSquares, type AdamWHyper } from './layers/adamw.js';
import { crossEntropy } from './layers/cross-entropy.js';
import { embeddingBackward, embeddingForward } from './layers/embedding.js';
import { matmul, type FloatArray, type MatmulShape } from './layers/matmul.js';
import { rmsnormBackward, rmsnormForward } from './layers/rmsnorm.js';
import { ropeBackward, ropeForward, type RopeTable } from './layers/rope.js';
import { swigluBackward, swigluForward } from './layers/swiglu.js';
import { sizeOf, type Ops, type Precision } from './ops.js';

export type CpuDtype = 'float32' | 'float64';

const data = (t: Tensor): FloatArray => t.data as FloatArray;

function requireSize(t: Tensor, n: number, name: string): void {
  if (t.size !== n) throw new ShapeError(name, `must hold ${n} elements`, `got [${t.shape.join(', ')}]`);
}

export function createCpuOps(dtype: CpuDtype = 'float32'): Ops<Tensor, Int32Array> {
  if (dtype !== 'float32' && dtype !== 'float64') throw new InvalidArgumentError('dtype', 'must be float32 or float64', `got ${String(dtype)}`);
  const rows = (t: Tensor): number => t.shape[0];
  const cols = (t: Tensor): number => t.size / t.shape[0];
  return {
    name: `cpu-${dtype}`,
    actDtype: dtype,
    masterDtype: dtype,
    zeros: (_p: Precision, shape) => Tensor.zeros(dtype, shape),
    fromHost: (_p: Precision, shape, values) => Tensor.fromValues(dtype, shape, values),
    toHost: (t) => Float64Array.from(data(t)),
    view: (t, shape, offset = 0) => {
      const n = sizeOf(shape);
      if (offset < 0 || offset + n > t.size) throw new ShapeError('view', `must lie inside the tensor's ${t.size} elements`, `[${offset}, ${offset + n})`);
      return new Tensor(t.dtype, shape, data(t).subarray(offset, offset + n));
    },
    free: () => {},
    indices: (values) => values,
    freeIndices: () => {},
    zero: (t) => data(t).fill(0),
    copy: (dst, src) => {
      requireSize(dst, src.size, 'dst');
      data(dst).set(data(src));
    },
    addInto: (dst, src) => {
      requireSize(dst, src.size, 'dst');
      const [d, x] = [data(dst), src.dtype === dtype ? data(src) : src.toFloat64()];
      for (let i = 0; i < d.length; i++) d[i] += x[i];
    },
    gemm: (c, a, b, s: MatmulShape) => {
      requireSize(c, s.m * s.n, 'C');
      requireSize(a, s.m * s.k, 'A');
      requireSize(b, s.k * s.n, 'B');
      matmul(data(c), data(a), data(b), s);
    },
    embeddingForward: (out, tokens, table) => embeddingForward(data(out), tokens, data(table), cols(table)),
    embeddingBackward: (dtable, tokens, dout) => embeddingBackward(data(dtable), tokens, data(dout), cols(dtable)),
    rmsnormForward: (out, rstd, x, w, eps) => rmsnormForward(data(out), data(rstd), data(x), data(w), rows(x), cols(x), eps),
    rmsnormBackward: (dx, dw, dout, x, w, rstd) => rmsnormBackward(data(dx), data(dw), data(dout), data(x), data(w), data(rstd), rows(x), cols(x)),
    ropeForward: (x, positions, table: RopeTable) => ropeForward(data(x), positions, x.shape[1], table),
    ropeBackward: (dst, src, positions, table: RopeTable) => ropeBackward(data(dst), data(src), positions, dst.shape[1], table),
    swigluForward: (out, a, b) => swigluForward(data(out), data(a), data(b), out.size),
    swigluBackward: (da, db, dout, a, b) => swigluBackward(data(da), data(db), data(dout), data(a), data(b), da.size),
    crossEntropy: (dlogits, rowLoss, logits, targets, scale) => {
      crossEntropy(data(dlogits), data(rowLoss), data(logits), targets, cols(logits), scale);
    },
    sumOfSquares: (t) => sumOfSquares(data(t), t.size),
    adamw: (p, g, m, v, h: AdamWHyper, gradScale) => adamwUpdate(data(p), data(g), data(m), data(v), p.size, h, gradScale),
    synchronize: () => {},
  };
}
