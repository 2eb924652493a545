/**
 * Naive attention on the GPU, the oracle of experiment A: everything in float32, one query head at
 * a time, the whole [T, T] score matrix materialised:
 *   S = Q_h·K_gᵀ (cuBLAS SGEMM), P = masked softmax(scale·S) (kernels/naive_attention.cu),
 *   O_h = P·V_g (SGEMM);
 * backward, recomputing P from the saved lse:
 *   dP = dO_h·V_gᵀ, dS = P ∘ (dP − rowsum(P ∘ dP))·scale,
 *   dQ_h += dS·K_g,  dK_g += dSᵀ·Q_h,  dV_g += Pᵀ·dO_h.
 * Heads are strided views into the token-major [T, H, D] tensors (leading dimension H·D), so no
 * transposes are copied. Memory: two T² float32 buffers (2 GiB at 16k tokens).
 */
import { DeviceTensor, type DeviceBuffer, type KernelArg } from 'magi-attention/device';
import type { SliceList } from 'magi-attention';
import type { Attention, AttentionGrads, AttentionOutput } from '../attention.js';
import { maskRows } from '../layers/attention-dense.js';
import { addressOf, type GpuContext } from './ops.js';
import type { GemmMatrix } from './cublaslt.js';

export function naiveAttention(ctx: GpuContext, mask: SliceList, rows: number): Attention<DeviceTensor> {
  const { device, lt, kernels } = ctx;
  const stream = device.defaultStream;
  const m = maskRows(mask, rows);
  let maskBuffers: { rowStart: DeviceBuffer; keyStart: DeviceBuffer; keyEnd: DeviceBuffer } | null = null;
  const maskOnDevice = () =>
    (maskBuffers ??= { rowStart: device.upload(m.rowStart), keyStart: device.upload(m.keyStart.length > 0 ? m.keyStart : new Int32Array(1)), keyEnd: device.upload(m.keyEnd.length > 0 ? m.keyEnd : new Int32Array(1)) });

  const f32 = (shape: readonly number[]): DeviceTensor => DeviceTensor.empty(device, 'float32', shape);
  const widen = (t: DeviceTensor): DeviceTensor => {
    const out = f32(t.shape);
    kernels.kernel('convert.cu', 'llama_bf16_to_f32').launch({ grid: Math.min(Math.ceil(t.size / 256), device.smCount * 8), block: 256, stream }, [
      { type: 'ptr', value: out.buffer },
      { type: 'ptr', value: t.buffer },
      { type: 'i64', value: t.size },
    ]);
    return out;
  };
  /** Head h of a token-major [T, H, D] float32 tensor as a [T, D] matrix with leading dimension H·D. */
  const head = (t: DeviceTensor, h: number): GemmMatrix => ({ ptr: addressOf(t, h * t.shape[2]), dtype: 'float32', rows: t.shape[0], cols: t.shape[2], ld: t.shape[1] * t.shape[2] });
  const square = (t: DeviceTensor): GemmMatrix => ({ ptr: t.buffer.ptr, dtype: 'float32', rows: t.shape[0], cols: t.shape[1] });
  const rowKernel = (name: string, grid: number, args: KernelArg[]): void =>
    kernels.kernel('naive_attention.cu', name).launch({ grid, block: 256, stream }, args);
  /** Arguments of the masked row kernels for head h: scores [T, T], lse [T, Hq] (column h), the mask rows, scale. */
  const maskedRowArgs = (S: DeviceTensor, lse: DeviceTensor, h: number, scale: number): KernelArg[] => {
    const mb = maskOnDevice();
    return [
      { type: 'ptr', value: S.buffer },
      { type: 'ptr', value: addressOf(lse, h) },
      { type: 'i32', value: lse.shape[1] },
      { type: 'ptr', value: mb.rowStart },
      { type: 'ptr', value: mb.keyStart },
      { type: 'ptr', value: mb.keyEnd },
      { type: 'i32', value: S.shape[1] },
      { type: 'f32', value: scale },
    ];
  };

  return {
    name: 'naive',
    dispose: () => {
      if (maskBuffers === null) return;
      for (const b of Object.values(maskBuffers)) b.free();
      maskBuffers = null;
    },
    forward: async (q, k, v): Promise<AttentionOutput<DeviceTensor>> => {
      const [T, Hq, D] = q.shape;
      const group = Hq / k.shape[1];
      const scale = 1 / Math.sqrt(D);
      const [qf, kf, vf] = [widen(q), widen(k), widen(v)];
      const outF = f32([T, Hq, D]);
      const lse = f32([T, Hq]);
      const S = f32([T, T]);
      try {
        for (let h = 0; h < Hq; h++) {
          const g = Math.floor(h / group);
          lt.gemm({ c: square(S), a: head(qf, h), b: head(kf, g), transB: true });
          rowKernel('llama_naive_softmax_fwd', T, maskedRowArgs(S, lse, h, scale));
          lt.gemm({ c: head(outF, h), a: square(S), b: head(vf, g) });
        }
        const out = DeviceTensor.empty(device, q.dtype, q.shape);
        kernels.kernel('convert.cu', 'llama_f32_to_bf16').launch({ grid: Math.min(Math.ceil(out.size / 256), device.smCount * 8), block: 256, stream }, [
          { type: 'ptr', value: out.buffer },
          { type: 'ptr', value: outF.buffer },
          { type: 'i64', value: out.size },
        ]);
        return { out, lse };
      } finally {
        for (const t of [qf, kf, vf, outF, S]) t.free();
      }
    },
    backward: async (dout, q, k, v, fwd, grads: AttentionGrads<DeviceTensor>): Promise<void> => {
      const [T, Hq, D] = q.shape;
      const group = Hq / k.shape[1];
      const scale = 1 / Math.sqrt(D);
      const [qf, kf, vf, dof] = [widen(q), widen(k), widen(v), widen(dout)];
      const P = f32([T, T]);
      const dS = f32([T, T]);
      try {
        for (let h = 0; h < Hq; h++) {
          const g = Math.floor(h / group);
          lt.gemm({ c: square(P), a: head(qf, h), b: head(kf, g), transB: true });
          rowKernel('llama_naive_probs', T, maskedRowArgs(P, fwd.lse, h, scale));
          lt.gemm({ c: square(dS), a: head(dof, h), b: head(vf, g), transB: true });
          rowKernel('llama_naive_softmax_bwd', T, [
            { type: 'ptr', value: dS.buffer },
            { type: 'ptr', value: P.buffer },
            { type: 'i32', value: T },
            { type: 'f32', value: scale },
          ]);
          lt.gemm({ c: head(grads.dq, h), a: square(dS), b: head(kf, g), beta: 1 });
          lt.gemm({ c: head(grads.dk, g), a: square(dS), b: head(qf, h), transA: true, beta: 1 });
          lt.gemm({ c: head(grads.dv, g), a: square(P), b: head(dof, h), transA: true, beta: 1 });
        }
      } finally {
        for (const t of [qf, kf, vf, dof, P, dS]) t.free();
      }
    },
  };
}
