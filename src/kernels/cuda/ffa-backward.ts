/**
 * The launcher of the first CUDA flex-flash-attention backward kernel (ffa_bwd.cu, compiled at
 * run time by NVRTC). Host half of the backward's tile scheduler: the work list holds one item
 * per (slice, k tile of BN keys) with the q rows [qLo, qHi) of the slice that see keys of the
 * tile (the inverse of the per-row key interval); the grid is items x kv heads (on the Hopper
 * kernel kv-head-major or item-major per plan, ffa-backward-order.ts; item-major on the mma.sync
 * one) and each
 * block loops over the G query heads of its kv head (CatGQA) and the 64-row q tiles of [qLo, qHi).
 *
 * Sequence of one launch: zero the fp32 dk/dv buffers -> pre-pass (Δ = rowsum(out·dout),
 * lseLog2 = lse·log2e with -inf -> +inf, both [Hq, Tq] fp32; it zeroes the fp32 dq buffer row by
 * row as it goes, which saves a pass over the backward's largest buffer) -> main kernel (dq by
 * fp32 atomics per q tile, dk/dv in registers then fp32 atomics) -> convert fp32 -> input dtype.
 *
 * Options (FfaBackwardExtras):
 *   accumulation - a caller's fp32 dq/dk/dv buffer (same token-major layout as the fp32 scratch)
 *            is handed to the main kernel in place of the scratch: not zeroed, not converted;
 *   sink     - only adds dsink (ffa_bwd_dsink after the pre-pass: one block per head, a
 *            fixed-order reduction); the main kernel already sees the sink through out and lse;
 *   deterministic - the main kernel adds dq per (item, q tile) and dk/dv per item with fp32
 *            atomics, so an element that gets three or more adds (or two onto a nonzero
 *            accumulator) sums in a varying order. The deterministic schedule splits every item's
 *            q rows at multiples of 4·BM and groups the pieces first-fit so that inside a group no
 *            two pieces share a q row or a key row (planDeterministicBackward); one launch per
 *            group, in order, so every element receives its adds in a fixed order. For one long
 *            slice the pieces form a grid of (k tile, q chunk) cells and first-fit gives about
 *            max(k tiles, q chunks) groups, each a full grid of blocks. On the Hopper kernel at
 *            head dim 128 deterministic mode takes the 'ordered' schedule instead
 *            (ffa-backward-ordered.ts): one launch whose blocks take turns per 64-row dQ tile
 *            through counters in global memory, 1.06-1.23x the default backward's time where the
 *            grouped one takes 1.42-1.59x (H200, bench/kernel/README.md). The grouped schedule
 *            stays where no ordered entry point exists (CudaFfaBackward.deterministicScheduleAt).
 */
import { kernelArg, type CudaDevice, type DeviceBuffer, type Kernel, type KernelArg, type Module, type Stream } from '../../device/device.js';
import type { DType } from '../../dtype.js';
import type { SliceList } from '../../mask/slice-list.js';
import { rowKeyEnd, rowKeyStart } from '../../mask/geometry.js';
import { AttnMaskType, maskTypeFromInt } from '../../mask/mask-type.js';
import type { CuDevicePtr } from '../../device/cuda-driver.js';
import { readKernelSource } from './source.js';
import { greedyDisjointGroups, plannedSlice, type FfaForwardShape, type GroupedWork } from './ffa-forward.js';
import { ORDERED_HEAD_DIM, Sm90BackwardMain, sm90BackwardBlockM } from './ffa-backward-sm90.js';
import { ORDERED_RECORD, orderedLaunchItems, orderedLaunches, planOrderedBackward, type DeterministicSchedule, type OrderedBackwardPlan, type OrderedWalk } from './ffa-backward-ordered.js';
import { sm90Available } from './ffa-forward-sm90.js';
import { FfaCudaUnsupportedError } from './unsupported.js';
import { InvalidArgumentError } from '../../errors.js';
import { kvMajorItemsOf, pickKvMajorItems, validateBlockOrder, type BackwardBlockOrder } from './ffa-backward-order.js';

/** Default: 8 warps, BN = 128 keys per block, BM = 64 q rows per inner step (4 warps / BN = 64 also verified; 8 was ~20% faster on an H200). */
export const FFA_BWD_WARPS = 8;
export const FFA_BWD_BLOCK_M = 64;
export const FFA_BWD_HEAD_DIMS: readonly number[] = [64, 128];

export function ffaBackwardSource(): string {
  return readKernelSource('ffa_bwd.cu');
}

export interface FfaBackwardPlan {
  /** Flat (slice, n0, qLo, qHi) quadruples, most q tiles first. */
  readonly work: Int32Array;
  readonly numWork: number;
  /** Total inner q-tile steps over the work list (for one q head): a cost measure. */
  readonly qTiles: number;
}

