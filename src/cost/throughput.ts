/**
 * Kernel throughput, as measured: the kernel benchmark's JSON (bench/results/kernel.json, written
 * by bench/kernel/run.ts) read as "TFLOP/s of our kernels for this mask shape, pass and sequence
 * length". Nothing here holds a measured number; every figure comes from the file given, and the
 * file names the GPU it was measured on.
 *
 * Between measured lengths the throughput is interpolated linearly in log2(length); outside them
 * it is held at the nearest measured value (the benchmark goes from 4k to 64k tokens, so a 1M-token
 * shard is costed at the 64k figure, and a 1k-token shard at the 4k figure: an optimistic bound).
 * The benchmark's head shape (64:8 heads, D 128) is assumed to carry over to other head counts.
 */
import { InvalidArgumentError } from '../errors.js';
import type { SliceList } from '../mask/slice-list.js';

/** The mask shapes the kernel benchmark measures (bench/kernel/masks.ts). */
export const KERNEL_SHAPES = ['full', 'causal', 'varlen_full', 'varlen_causal', 'sw_causal', 'varlen_block_causal'] as const;
export type KernelShape = (typeof KERNEL_SHAPES)[number];

/** The part of the kernel benchmark's JSON the cost model reads. */
export interface KernelBenchJSON {
  readonly gpu: string;
  readonly settings?: { readonly headsQ?: number; readonly headsKv?: number; readonly dim?: number; readonly dtype?: string };
  readonly results: ReadonlyArray<{
    readonly mask: string;
    readonly seqlen: number;
    readonly method: string;
    readonly fwd_tflops: number | null;
    readonly bwd_tflops: number | null;
  }>;
}

export type Pass = 'fwd' | 'bwd';

/** Forward FLOPs of `area` unmasked cells: QK^T and PV, 2 FLOPs per multiply-add each. */
export function forwardFlops(area: number, numHeadsQ: number, headDim: number): number {
  return 4 * area * numHeadsQ * headDim;
}

/** The benchmark's convention (04 §3.3): a backward counts 2.5 forwards. */
export const BACKWARD_FLOPS_RATIO = 2.5;

export function passFlops(pass: Pass, area: number, numHeadsQ: number, headDim: number): number {
  return forwardFlops(area, numHeadsQ, headDim) * (pass === 'bwd' ? BACKWARD_FLOPS_RATIO : 1);
}

/** Measured TFLOP/s of one method's kernels, per mask shape and pass, as a function of length. */
export class KernelThroughput {
  /** Per shape and pass: [log2(seqlen), TFLOP/s] sorted by length. */
  private readonly curves = new Map<string, Array<[number, number]>>();

  constructor(
    readonly source: KernelBenchJSON,
    /** Which method's rows to read ("ours": our FFA kernels). */
    readonly method = 'ours',
  ) {
    if (typeof source !== 'object' || source === null || !Array.isArray(source.results)) {
      throw new InvalidArgumentError('kernel benchmark', 'must be the JSON written by bench/kernel/run.ts (an object with a results array)');
    }
    for (const row of source.results) {
      if (row.method !== method) continue;
      for (const pass of ['fwd', 'bwd'] as const) {
        const v = pass === 'fwd' ? row.fwd_tflops : row.bwd_tflops;
        if (typeof v !== 'number' || !(v > 0) || !(row.seqlen > 0)) continue;
        const key = `${row.mask}/${pass}`;
        const curve = this.curves.get(key) ?? [];
        curve.push([Math.log2(row.seqlen), v]);
        this.curves.set(key, curve);
      }
    }
    for (const c of this.curves.values()) c.sort((a, b) => a[0] - b[0]);
    for (const shape of KERNEL_SHAPES) {
      for (const pass of ['fwd', 'bwd'] as const) {
        if (!this.curves.has(`${shape}/${pass}`)) {
          throw new InvalidArgumentError('kernel benchmark', `must have a ${pass} measurement of method '${method}' for mask ${shape}`, source.gpu);
        }
      }
    }
  }

  get gpu(): string {
    return this.source.gpu;
  }

  /** The measured lengths (tokens) of a shape, ascending. */
  seqlens(shape: KernelShape, pass: Pass): number[] {
    return this.curve(shape, pass).map(([l]) => Math.round(2 ** l));
  }

  /** TFLOP/s for a kernel call of `seqlen` q rows on a mask of this shape. */
  tflops(shape: KernelShape, pass: Pass, seqlen: number): number {
    const c = this.curve(shape, pass);
    const x = Math.log2(Math.max(1, seqlen));
    if (x <= c[0][0]) return c[0][1];
    if (x >= c[c.length - 1][0]) return c[c.length - 1][1];
    let i = 1;
    while (c[i][0] < x) i++;
    const [x0, y0] = c[i - 1];
    const [x1, y1] = c[i];
    return y0 + ((y1 - y0) * (x - x0)) / (x1 - x0);
  }

  /** Seconds to compute `area` cells of one pass. */
  seconds(shape: KernelShape, pass: Pass, seqlen: number, area: number, numHeadsQ: number, headDim: number): number {
    if (area <= 0) return 0;
    return passFlops(pass, area, numHeadsQ, headDim) / (this.tflops(shape, pass, seqlen) * 1e12);
  }

  private curve(shape: KernelShape, pass: Pass): Array<[number, number]> {
    const c = this.curves.get(`${shape}/${pass}`);
    if (c === undefined) throw new InvalidArgumentError('shape', `must be one of ${KERNEL_SHAPES.join(', ')}`, `got ${shape}`);
    return c;
  }
}

/** The benchmark shape that stands for each `magi-attn plan` preset mask. */
export const PRESET_KERNEL_SHAPE: Readonly<Record<string, KernelShape>> = {
  full: 'full',
  causal: 'causal',
  'varlen-full': 'varlen_full',
  'varlen-causal': 'varlen_causal',
  'block-causal': 'varlen_block_causal',
  'sliding-window': 'sw_causal',
};

/**
 * The benchmark shape for any mask: the preset's when the mask is one, else by its slices (one
 * slice or many, any causal diagonal or none).
 */
export function kernelShapeOf(mask: SliceList, presetKind?: string): KernelShape {
  if (presetKind !== undefined && PRESET_KERNEL_SHAPE[presetKind] !== undefined) return PRESET_KERNEL_SHAPE[presetKind];
  const n = mask.maskTypes.length;
  let diagonal = false;
  for (let b = 0; b < n; b++) if (mask.maskTypes[b] !== 0) diagonal = true;
  if (n <= 1) return diagonal ? 'causal' : 'full';
  return diagonal ? 'varlen_causal' : 'varlen_full';
}
