/**
 * The GPU backend of the trainer: `Ops` over the device layer's DeviceTensor, with cuBLASLt for
 * every matrix product (cublaslt.ts) and our kernels (../kernels/*.cu) for every other layer.
 * Activations and the matmuls' weight copies are bfloat16; master weights, gradients, moments,
 * the residual stream and the norms' statistics are float32. Everything is queued on the legacy
 * default stream, where the library's FFA kernels run too, so no event is needed between them;
 * the host waits only where a value comes back (loss, gradient norm).
 */
import { DeviceTensor, kernelArg, type CudaDevice, type DeviceBuffer, type KernelArg } from 'magi-attention/device';
import { InvalidArgumentError, ShapeError, Tensor, bytesPerElement, fromNumbers, type DType } from 'magi-attention';
import type { AdamWHyper } from '../layers/adamw.js';
import type { MatmulShape } from '../layers/matmul.js';
import type { RopeTable } from '../layers/rope.js';
import { sizeOf, type Ops, type Precision } from '../ops.js';
import { CublasLt, type GemmDtype, type GemmMatrix } from './cublaslt.js';
import { LlamaKernels, type KernelFile } from './kernels.js';

/** What the GPU path holds per device: the device, its cuBLASLt handle and our compiled kernels. */
export interface GpuContext {
  readonly device: CudaDevice;
  readonly lt: CublasLt;
  readonly kernels: LlamaKernels;
}

export function openGpuContext(device: CudaDevice, options: { cacheDir?: string } = {}): GpuContext {
  return { device, lt: new CublasLt(device), kernels: new LlamaKernels(device, options.cacheDir) };
}

const THREADS = 256;
const { ptr, i32, f32 } = kernelArg;
const i64 = (value: number): KernelArg => ({ type: 'i64', value });

/** Blocks for a grid-stride loop over n elements: enough to fill the GPU, no more than needed. */
function strideBlocks(device: CudaDevice, n: number): number {
  return Math.max(1, Math.min(Math.ceil(n / THREADS), device.smCount * 8));
}

/** A DeviceTensor's element address `offset` elements in. */
export function addressOf(t: DeviceTensor, offset = 0): bigint {
  return t.buffer.ptr + BigInt(offset * bytesPerElement(t.dtype));
}

function gemmDtype(t: DeviceTensor, name: string): GemmDtype {
  if (t.dtype !== 'bfloat16' && t.dtype !== 'float32') throw new ShapeError(name, 'must be bfloat16 or float32 for a GEMM', `got ${t.dtype}`);
  return t.dtype;
}