/**
 * Work list: for every slice with at least one non-empty row, its k tiles of `blockN` keys from
 * k_start, each with the q rows that see a key of the tile:
 *   causal bit (type & 1): row q sees keys < ke − (qe − q − 1), so q ≥ n0 + qe − ke;
 *   inv-causal bit (type & 2): row q sees keys ≥ ks + (q − qs), so q < n1 − ks + qs.
 */
export function planFfaBackward(slices: SliceList, tokensQ: number, tokensK: number, blockN: number, blockM = FFA_BWD_BLOCK_M): FfaBackwardPlan {
  const items: Array<[number, number, number, number, number]> = [];
  for (let b = 0; b < slices.maskTypes.length; b++) {
    const { type, qs, qe, ks, ke } = plannedSlice(slices, b, 'backward', tokensQ, tokensK);
    if (qe <= qs || ke <= ks) continue;
    // causal: the last row is the widest; inv-causal: the first; bi-causal: all rows alike
    const nonEmpty = rowKeyEnd(type, qe, ke, qe - 1) > rowKeyStart(type, qs, ks, qe - 1) || rowKeyEnd(type, qe, ke, qs) > rowKeyStart(type, qs, ks, qs);
    if (!nonEmpty) continue;
    for (let n0 = ks; n0 < ke; n0 += blockN) {
      const n1 = Math.min(n0 + blockN, ke);
      const qLo = (type & 1) !== 0 ? Math.max(qs, n0 + qe - ke) : qs;
      const qHi = (type & 2) !== 0 ? Math.min(qe, n1 - ks + qs) : qe;
      if (qHi <= qLo) continue;
      items.push([b, n0, qLo, qHi, Math.ceil((qHi - qLo) / blockM)]);
    }
  }
  items.sort((x, y) => y[4] - x[4] || x[0] - y[0] || x[1] - y[1]);
  return packPlan(items);
}

/** (slice, n0, qLo, qHi, q tiles) items, in their order, as a plan. */
function packPlan(items: ReadonlyArray<readonly [number, number, number, number, number]>): FfaBackwardPlan {
  const work = new Int32Array(items.length * 4);
  let qTiles = 0;
  items.forEach(([b, n0, lo, hi, n], i) => {
    work.set([b, n0, lo, hi], 4 * i);
    qTiles += n;
  });
  return { work, numWork: items.length, qTiles };
}

/**
 * Which items of the default (non-deterministic) launch's work list splitLongItems cuts, per slice
 * type: those with a q range longer than `longerThan` rows, cut at the multiples of `pieceRows`
 * (global q coordinates). Items of types not listed stay whole.
 */
export type QRangeCut = Readonly<Partial<Record<AttnMaskType, QRangeCutRule>>>;
export interface QRangeCutRule {
  readonly longerThan: number;
  readonly pieceRows: number;
}

/** Every item of every slice type cut at the multiples of `pieceRows` (checks and measurements). */
export function cutEveryItem(pieceRows: number): QRangeCut {
  return Object.fromEntries(Object.values(AttnMaskType).map((type) => [type, { longerThan: 0, pieceRows }]));
}

/**
 * Items of full slices longer than 16,384 q rows cut into 2,048-row pieces, and items of causal
 * slices longer than 1,024 rows into 1,024-row pieces.
 *
 * Full: a block walks every q tile of its item; on one long full slice that is thousands of steps,
 * over which the blocks of a wave drift apart until the L2 no longer holds what they share (H200,
 * full 64k, 64:8 heads, ncu: L2 hit rate 36% against 83% at 16k, DRAM 3.1 TB/s). On 2026-12-02
 * (bench/kernel/bwd-walk.ts; bench/results/kernel-bwd-qcut-2026-12-02.json) cutting full items
 * at 2,048 rows took full 32k from 412 to 469 TFLOP/s and 64k from 374 to 441, full 16k unchanged
 * within the drift. Starting each item's walk at a different q tile (so that they add into
 * different dq tiles) was slower on every mask (0.94-1.00x): the blocks running at once should
 * share rows.
 *
 * Causal: whole causal items cost the same cycles per step as full ones, but under the H200's
 * 700 W cap the SMs ran them at 1,575 MHz against 1,687 cut (bench/kernel/README.md, "Backward:
 * why causal reads below full"). Cut at 2,048 rows where longer than 4,096 (the rule of
 * 2026-12-03, bench/results/kernel-bwd-causal-cut-2026-12-03.json): causal 16k 529-531 TFLOP/s
 * against 491-493 whole, 64k 535-537 against 505-508. Cut at 1,024 where longer than 1,024
 * (2026-12-04, bench/results/kernel-bwd-cut1024-2026-12-04.json), the short causal items too:
 * the 4k causal grid (32 items x 8 kv heads, 256 blocks, two waves of very unequal items) gets
 * 80 items of at most 1,024 rows: causal 4k 465-514 against 398-416, varlen causal 8k 353
 * against 288; from 16k causal and varlen causal level within the drift (0.98-1.11x in two
 * processes of alternating order). Sliding-window causal heads (1,024 rows) and bi-causal bands
 * stay whole: cutting every item of the short-item masks cost them 1-10% on 2026-12-02.
 */
