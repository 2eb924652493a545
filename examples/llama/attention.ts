/**
 * The attention core of every layer, behind one small interface so a training step is the same
 * whatever computes it:
 *   ffa    the library's flexFlashAttn / flexFlashAttnBackward on the batch's slice mask: host
 *          Tensors run the CPU kernel, DeviceTensors the CUDA kernels (one GPU);
 *   dense  plain dense attention on the CPU (layers/attention-dense.ts), the CI oracle;
 *   naive  cuBLAS QKᵀ, mask, softmax, PV in float32 on the GPU (gpu/naive-attention.ts);
 *   cp     calcAttn / calcAttnBackward on this rank's dispatched shard (context parallelism:
 *          the batch is dispatched once per step, positions come from getPositionIds, and every
 *          layer calls calcAttn with the step's key). Host tensors today; the same code takes
 *          device tensors once the GPU runtime accepts them.
 * Gradients are added into float32 (master) buffers the model zeroes per layer.
 */
import {
  Tensor,
  calcAttn,
  calcAttnBackward,
  flexFlashAttn,
  flexFlashAttnBackward,
  type AttnTensor,
  type DistAttnRuntimeKey,
  type SliceList,
} from 'magi-attention';
import { denseAttentionBackward, denseAttentionForward, maskRows } from './layers/attention-dense.js';
import type { FloatArray } from './layers/matmul.js';
import type { Ops } from './ops.js';

export interface AttentionOutput<T> {
  /** [T, Hq, D], act precision. */
  out: T;
  /** [T, Hq], float32. */
  lse: T;
}

export interface AttentionGrads<T> {
  dq: T;
  dk: T;
  dv: T;
}

export interface Attention<T> {
  readonly name: string;
  /** q [T, Hq, D], k and v [T, Hkv, D]; returns new tensors the caller frees. */
  forward(q: T, k: T, v: T): Promise<AttentionOutput<T>>;
  /** Adds dq, dk, dv (float32, shaped like q, k, v) given dL/dout and the forward's output. */
  backward(dout: T, q: T, k: T, v: T, fwd: AttentionOutput<T>, grads: AttentionGrads<T>): Promise<void>;
  /** Frees what the core keeps for its batch (device copies of the mask), if anything. */
  dispose?(): void;
}

/** flexFlashAttn over `mask` (host Tensors: the CPU kernel; DeviceTensors: the CUDA kernels). */
export function ffaAttention<T extends AttnTensor>(mask: SliceList): Attention<T> {
  const opts = { qRanges: mask.qRanges, kRanges: mask.kRanges, maskTypes: mask.maskTypes };
  return {
    name: 'ffa',
    forward: async (q, k, v) => {
      const { out, lse } = flexFlashAttn<T>(q, k, v, opts);
      return { out, lse };
    },
    backward: async (dout, q, k, v, fwd, g) => {
      flexFlashAttnBackward<T>(dout, q, k, v, fwd.out, fwd.lse, { ...opts, dq: g.dq, dk: g.dk, dv: g.dv });
    },
  };
}

/** Dense attention on the CPU over `mask` (any float dtype; the oracle of the CI test). */
export function denseAttention(mask: SliceList, tokens: number): Attention<Tensor> {
  const rows = maskRows(mask, tokens);
  const shape = (q: Tensor, k: Tensor) => ({ tokens: q.shape[0], headsQ: q.shape[1], headsKv: k.shape[1], headDim: q.shape[2], scale: 1 / Math.sqrt(q.shape[2]) });
  return {
    name: 'dense',
    forward: async (q, k, v) => {
      const out = Tensor.zeros(q.dtype, q.shape);
      const lse = Tensor.zeros(q.dtype === 'float64' ? 'float64' : 'float32', [q.shape[0], q.shape[1]]);
      denseAttentionForward(out.data as FloatArray, lse.data as FloatArray, q.data as FloatArray, k.data as FloatArray, v.data as FloatArray, rows, shape(q, k));
      return { out, lse };
    },
    backward: async (dout, q, k, v, fwd, g) => {
      const f = (t: Tensor) => t.data as FloatArray;
      denseAttentionBackward(f(g.dq), f(g.dk), f(g.dv), f(dout), f(q), f(k), f(v), f(fwd.lse), rows, shape(q, k));
    },
  };
}

/**
 * calcAttn on this rank's shard of the key's dispatched sequence (a collective over key.group),
 * for any tensor kind calcAttn takes; its gradients come back as new tensors and are added into
 * the model's float32 buffers with `ops.addInto`.
 */
export function cpAttention<T extends AttnTensor, I>(key: DistAttnRuntimeKey, ops: Ops<T, I>): Attention<T> {
  return {
    name: `cp${key.group.size}`,
    forward: async (q, k, v) => {
      const { out, lse } = await calcAttn<T>(q, k, v, key);
      return { out, lse };
    },
    backward: async (dout, q, k, v, fwd, g) => {
      const r = await calcAttnBackward<T>(dout, q, k, v, fwd.out, fwd.lse, key);
      for (const [acc, part] of [
        [g.dq, r.dq],
        [g.dk, r.dk],
        [g.dv, r.dv],
      ] as const) {
        ops.addInto(acc, part);
        ops.free(part);
      }
    },
  };
}