export function createGpuOps(ctx: GpuContext): Ops<DeviceTensor, DeviceBuffer> {
  const { device, lt, kernels } = ctx;
  const stream = device.defaultStream;
  const ropeTables = new WeakMap<RopeTable, { cos: DeviceBuffer; sin: DeviceBuffer }>();
  const dtypeOf = (p: Precision): DType => (p === 'act' ? 'bfloat16' : 'float32');
  const launch = (file: KernelFile, name: string, grid: number, block: number, args: KernelArg[], sharedMemBytes = 0): void =>
    kernels.kernel(file, name).launch({ grid, block, sharedMemBytes, stream }, args);
  const requireDtype = (t: DeviceTensor, dtype: DType, name: string): void => {
    if (t.dtype !== dtype) throw new ShapeError(name, `must be ${dtype}`, `got ${t.dtype}`);
  };
  const requireSize = (t: DeviceTensor, n: number, name: string): void => {
    if (t.size !== n) throw new ShapeError(name, `must hold ${n} elements`, `got [${t.shape.join(', ')}]`);
  };
  const rows = (t: DeviceTensor): number => t.shape[0];
  const cols = (t: DeviceTensor): number => t.size / t.shape[0];

  const convert = (dst: DeviceTensor, src: DeviceTensor): void => {
    const n = dst.size;
    if (dst.dtype === 'bfloat16' && src.dtype === 'float32') launch('convert.cu', 'llama_f32_to_bf16', strideBlocks(device, n), THREADS, [ptr(dst.buffer), ptr(src.buffer), i64(n)]);
    else if (dst.dtype === 'float32' && src.dtype === 'bfloat16') launch('convert.cu', 'llama_bf16_to_f32', strideBlocks(device, n), THREADS, [ptr(dst.buffer), ptr(src.buffer), i64(n)]);
    else throw new ShapeError('dst', 'conversions are float32 <-> bfloat16', `${src.dtype} -> ${dst.dtype}`);
  };

  const ropeOnDevice = (table: RopeTable): { cos: DeviceBuffer; sin: DeviceBuffer } => {
    let t = ropeTables.get(table);
    if (t === undefined) ropeTables.set(table, (t = { cos: device.upload(table.cos), sin: device.upload(table.sin) }));
    return t;
  };

  return {
    name: 'gpu-bf16',
    actDtype: 'bfloat16',
    masterDtype: 'float32',

    zeros: (p, shape) => {
      const t = DeviceTensor.empty(device, dtypeOf(p), shape);
      if (t.byteLength > 0) t.buffer.fill(0, stream);
      return t;
    },
    fromHost: (p, shape, values) => {
      const dtype = dtypeOf(p);
      return DeviceTensor.fromHost(device, new Tensor(dtype, shape, fromNumbers(dtype, values)));
    },
    toHost: (t) => t.toHost().toFloat64(),
    view: (t, shape, offset = 0) => {
      const n = sizeOf(shape);
      if (offset < 0 || offset + n > t.size) throw new ShapeError('view', `must lie inside the tensor's ${t.size} elements`, `[${offset}, ${offset + n})`);
      const bpe = bytesPerElement(t.dtype);
      return new DeviceTensor(device, t.dtype, shape, t.buffer.view(offset * bpe, n * bpe));
    },
    free: (t) => {
      if (t.buffer.viewOf === null && !t.isFreed) t.free();
    },
    indices: (values) => device.upload(values),
    freeIndices: (i) => i.free(),

    zero: (t) => t.buffer.fill(0, stream),
    copy: (dst, src) => {
      requireSize(dst, src.size, 'dst');
      if (dst.dtype === src.dtype) device.driver.cuMemcpyDtoDAsync(dst.buffer.ptr, src.buffer.ptr, dst.byteLength, stream.handle);
      else convert(dst, src);
    },
    addInto: (dst, src) => {
      requireDtype(dst, 'float32', 'dst');
      requireSize(dst, src.size, 'dst');
      const name = src.dtype === 'bfloat16' ? 'llama_add_bf16_into_f32' : src.dtype === 'float32' ? 'llama_add_f32_into_f32' : null;
      if (name === null) throw new ShapeError('src', 'must be bfloat16 or float32', `got ${src.dtype}`);
      launch('convert.cu', name, strideBlocks(device, dst.size), THREADS, [ptr(dst.buffer), ptr(src.buffer), i64(dst.size)]);
    },
    gemm: (c, a, b, s: MatmulShape) => {
      requireSize(c, s.m * s.n, 'C');
      requireSize(a, s.m * s.k, 'A');
      requireSize(b, s.k * s.n, 'B');
      const mat = (t: DeviceTensor, r: number, cc: number, name: string): GemmMatrix => ({ ptr: t.buffer.ptr, dtype: gemmDtype(t, name), rows: r, cols: cc });
      lt.gemm({
        c: mat(c, s.m, s.n, 'C'),
        a: s.transA ? mat(a, s.k, s.m, 'A') : mat(a, s.m, s.k, 'A'),
        b: s.transB ? mat(b, s.n, s.k, 'B') : mat(b, s.k, s.n, 'B'),
        transA: s.transA ?? false,
        transB: s.transB ?? false,
        beta: s.beta ?? 0,
      });
    },

    embeddingForward: (out, tokens, table) => {
      requireDtype(out, 'float32', 'out');
      requireDtype(table, 'float32', 'table');
      launch('embedding.cu', 'llama_embedding_fwd', rows(out), THREADS, [ptr(out.buffer), ptr(tokens), ptr(table.buffer), i32(cols(table))]);
    },
    embeddingBackward: (dtable, tokens, dout) => {
      requireDtype(dtable, 'float32', 'dtable');
      requireDtype(dout, 'float32', 'dout');
      launch('embedding.cu', 'llama_embedding_bwd', rows(dout), THREADS, [ptr(dtable.buffer), ptr(tokens), ptr(dout.buffer), i32(cols(dtable))]);
    },
    rmsnormForward: (out, rstd, x, w, eps) => {
      requireDtype(out, 'bfloat16', 'out');
      for (const [t, n] of [[rstd, 'rstd'], [x, 'x'], [w, 'w']] as const) requireDtype(t, 'float32', n);
      launch('rmsnorm.cu', 'llama_rmsnorm_fwd', rows(x), THREADS, [ptr(out.buffer), ptr(rstd.buffer), ptr(x.buffer), ptr(w.buffer), i32(cols(x)), f32(eps)]);
    },
    rmsnormBackward: (dx, dw, dout, x, w, rstd) => {
      for (const [t, n] of [[dx, 'dx'], [dw, 'dw'], [dout, 'dout'], [x, 'x'], [w, 'w'], [rstd, 'rstd']] as const) requireDtype(t, 'float32', n);
      const [T, D] = [rows(x), cols(x)];
      const rowsPerBlock = 32;
      const k = kernels.kernel('rmsnorm.cu', 'llama_rmsnorm_bwd');
      k.setMaxDynamicSharedMemory(D * 4);
      k.launch({ grid: Math.ceil(T / rowsPerBlock), block: THREADS, sharedMemBytes: D * 4, stream }, [
        ptr(dx.buffer),
        ptr(dw.buffer),
        ptr(dout.buffer),
        ptr(x.buffer),
        ptr(w.buffer),
        ptr(rstd.buffer),
        i32(T),
        i32(D),
        i32(rowsPerBlock),
      ]);
    },
    ropeForward: (x, positions, table) => {
      requireDtype(x, 'bfloat16', 'x');
      const [T, H] = x.shape;
      const t = ropeOnDevice(table);
      const n = T * H * table.half;
      launch('rope.cu', 'llama_rope_fwd', Math.ceil(n / THREADS), THREADS, [ptr(x.buffer), ptr(positions), ptr(t.cos), ptr(t.sin), i32(T), i32(H), i32(table.half)]);
    },
    ropeBackward: (dst, src, positions, table) => {
      requireDtype(dst, 'bfloat16', 'dst');
      requireDtype(src, 'float32', 'src');
      const [T, H] = dst.shape;
      const t = ropeOnDevice(table);
      const n = T * H * table.half;
      launch('rope.cu', 'llama_rope_bwd', Math.ceil(n / THREADS), THREADS, [ptr(dst.buffer), ptr(src.buffer), ptr(positions), ptr(t.cos), ptr(t.sin), i32(T), i32(H), i32(table.half)]);
    },
    swigluForward: (out, a, b) => {
      for (const [t, n] of [[out, 'out'], [a, 'a'], [b, 'b']] as const) requireDtype(t, 'bfloat16', n);
      launch('swiglu.cu', 'llama_swiglu_fwd', strideBlocks(device, out.size), THREADS, [ptr(out.buffer), ptr(a.buffer), ptr(b.buffer), i64(out.size)]);
    },
    swigluBackward: (da, db, dout, a, b) => {
      for (const [t, n] of [[da, 'da'], [db, 'db'], [dout, 'dout'], [a, 'a'], [b, 'b']] as const) requireDtype(t, 'bfloat16', n);
      launch('swiglu.cu', 'llama_swiglu_bwd', strideBlocks(device, da.size), THREADS, [ptr(da.buffer), ptr(db.buffer), ptr(dout.buffer), ptr(a.buffer), ptr(b.buffer), i64(da.size)]);
    },
    crossEntropy: (dlogits, rowLoss, logits, targets, scale) => {
      requireDtype(dlogits, 'bfloat16', 'dlogits');
      requireDtype(logits, 'float32', 'logits');
      requireDtype(rowLoss, 'float32', 'rowLoss');
      launch('cross_entropy.cu', 'llama_cross_entropy', rows(logits), 1024, [ptr(dlogits.buffer), ptr(rowLoss.buffer), ptr(logits.buffer), ptr(targets), i32(cols(logits)), f32(scale)]);
    },

    sumOfSquares: (t) => {
      requireDtype(t, 'float32', 't');
      const blocks = Math.min(1024, strideBlocks(device, t.size));
      const partial = device.alloc(blocks * 8);
      try {
        launch('adamw.cu', 'llama_sum_squares', blocks, THREADS, [ptr(partial), ptr(t.buffer), i64(t.size)]);
        const host = partial.download(new Float64Array(blocks));
        let s = 0;
        for (const x of host) s += x;
        return s;
      } finally {
        partial.free();
      }
    },
    adamw: (p, g, m, v, h: AdamWHyper, gradScale) => {
      for (const [t, n] of [[p, 'p'], [g, 'g'], [m, 'm'], [v, 'v']] as const) requireDtype(t, 'float32', n);
      if (!(h.step >= 1)) throw new InvalidArgumentError('step', 'must be >= 1 (bias correction)', `got ${h.step}`);
      const stepSize = h.lr / (1 - h.beta1 ** h.step);
      const bc2Sqrt = Math.sqrt(1 - h.beta2 ** h.step);
      const decay = 1 - h.lr * h.weightDecay;
      launch('adamw.cu', 'llama_adamw', strideBlocks(device, p.size), THREADS, [
        ptr(p.buffer),
        ptr(g.buffer),
        ptr(m.buffer),
        ptr(v.buffer),
        i64(p.size),
        f32(h.beta1),
        f32(h.beta2),
        f32(h.eps),
        f32(decay),
        f32(stepSize),
        f32(bc2Sqrt),
        f32(gradScale),
      ]);
    },
    synchronize: () => device.synchronize(),
  };
}