export const DEFAULT_Q_RANGE_CUT: QRangeCut = { full: { longerThan: 16384, pieceRows: 2048 }, causal: { longerThan: 1024, pieceRows: 1024 } };

/** Throws unless `cut` maps slice types to rules whose pieceRows is a positive multiple of 128 (every head dim's step rows) and longerThan rows >= 0. */
export function validateQRangeCut(cut: QRangeCut): void {
  if (typeof cut !== 'object' || cut === null) throw new InvalidArgumentError('qRangeCut', 'must map slice types to { longerThan, pieceRows }', `got ${JSON.stringify(cut)}`);
  const types: readonly string[] = Object.values(AttnMaskType);
  for (const [type, rule] of Object.entries(cut) as Array<[string, QRangeCutRule | undefined]>) {
    if (!types.includes(type)) throw new InvalidArgumentError('qRangeCut', `keys must be slice types (${types.join(', ')})`, `got ${JSON.stringify(type)}`);
    if (typeof rule !== 'object' || rule === null) throw new InvalidArgumentError(`qRangeCut.${type}`, 'must be { longerThan, pieceRows }', `got ${JSON.stringify(rule)}`);
    if (!(Number.isInteger(rule.pieceRows) && rule.pieceRows > 0 && rule.pieceRows % 128 === 0)) {
      throw new InvalidArgumentError(`qRangeCut.${type}.pieceRows`, 'must be a positive multiple of 128 q rows', `got ${rule.pieceRows}`);
    }
    if (!(typeof rule.longerThan === 'number' && rule.longerThan >= 0)) throw new InvalidArgumentError(`qRangeCut.${type}.longerThan`, 'must be a number of rows >= 0', `got ${JSON.stringify(rule.longerThan)}`);
  }
}

/**
 * The plan with the items `cut` selects split at the multiples of their type's pieceRows, for the
 * default (non-deterministic) launch; the deterministic schedules start from the uncut plan.
 * Pieces and uncut items in one list, most q tiles first (as planFfaBackward), then by q chunk (of
 * the smallest pieceRows), so that the blocks running at once work on the same rows. The same plan
 * object when nothing is cut.
 */
export function splitLongItems(plan: FfaBackwardPlan, slices: SliceList, cut: QRangeCut, stepRows: number): FfaBackwardPlan {
  validateQRangeCut(cut);
  const rules = Object.entries(cut) as Array<[string, QRangeCutRule]>;
  for (const [type, rule] of rules) {
    if (rule.pieceRows % stepRows !== 0) throw new InvalidArgumentError(`qRangeCut.${type}.pieceRows`, `must be a multiple of the ${stepRows} q rows of a step`, `got ${rule.pieceRows}`);
  }
  const chunk = Math.min(...rules.map(([, r]) => r.pieceRows));
  const pieces: Array<[number, number, number, number, number]> = [];
  for (let i = 0; i < plan.numWork; i++) {
    const [b, n0, qLo, qHi] = plan.work.subarray(4 * i, 4 * i + 4);
    const rule = cut[maskTypeFromInt(slices.maskTypes[b])];
    const P = rule !== undefined && qHi - qLo > rule.longerThan ? rule.pieceRows : 0;
    for (let a = qLo; a < qHi; ) {
      const next = P > 0 ? Math.min(qHi, (Math.floor(a / P) + 1) * P) : qHi;
      pieces.push([b, n0, a, next, Math.ceil((next - a) / stepRows)]);
      a = next;
    }
  }
  if (pieces.length === plan.numWork) return plan;
  pieces.sort((x, y) => y[4] - x[4] || Math.floor(x[2] / chunk) - Math.floor(y[2] / chunk) || x[0] - y[0] || x[1] - y[1]);
  return packPlan(pieces);
}

/**
 * The deterministic backward schedule: the plan's items whose dq rows or key rows overlap cannot
 * run in one launch. If the plan's own items are pairwise conflict-free they form one group;
 * otherwise every item's [qLo, qHi) is cut at multiples of `chunkRows` (global coordinates) and
 * the pieces, in plan order, are grouped first-fit on both axes (q rows, keys [n0, n1)).
 */
