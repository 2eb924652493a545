/**
 * The model's parameters in flat buffers: master weights, gradients and AdamW's two moments in
 * the backend's master precision, plus the copy the matmuls read in its activation precision
 * (bfloat16 on the GPU, refreshed after every optimizer step; on the CPU the master itself).
 * Each parameter is a view at an offset aligned to 128 elements, so every matrix starts on a
 * 256-byte boundary (what cuBLASLt's fast kernels want) and one kernel can reduce or clear all
 * gradients at once.
 */
import { InvalidArgumentError, Rng, toFloat32Array } from 'magi-attention';
import { checkConfig, paramSpecs, type LlamaConfig, type ParamSpec } from './config.js';
import { sizeOf, type Ops } from './ops.js';
import { readSafetensors, writeSafetensors, type SafeTensor } from './safetensors.js';

const ALIGN = 128;

export interface Param<T> {
  readonly spec: ParamSpec;
  readonly offset: number;
  readonly size: number;
  readonly master: T;
  readonly grad: T;
  readonly m: T;
  readonly v: T;
  /** What the matmuls read (act precision). */
  readonly act: T;
}

export class ParamSet<T, I> {
  readonly total: number;
  readonly master: T;
  readonly grad: T;
  readonly m: T;
  readonly v: T;
  readonly act: T;
  private readonly byName = new Map<string, Param<T>>();
  private readonly sharedAct: boolean;

  constructor(
    readonly ops: Ops<T, I>,
    readonly config: LlamaConfig,
  ) {
    checkConfig(config);
    const specs = paramSpecs(config);
    let at = 0;
    const offsets = specs.map((s) => {
      const o = at;
      at += Math.ceil(sizeOf(s.shape) / ALIGN) * ALIGN;
      return o;
    });
    this.total = at;
    this.master = ops.zeros('master', [at]);
    this.grad = ops.zeros('master', [at]);
    this.m = ops.zeros('master', [at]);
    this.v = ops.zeros('master', [at]);
    this.sharedAct = ops.actDtype === ops.masterDtype;
    this.act = this.sharedAct ? this.master : ops.zeros('act', [at]);
    specs.forEach((spec, i) => {
      const offset = offsets[i];
      const view = (t: T): T => ops.view(t, spec.shape, offset);
      this.byName.set(spec.name, {
        spec,
        offset,
        size: sizeOf(spec.shape),
        master: view(this.master),
        grad: view(this.grad),
        m: view(this.m),
        v: view(this.v),
        act: view(this.act),
      });
    });
  }

  get(name: string): Param<T> {
    const p = this.byName.get(name);
    if (p === undefined) throw new InvalidArgumentError('name', 'must name a parameter of this model', `got ${name}`);
    return p;
  }

  list(): Param<T>[] {
    return [...this.byName.values()];
  }

  /** Normal(0, initStd²) matrices, unit norm weights, from one seeded stream in checkpoint order. */
  initRandom(seed: number): void {
    const rng = new Rng(seed);
    for (const p of this.list()) {
      const values = new Float32Array(p.size);
      if (p.spec.init === 'ones') values.fill(1);
      else for (let i = 0; i < p.size; i++) values[i] = rng.normal() * this.config.initStd;
      this.writeParam(p, values);
    }
    this.refreshAct();
  }

  /** Loads master weights (and AdamW moments when present) from a checkpoint written by `save`; returns its step. */
  load(path: string): number {
    const file = readSafetensors(path);
    for (const p of this.list()) {
      const t = file.tensors.get(p.spec.name);
      if (t === undefined) throw new InvalidArgumentError('checkpoint', `${path} lacks parameter ${p.spec.name}`);
      if (t.shape.length !== p.spec.shape.length || t.shape.some((d, i) => d !== p.spec.shape[i])) {
        throw new InvalidArgumentError('checkpoint', `${p.spec.name} has shape [${t.shape.join(', ')}], the model wants [${p.spec.shape.join(', ')}]`);
      }
      this.writeParam(p, toFloats(t));
      for (const [prefix, dst] of [
        ['optimizer.exp_avg.', p.m],
        ['optimizer.exp_avg_sq.', p.v],
      ] as const) {
        const s = file.tensors.get(prefix + p.spec.name);
        if (s !== undefined) this.writeInto(dst, p.spec.shape, toFloats(s));
      }
    }
    this.refreshAct();
    return Number(file.metadata.step ?? 0);
  }

  /** Writes the master weights as float32 safetensors (Hugging Face names), optionally with the AdamW moments. */
  save(path: string, metadata: Record<string, string>, withOptimizer = false): void {
    const tensors: Array<[string, SafeTensor]> = [];
    const f32 = (t: T): Float32Array => Float32Array.from(this.ops.toHost(t));
    for (const p of this.list()) tensors.push([p.spec.name, { dtype: 'F32', shape: p.spec.shape, data: f32(p.master) }]);
    if (withOptimizer) {
      for (const p of this.list()) tensors.push([`optimizer.exp_avg.${p.spec.name}`, { dtype: 'F32', shape: p.spec.shape, data: f32(p.m) }]);
      for (const p of this.list()) tensors.push([`optimizer.exp_avg_sq.${p.spec.name}`, { dtype: 'F32', shape: p.spec.shape, data: f32(p.v) }]);
    }
    writeSafetensors(path, tensors, metadata);
  }

  /** Re-makes the matmuls' copy from the master weights (after an optimizer step). */
  refreshAct(): void {
    if (!this.sharedAct) this.ops.copy(this.act, this.master);
  }

  zeroGrads(): void {
    this.ops.zero(this.grad);
  }

  /** Frees the flat buffers; the set cannot be used afterwards. */
  dispose(): void {
    for (const t of this.sharedAct ? [this.master, this.grad, this.m, this.v] : [this.master, this.grad, this.m, this.v, this.act]) this.ops.free(t);
  }

  /** The gradients as host float32 arrays by parameter name. */
  hostGrads(): Map<string, Float32Array> {
    return new Map(this.list().map((p) => [p.spec.name, Float32Array.from(this.ops.toHost(p.grad))]));
  }

  private writeParam(p: Param<T>, values: ArrayLike<number>): void {
    this.writeInto(p.master, p.spec.shape, values);
  }

  private writeInto(dst: T, shape: readonly number[], values: ArrayLike<number>): void {
    const src = this.ops.fromHost('master', shape, values);
    this.ops.copy(dst, src);
    this.ops.free(src);
  }
}

function toFloats(t: SafeTensor): Float32Array | Float64Array {
  if (t.dtype === 'F32' || t.dtype === 'F64') return t.data as Float32Array | Float64Array;
  if (t.dtype === 'BF16') return toFloat32Array('bfloat16', t.data as Uint16Array);
  throw new InvalidArgumentError('checkpoint', `tensors must be F32, F64 or BF16`, `got ${t.dtype}`);
}