export function planDeterministicBackward(plan: FfaBackwardPlan, slices: SliceList, blockN: number, chunkRows = 4 * FFA_BWD_BLOCK_M): GroupedWork {
  const keyEnd = (b: number, n0: number): number => Math.min(n0 + blockN, slices.kRanges[2 * b + 1]);
  const group = (items: Int32Array): GroupedWork => {
    const n = items.length / 4;
    const { group: of, groups } = greedyDisjointGroups(n, 2, (i, axis) =>
      axis === 0 ? [items[4 * i + 2], items[4 * i + 3]] : [items[4 * i + 1], keyEnd(items[4 * i], items[4 * i + 1])],
    );
    const work = new Int32Array(items.length);
    const offsets = new Int32Array(2 * groups);
    const count = new Int32Array(groups);
    for (let i = 0; i < n; i++) count[of[i]]++;
    for (let g = 1; g < groups; g++) offsets[2 * g] = offsets[2 * g - 2] + count[g - 1];
    for (let g = 0; g < groups; g++) offsets[2 * g + 1] = count[g];
    const at = Int32Array.from({ length: groups }, (_, g) => offsets[2 * g]);
    for (let i = 0; i < n; i++) work.set(items.subarray(4 * i, 4 * i + 4), 4 * at[of[i]]++);
    return { work, groups: offsets };
  };
  const whole = group(plan.work.subarray(0, 4 * plan.numWork));
  if (whole.groups.length <= 2) return whole;
  const pieces: number[] = [];
  for (let i = 0; i < plan.numWork; i++) {
    const [b, n0, qLo, qHi] = plan.work.subarray(4 * i, 4 * i + 4);
    for (let a = qLo; a < qHi; ) {
      const next = Math.min(qHi, (Math.floor(a / chunkRows) + 1) * chunkRows);
      pieces.push(b, n0, a, next);
      a = next;
    }
  }
  return group(Int32Array.from(pieces));
}

/** The options around the main launch (all off by default). */
export interface FfaBackwardExtras {
  /** Which of the buffers' dq / dk / dv are caller fp32 accumulators (added into in place). */
  accumulate?: { dq?: boolean; dk?: boolean; dv?: boolean };
  /** float32 [count, Hq] sink logits; dsink (float32 [count, Hq]) is written. */
  sink?: { buffer: DeviceBuffer; count: number; dsink: DeviceBuffer };
  /** Bit-reproducible gradients (grouped launches, see the file comment). */
  deterministic?: boolean;
}

/** The forward's shape: dq/dk/dv come back in its input dtype. */
export type FfaBackwardShape = FfaForwardShape;

const { i32, ptr } = kernelArg;

/** Rows of one pre-pass block (256 threads): 8 warps of ffa_bwd.cu's kPreRows rows. */
export const FFA_BWD_PRE_ROWS_PER_BLOCK = 32;

/**
 * Which main kernel a CudaFfaBackward launches: 'sm90' (Hopper: TMA + wgmma, compute capability
 * 9.0; head dims FFA_BWD_SM90_HEAD_DIMS, 64 and 128), 'mma' (mma.sync), or 'auto' (sm90 where
 * available with the default 8 warps, whose 128-key tiles it shares). A head dim the Hopper
 * kernel lacks runs the mma kernel.
 */
export type FfaBackwardKernelKind = 'auto' | 'mma' | 'sm90';

/** The compiled backward module; one per device. */
export class CudaFfaBackward {
  readonly module: Module;
  /** The Hopper main kernel (head dims 64 and 128), or null. */
  readonly sm90: Sm90BackwardMain | null;
  readonly warps: number;
  readonly blockM = FFA_BWD_BLOCK_M;
  readonly blockN: number;
  /** Deterministic mode's schedule where the ordered one can run (default 'ordered'; see deterministicScheduleAt). */
  readonly deterministicSchedule: DeterministicSchedule;
  /** The ordered schedule's walk per item ('rule' unless asked; see the constructor option). */
  readonly orderedWalk: OrderedWalk;
  /** Which items of the default launch's work list are cut into pieces (splitLongItems); null: none. */
  readonly qRangeCut: QRangeCut | null;
  /** The Hopper kernel's block order in the default and ordered launches: 'auto' (per launch, pickKvMajorItems) or forced. */
  readonly blockOrder: BackwardBlockOrder | 'auto';

  constructor(
    readonly device: CudaDevice,
    options: {
      cacheDir?: string;
      warps?: number;
      kernel?: FfaBackwardKernelKind;
      deterministicSchedule?: DeterministicSchedule;
      /**
       * The ordered schedule's walk (planOrderedBackward): 'rule' (default; per group of
       * overlapping q ranges, the heads inner or outer by orderedWalkHeadsOuter), or 'inner' /
       * 'outer' for every item. For checks and measurements: either walk adds each dQ tile's
       * contributions in the same order, so dq is bit-identical across the three.
       */
      orderedWalk?: OrderedWalk;
      qRangeCut?: QRangeCut | null;
      /**
       * The Hopper kernel's block order in the default launch and in each of the ordered
       * schedule's (ffa-backward-order.ts): 'auto' (default) picks a split per launch;
       * 'kv-major', 'item-major' or { kvMajorShare } force one (checks and A/B measurements).
       * Default launch: results the same up to the order of the fp32 dQ additions; ordered:
       * bit-identical (each dQ tile's adds keep their ranks' order).
       */
      blockOrder?: BackwardBlockOrder | 'auto';
      /**
       * A diagnostic (bench/kernel/bwd-trace.ts), off by default: the Hopper kernel is compiled
       * as its step-trace build (ffa-backward-trace.ts), which records clocks at the phase
       * boundaries of a sample of blocks' steps at head dim 128 (in deterministic mode the ordered
       * entries record nothing and the grouped schedule's launches write over one another); each
       * launch zeroes the trace first and downloadTrace() reads it. Its launches are slower than the
       * kernel's. Needs the Hopper kernel.
       */
      traceSteps?: boolean;
    } = {},
  ) {
    this.deterministicSchedule = options.deterministicSchedule ?? 'ordered';
    this.orderedWalk = options.orderedWalk ?? 'rule';
    if (!['rule', 'inner', 'outer'].includes(this.orderedWalk)) throw new InvalidArgumentError('orderedWalk', "must be 'rule', 'inner' or 'outer'", `got ${String(this.orderedWalk)}`);
    this.qRangeCut = options.qRangeCut === undefined ? DEFAULT_Q_RANGE_CUT : options.qRangeCut;
    if (this.qRangeCut !== null) validateQRangeCut(this.qRangeCut);
    this.blockOrder = options.blockOrder ?? 'auto';
    if (this.blockOrder !== 'auto') {
      try {
        validateBlockOrder(this.blockOrder);
      } catch (e) {
        throw new InvalidArgumentError('blockOrder', (e as Error).message);
      }
    }
    this.warps = options.warps ?? FFA_BWD_WARPS;
    if (![4, 8].includes(this.warps)) throw new FfaCudaUnsupportedError(`backward warps must be 4 or 8, got ${this.warps}`);
    this.blockN = 16 * this.warps;
    const kind = options.kernel ?? 'auto';
    const useSm90 = kind === 'sm90' || (kind === 'auto' && this.warps === FFA_BWD_WARPS && sm90Available(device));
    if (useSm90 && this.blockN !== 128) throw new FfaCudaUnsupportedError('the sm90 backward works on 128-key tiles: use 8 warps');
    if (options.traceSteps === true && !useSm90) throw new FfaCudaUnsupportedError('traceSteps traces the Hopper backward, which this device or these options do not use');
    const opts: { name: string; cacheDir?: string; options: string[] } = { name: 'ffa_bwd.cu', options: [`-DFFA_BWD_NWARPS=${this.warps}`] };
    if (options.cacheDir !== undefined) opts.cacheDir = options.cacheDir;
    // always loaded: the pre-pass, dsink and conversions live here (and the main kernels of any head dim the Hopper one lacks)
    this.module = device.compile(ffaBackwardSource(), opts);
    this.sm90 = useSm90 ? new Sm90BackwardMain(device, options.cacheDir, options.traceSteps === true) : null;
  }

  /** The step trace of the last traced launch (option traceSteps; decode with ffa-backward-trace.ts). */
  downloadTrace(): Uint32Array {
    if (this.sm90 === null || !this.sm90.traced) throw new FfaCudaUnsupportedError('downloadTrace needs the option traceSteps');
    return this.sm90.downloadTrace();
  }

  /** Whether launches of head dim `dim` run the Hopper kernel. */
  usesSm90(dim: number): boolean {
    return this.sm90 !== null && this.sm90.supports(dim);
  }

  /**
   * The deterministic schedule of launches of head dim `dim`: deterministicSchedule where the
   * ordered entry points exist (the Hopper kernel at head dim ORDERED_HEAD_DIM, 128), else
   * 'grouped' (the Hopper kernel at head dim 64, and the mma.sync kernel).
   */
  deterministicScheduleAt(dim: number): DeterministicSchedule {
    return this.usesSm90(dim) && dim === ORDERED_HEAD_DIM ? this.deterministicSchedule : 'grouped';
  }

  /** q rows per inner step of the main kernel at head dim `dim` (the Hopper kernel's own at D 64: 128). */
  stepRows(dim: number): number {
    return this.usesSm90(dim) ? sm90BackwardBlockM(dim) : this.blockM;
  }

  static typeTag(dtype: DType): 'bf16' | 'fp16' {
    if (dtype === 'bfloat16') return 'bf16';
    if (dtype === 'float16') return 'fp16';
    throw new FfaCudaUnsupportedError(`input dtype must be bfloat16 or float16, got ${dtype}`);
  }

  /** The main kernel of head dim `dim` (the Hopper kernel's default entries take kvMajorItems last; the mma.sync kernel runs item-major). */
  mainKernel(dtype: DType, dim: number, softcap: boolean): { kernel: Kernel; smemBytes: number } {
    const t = CudaFfaBackward.typeTag(dtype);
    if (this.sm90 !== null && this.sm90.supports(dim)) return this.sm90.mainKernel(t, dim, softcap);
    if (!FFA_BWD_HEAD_DIMS.includes(dim)) throw new FfaCudaUnsupportedError(`head dim must be one of ${FFA_BWD_HEAD_DIMS.join(', ')}, got ${dim}`);
    const name = `ffa_bwd_${t}_d${dim}${softcap ? '_softcap' : ''}`;
    const kernel = this.module.kernel(name);
    const bm = this.blockM;
    const bn = this.blockN;
    const smemBytes = (2 * bn * dim + 4 * bm * dim + bn * bm) * 2 + 4 * bm * 4;
    kernel.setMaxDynamicSharedMemory(smemBytes);
    return { kernel, smemBytes };
  }

  prepare(shape: FfaBackwardShape, slices: SliceList): FfaBackwardProblem {
    return new FfaBackwardProblem(this, shape, slices);
  }
}

/** Device buffers of one backward launch (input dtype unless noted). */
export interface FfaBackwardBuffers {
  q: DeviceBuffer;
  k: DeviceBuffer;
  v: DeviceBuffer;
  out: DeviceBuffer;
  dout: DeviceBuffer;
  /** fp32 [Tq, Hq] */
  lse: DeviceBuffer;
  /** Input dtype, or fp32 accumulators where FfaBackwardExtras.accumulate says so. */
  dq: DeviceBuffer;
  dk: DeviceBuffer;
  dv: DeviceBuffer;
}

/** The ordered schedule's plan and device buffers (locks: int32 [Hq, numLocks]), and the kvMajorItems of each of its launches (orderedLaunches' two lists). */
export interface OrderedWork {
  readonly plan: OrderedBackwardPlan;
  readonly work: DeviceBuffer;
  readonly ranks: DeviceBuffer;
  readonly locks: DeviceBuffer;
  readonly kvMajorItems: { readonly fromZero: Int32Array; readonly groups: Int32Array };
}

/** A slice list planned and uploaded for one shape, with the fp32 scratch; launch it as often as needed. */
export class FfaBackwardProblem {
  readonly plan: FfaBackwardPlan;
  private readonly qRanges: DeviceBuffer;
  private readonly kRanges: DeviceBuffer;
  private readonly types: DeviceBuffer;
  private readonly work: DeviceBuffer;
  /** Items of the default launch's work list (this.work). */
  readonly defaultItems: number;
  /** The Hopper kernel's default launch: its first kvMajorItems items run kv-major, the rest item-major (the option, or pickKvMajorItems); null on the mma.sync kernel. */
  readonly kvMajorItems: number | null;
  /** fp32 scratch: lseLog2 and Δ [Hq, Tq], dq [Tq, Hq, D], dk/dv [Tk, Hkv, D] */
  readonly lseLog2: DeviceBuffer;
  readonly delta: DeviceBuffer;
  readonly dqAcc: DeviceBuffer;
  readonly dkAcc: DeviceBuffer;
  readonly dvAcc: DeviceBuffer;
  /** The deterministic schedule, uploaded on first use. */
  private detWork: { plan: GroupedWork; buffer: DeviceBuffer } | null = null;
  /** The ordered deterministic schedule (Hopper kernel), uploaded on first use. */
  private ordWork: OrderedWork | null = null;

  constructor(
    readonly owner: CudaFfaBackward,
    readonly shape: FfaBackwardShape,
    readonly slices: SliceList,
  ) {
    const dev = owner.device;
    const steps = owner.stepRows(shape.dim);
    this.plan = planFfaBackward(slices, shape.tokensQ, shape.tokensK, owner.blockN, steps);
    owner.mainKernel(shape.dtype, shape.dim, false); // validates dtype / dim early
    const nonEmpty = (a: Int32Array): Int32Array => (a.length > 0 ? a : new Int32Array(4));
    this.qRanges = dev.upload(nonEmpty(slices.qRanges));
    this.kRanges = dev.upload(nonEmpty(slices.kRanges));
    this.types = dev.upload(nonEmpty(Int32Array.from(slices.maskTypes)));
    // the default launch's list; the deterministic schedules start from the uncut plan
    const cut = owner.qRangeCut !== null ? splitLongItems(this.plan, slices, owner.qRangeCut, steps) : this.plan;
    this.defaultItems = cut.numWork;
    this.work = dev.upload(nonEmpty(cut.work));
    this.kvMajorItems = owner.usesSm90(shape.dim) ? this.launchKvMajorItems(cut) : null;
    const rows = shape.tokensQ * shape.headsQ;
    this.lseLog2 = dev.alloc(Math.max(4, rows * 4));
    this.delta = dev.alloc(Math.max(4, rows * 4));
    this.dqAcc = dev.alloc(Math.max(4, rows * shape.dim * 4));
    this.dkAcc = dev.alloc(Math.max(4, shape.tokensK * shape.headsKv * shape.dim * 4));
    this.dvAcc = dev.alloc(Math.max(4, shape.tokensK * shape.headsKv * shape.dim * 4));
  }

  /** NaN bits in all fp32 scratch (tests: nothing may be read before it is written / zeroed). */
  poisonScratch(): void {
    for (const b of [this.lseLog2, this.delta, this.dqAcc, this.dkAcc, this.dvAcc]) b.fill(0xff);
  }

  /** The deterministic schedule (grouped work list), uploaded on first use. */
  deterministicWork(): { plan: GroupedWork; buffer: DeviceBuffer } {
    if (this.detWork === null) {
      const plan = planDeterministicBackward(this.plan, this.slices, this.owner.blockN);
      this.detWork = { plan, buffer: this.owner.device.upload(plan.work.length > 0 ? plan.work : new Int32Array(4)) };
    }
    return this.detWork;
  }

  /** The Hopper kernel's kvMajorItems for a launch of these items: the owner's blockOrder, or per launch by pickKvMajorItems. */
  private launchKvMajorItems(items: Pick<FfaBackwardPlan, 'work' | 'numWork'>): number {
    const { owner, shape } = this;
    return owner.blockOrder !== 'auto'
      ? kvMajorItemsOf(owner.blockOrder, items.numWork)
      : pickKvMajorItems(items, shape.headsQ, shape.headsKv, owner.stepRows(shape.dim), owner.device.smCount);
  }

  /** The ordered deterministic schedule (planOrderedBackward), its device buffers and each launch's block order, made on first use. */
  orderedWork(): OrderedWork {
    if (this.ordWork === null) {
      const dev = this.owner.device;
      const steps = this.owner.stepRows(this.shape.dim);
      const plan = planOrderedBackward(this.plan, this.slices, this.owner.blockN, steps, this.owner.orderedWalk);
      const nonEmpty = (a: Int32Array): Int32Array => (a.length > 0 ? a : new Int32Array(ORDERED_RECORD));
      const split = (launches: Int32Array): Int32Array =>
        Int32Array.from({ length: launches.length / 2 }, (_, i) => this.launchKvMajorItems(orderedLaunchItems(plan, launches[2 * i], launches[2 * i + 1], steps)));
      const groupLaunches = orderedLaunches(plan, false);
      const zeroLaunches = orderedLaunches(plan, true);
      const groups = split(groupLaunches);
      // the same launches either way (e.g. one group of items: full, causal and varlen masks): one rule run serves both
      const sameLaunches = zeroLaunches.length === groupLaunches.length && zeroLaunches.every((x, i) => x === groupLaunches[i]);
      this.ordWork = {
        plan,
        work: dev.upload(nonEmpty(plan.work)),
        ranks: dev.upload(nonEmpty(plan.ranks)),
        locks: dev.alloc(Math.max(4, 4 * plan.numLocks * this.shape.headsQ)),
        kvMajorItems: { fromZero: sameLaunches ? groups : split(zeroLaunches), groups },
      };
    }
    return this.ordWork;
  }

  /** Enqueues pre-pass, zeroing, main kernel, dsink and the conversions on `stream`. */
  launch(b: FfaBackwardBuffers, softmaxScale: number, softcap = 0, stream?: Stream, extras: FfaBackwardExtras = {}): void {
    this.launchMain(b, softmaxScale, softcap, stream, extras);
    this.launchConversions(b, stream, extras);
  }

  /** The fp32 dq / dk / dv (those not named by extras.accumulate) converted into b's input-dtype buffers: launch's last part. */
  launchConversions(b: FfaBackwardBuffers, stream?: Stream, extras: FfaBackwardExtras = {}): void {
    const { tokensQ, tokensK, headsQ, headsKv, dim } = this.shape;
    const acc = extras.accumulate ?? {};
    const t = CudaFfaBackward.typeTag(this.shape.dtype);
    const mod = this.owner.module;
    const cfg = (grid: number, block: number) => (stream === undefined ? { grid, block } : { grid, block, stream });
    const conv = (src: DeviceBuffer, dst: DeviceBuffer, n: number): void => {
      if (n === 0) return;
      // four elements per thread and step (ffa_bwd.cu convert)
      mod.kernel(`ffa_bwd_convert_${t}`).launch(cfg(Math.min(8192, Math.ceil(n / 1024)), 256), [ptr(src), ptr(dst), { type: 'i64', value: n }]);
    };
    if (acc.dq !== true) conv(this.dqAcc, b.dq, tokensQ * headsQ * dim);
    if (acc.dk !== true) conv(this.dkAcc, b.dk, tokensK * headsKv * dim);
    if (acc.dv !== true) conv(this.dvAcc, b.dv, tokensK * headsKv * dim);
  }

  /**
   * Pre-pass, zeroing, the main kernel and dsink only: the fp32 results stay in dqAcc / dkAcc /
   * dvAcc (or in the caller's accumulators named by extras.accumulate).
   */
  launchMain(b: FfaBackwardBuffers, softmaxScale: number, softcap = 0, stream?: Stream, extras: FfaBackwardExtras = {}): void {
    const { tokensQ, headsQ, headsKv, dim } = this.shape;
    const t = CudaFfaBackward.typeTag(this.shape.dtype);
    const mod = this.owner.module;
    const rows = tokensQ * headsQ;
    const cfg = (grid: number, block: number, sharedMemBytes = 0) =>
      stream === undefined ? { grid, block, sharedMemBytes } : { grid, block, sharedMemBytes, stream };
    const acc = extras.accumulate ?? {};
    const dqF = acc.dq === true ? b.dq : this.dqAcc;
    const dkF = acc.dk === true ? b.dk : this.dkAcc;
    const dvF = acc.dv === true ? b.dv : this.dvAcc;
    for (const [buf, given] of [[this.dkAcc, acc.dk], [this.dvAcc, acc.dv]] as const) if (given !== true) buf.fill(0, stream);
    if (rows > 0) {
      mod.kernel(`ffa_bwd_pre_${t}_d${dim}`).launch(cfg(Math.ceil(rows / FFA_BWD_PRE_ROWS_PER_BLOCK), 256), [
        ptr(b.out),
        ptr(b.dout),
        ptr(b.lse),
        ptr(this.lseLog2),
        ptr(this.delta),
        ptr(acc.dq === true ? null : this.dqAcc), // zeroed as the pre-pass passes each row
        i32(tokensQ),
        i32(headsQ),
      ]);
    }
    if (extras.sink !== undefined && headsQ > 0) {
      mod.kernel('ffa_bwd_dsink').launch(cfg(headsQ, 256), [
        ptr(extras.sink.buffer),
        i32(extras.sink.count),
        ptr(b.lse),
        ptr(this.delta),
        ptr(extras.sink.dsink),
        i32(tokensQ),
        i32(headsQ),
      ]);
    }
    if (this.plan.numWork > 0 && headsKv > 0) {
      const useSoftcap = softcap > 0;
      const ordered = extras.deterministic === true && this.owner.deterministicScheduleAt(dim) === 'ordered';
      const { kernel, smemBytes } = ordered ? this.owner.sm90!.mainKernel(t, dim, useSoftcap, 'ordered') : this.owner.mainKernel(this.shape.dtype, dim, useSoftcap);
      const unit = useSoftcap ? softcap : softmaxScale;
      const sm90 = this.owner.usesSm90(dim) ? this.owner.sm90 : null;
      const inputs = sm90 !== null ? sm90.inputArgs(b, this.shape.dtype, tokensQ, this.shape.tokensK, headsQ, headsKv, dim) : [ptr(b.q), ptr(b.k), ptr(b.v), ptr(b.dout)];
      // the Hopper kernel takes the fp32 dq as a TMA map (tensor reduce-adds)
      const dqArg = sm90 !== null ? sm90.dqArg(dqF, tokensQ, headsQ, dim) : ptr(dqF);
      const threads = sm90 !== null ? sm90.threads : 32 * this.owner.warps;
      const mainLaunch = (work: DeviceBuffer | CuDevicePtr, items: number, more: KernelArg[] = []): void =>
        kernel.launch(cfg(items * headsKv, threads, smemBytes), [
          ...inputs,
          ptr(this.lseLog2),
          ptr(this.delta),
          dqArg,
          ptr(dkF),
          ptr(dvF),
          ptr(this.qRanges),
          ptr(this.kRanges),
          ptr(this.types),
          ptr(work),
          i32(headsQ),
          i32(headsKv),
          i32(tokensQ),
          { type: 'f32', value: unit * Math.LOG2E },
          { type: 'f32', value: softmaxScale },
          { type: 'f32', value: useSoftcap ? softmaxScale / softcap : 0 },
          ...more,
        ]);
      // the trace build's record of this launch alone (the ordered entries record nothing)
      if (sm90 !== null && sm90.traced && !ordered) sm90.clearTrace(stream);
      if (ordered) {
        const ord = this.orderedWork();
        ord.locks.fill(0, stream);
        // onto zeroed dk / dv, runs of key-disjoint groups per launch (orderedLaunches: no key row gets two adds onto an earlier sum)
        const fromZero = acc.dk !== true && acc.dv !== true;
        const g = orderedLaunches(ord.plan, fromZero);
        const split = fromZero ? ord.kvMajorItems.fromZero : ord.kvMajorItems.groups;
        for (let i = 0; i < g.length; i += 2) {
          mainLaunch(ord.work.ptr + BigInt(g[i] * 4 * ORDERED_RECORD), g[i + 1], [ptr(ord.ranks), ptr(ord.locks), i32(ord.plan.numLocks), i32(split[i / 2])]);
        }
      } else if (extras.deterministic === true) {
        const det = this.deterministicWork();
        const g = det.plan.groups;
        // the Hopper kernel's groups all kv-major (one group's items are of one length class anyway)
        for (let i = 0; i < g.length; i += 2) mainLaunch(det.buffer.ptr + BigInt(g[i] * 16), g[i + 1], sm90 !== null ? [i32(g[i + 1])] : []);
      } else {
        mainLaunch(this.work, this.defaultItems, sm90 !== null ? [i32(this.kvMajorItems!)] : []);
      }
    }
  }

  /** Frees the problem's device memory; with `after`, once the work queued there is done (launches may still be in flight). */
  free(after?: Stream): void {
    const ord = this.ordWork;
    for (const b of [this.qRanges, this.kRanges, this.types, this.work, this.lseLog2, this.delta, this.dqAcc, this.dkAcc, this.dvAcc, this.detWork?.buffer, ord?.work, ord?.ranks, ord?.locks]) {
      if (after === undefined) b?.free();
      else b?.freeAfter(after);
    }
  }
}
