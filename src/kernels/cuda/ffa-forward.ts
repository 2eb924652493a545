/**
 * The launcher of the CUDA flex-flash-attention forward (compiled at run time by NVRTC). Two main
 * kernels: the Hopper one (ffa_fwd_sm90.cu via ffa-forward-sm90.ts: TMA + wgmma, the default on
 * compute capability 9.0) and the mma.sync one (ffa_fwd.cu: any sm_80+ GPU, configurable tile).
 * This file is the host half of their tile scheduler: it turns a SliceList into a work list of
 * (slice, q-tile start) pairs, decides whether the output rows can be stored directly or must be
 * LSE-merged under locks, uploads and launches.
 * The options that sit around the main launch are kernel-agnostic side pieces, so any forward
 * main kernel reuses them (`enqueueForwardPost`, `enqueueFillNegInf`, `planDeterministicForward`):
 *   sink, accumulation into (out, lse) - ffa_fwd_post_* after the main launch, on the final
 *            out/lse rows (accumulation: the main launch writes a partial (out, lse) into scratch
 *            first, then the post-pass LSE-merges it into the caller's buffers, then the sink);
 *   max_logits - the one hook inside the main kernel: its last parameter `float* maxLogits`
 *            (nullptr = off); a fresh buffer is set to -inf by ffa_fwd_lse_init first;
 *   deterministic - slices are grouped so that q ranges inside a group are pairwise disjoint
 *            (greedy, slice order) and the main kernel is launched once per group, in group
 *            order: inside one launch every row is merged at most once, so the merge order of
 *            each row is fixed. Costs one launch per group (one group when q ranges are disjoint).
 *
 * Epilogue choice:
 *   direct - the q ranges of the slices that produce work are pairwise disjoint, so each output
 *            row is written by exactly one tile (out in the input type, lse fp32); rows that no
 *            tile covers are zero-filled (lse = -inf) by a small side kernel.
 *   merge  - q ranges overlap: tiles LSE-merge into an fp32 out buffer under a spin lock per
 *            (aligned block of `lockRows` rows, head: 128 for mma, 64 for sm90); lse starts at -inf; a finalize kernel casts to the
 *            output dtype and zero-fills rows whose lse stayed -inf. Output dtype float32 always
 *            takes this path.
 */
import { kernelArg, type CudaDevice, type DeviceBuffer, type Kernel, type Module, type Stream } from '../../device/device.js';
import type { CuDevicePtr } from '../../device/cuda-driver.js';
import { bytesPerElement, type DType } from '../../dtype.js';
import type { SliceList } from '../../mask/slice-list.js';
import { rowKeyEnd, rowKeyStart } from '../../mask/geometry.js';
import { readKernelSource } from './source.js';
import { FfaCudaUnsupportedError } from './unsupported.js';
import { Sm90ForwardMain, sm90Available, type Sm90ForwardBuild, type Sm90ForwardOptions } from './ffa-forward-sm90.js';

/**
 * Default tile shape (ffa_fwd.cu's FFA_NWARPS = 8, FFA_BN = 64): 8 warps of 16 q rows each, so
 * BM = 128 q rows per block and BN = 64 keys per k tile. Other shapes compile with -D options.
 */
export const FFA_FWD_WARPS = 8;
export const FFA_FWD_BLOCK_M = 16 * FFA_FWD_WARPS;
export const FFA_FWD_BLOCK_N = 64;

/** Compile-time tile shape: `warps` warps of 16 q rows, `blockN` keys per k tile (multiple of 16). */
export interface FfaForwardTileConfig {
  warps: number;
  blockN: number;
}
export const FFA_FWD_HEAD_DIMS: readonly number[] = [64, 128];

export { FfaCudaUnsupportedError };

/**
 * The kernel source. Compiled output does not copy .cu files, so from dist/src/kernels/cuda/ the
 * file is read from the package's src/kernels/cuda/ (four levels up), from src/ it is next door.
 */
export function ffaForwardSource(): string {
  return readKernelSource('ffa_fwd.cu');
}

// ---------------------------------------------------------------------------------------------
// Tile scheduling (host side)

export interface FfaForwardPlan {
  /** Flat (slice index, q tile start) pairs in global q coordinates, most k tiles first. */
  readonly work: Int32Array;
  readonly numWork: number;
  /** Total k tiles over the work list (for one head): a cost measure. */
  readonly kTiles: number;
  /** True when the q ranges of slices with work overlap: the merge epilogue is needed. */
  readonly overlappingQ: boolean;
  /** Flat [start, end) q-row ranges that no work tile covers (zero-filled in direct mode). */
  readonly uncoveredRows: Int32Array;
}

/** One slice of a mask as the work planners read it: mask type code and [qs, qe) x [ks, ke). */
export interface PlannedSlice {
  type: number;
  qs: number;
  qe: number;
  ks: number;
  ke: number;
}

/**
 * Slice b unpacked for a work planner, after checking that its q range lies in [0, tokensQ) and,
 * when tokensK is given, its k range in [0, tokensK): a RangeError naming `pass` otherwise.
 */
export function plannedSlice(slices: SliceList, b: number, pass: 'forward' | 'backward', tokensQ: number, tokensK?: number): PlannedSlice {
  const type = slices.maskTypes[b];
  const qs = slices.qRanges[2 * b];
  const qe = slices.qRanges[2 * b + 1];
  const ks = slices.kRanges[2 * b];
  const ke = slices.kRanges[2 * b + 1];
  if (qe > tokensQ || qs < 0) throw new RangeError(`cuda ffa ${pass}: qRanges[${b}] = [${qs}, ${qe}) exceeds the ${tokensQ} query tokens`);
  if (tokensK !== undefined && (ke > tokensK || ks < 0)) throw new RangeError(`cuda ffa ${pass}: kRanges[${b}] = [${ks}, ${ke}) exceeds the ${tokensK} key tokens`);
  return { type, qs, qe, ks, ke };
}

/**
 * First-fit grouping of items with one interval per axis: item i goes to the lowest-numbered
 * group where, on every axis, its interval [lo, hi) overlaps no member's; items are taken in
 * index order, so the result is a pure function of the input. Empty intervals conflict with
 * nothing. Returns the group of each item and the number of groups.
 * `interval(i, axis)` returns [lo, hi).
 */
export function greedyDisjointGroups(count: number, axes: number, interval: (item: number, axis: number) => readonly [number, number]): { group: Int32Array; groups: number } {
  // per group and axis: the members' intervals, sorted and pairwise disjoint
  const starts: number[][][] = [];
  const ends: number[][][] = [];
  const group = new Int32Array(count);
  // index of the first interval whose end is > lo (the only one that can overlap [lo, hi))
  const firstEndAbove = (e: number[], lo: number): number => {
    let a = 0;
    let b = e.length;
    while (a < b) {
      const m = (a + b) >> 1;
      if (e[m] > lo) b = m;
      else a = m + 1;
    }
    return a;
  };
  for (let i = 0; i < count; i++) {
    const iv = Array.from({ length: axes }, (_, a) => interval(i, a));
    let g = 0;
    for (; g < starts.length; g++) {
      let free = true;
      for (let a = 0; a < axes && free; a++) {
        const [lo, hi] = iv[a];
        if (hi <= lo) continue;
        const j = firstEndAbove(ends[g][a], lo);
        if (j < starts[g][a].length && starts[g][a][j] < hi) free = false;
      }
      if (free) break;
    }
    if (g === starts.length) {
      starts.push(Array.from({ length: axes }, () => []));
      ends.push(Array.from({ length: axes }, () => []));
    }
    for (let a = 0; a < axes; a++) {
      const [lo, hi] = iv[a];
      if (hi <= lo) continue;
      const j = firstEndAbove(ends[g][a], lo);
      starts[g][a].splice(j, 0, lo);
      ends[g][a].splice(j, 0, hi);
    }
    group[i] = g;
  }
  return { group, groups: starts.length };
}

/** A work list reordered into groups that are launched one after another. */
export interface GroupedWork {
  /** The items, group by group (same record layout as the plan's work list). */
  readonly work: Int32Array;
  /** Flat [first item, item count] per group, in launch order. */
  readonly groups: Int32Array;
}

/**
 * The deterministic forward schedule: slices with work are grouped so that q ranges in one group
 * are pairwise disjoint (greedy in slice order); each group's work items keep the plan's order.
 */
export function planDeterministicForward(plan: FfaForwardPlan, slices: SliceList): GroupedWork {
  const n = slices.maskTypes.length;
  const hasWork = new Uint8Array(n);
  for (let i = 0; i < plan.numWork; i++) hasWork[plan.work[2 * i]] = 1;
  const { group, groups } = greedyDisjointGroups(n, 1, (b) => (hasWork[b] ? [slices.qRanges[2 * b], slices.qRanges[2 * b + 1]] : [0, 0]));
  const work = new Int32Array(plan.work.length);
  const offsets = new Int32Array(2 * groups);
  let at = 0;
  for (let g = 0; g < groups; g++) {
    offsets[2 * g] = at;
    for (let i = 0; i < plan.numWork; i++) {
      if (group[plan.work[2 * i]] !== g) continue;
      work[2 * at] = plan.work[2 * i];
      work[2 * at + 1] = plan.work[2 * i + 1];
      at++;
    }
    offsets[2 * g + 1] = at - offsets[2 * g];
  }
  // groups of slices without work hold no items: drop them
  const kept: number[] = [];
  for (let g = 0; g < groups; g++) if (offsets[2 * g + 1] > 0) kept.push(offsets[2 * g], offsets[2 * g + 1]);
  return { work, groups: Int32Array.from(kept) };
}

/**
 * Builds the work list: every slice's q tiles (of `blockM` rows from the slice's q start) whose
 * rows see at least one key; longest (most k tiles) first, so the long causal tiles do not trail.
 */
export function planFfaForward(slices: SliceList, tokensQ: number, blockM = FFA_FWD_BLOCK_M, blockN = FFA_FWD_BLOCK_N): FfaForwardPlan {
  const items: Array<[number, number, number]> = []; // slice, m0, k tiles
  const spans: Array<[number, number]> = []; // covered row spans
  const sliceSpans: Array<[number, number]> = [];
  for (let b = 0; b < slices.maskTypes.length; b++) {
    const { type, qs, qe, ks, ke } = plannedSlice(slices, b, 'forward', tokensQ);
    let any = false;
    for (let m0 = qs; m0 < qe; m0 += blockM) {
      const m1 = Math.min(m0 + blockM, qe);
      const kLo = rowKeyStart(type, qs, ks, m0);
      const kHi = rowKeyEnd(type, qe, ke, m1 - 1);
      if (kHi <= kLo) continue;
      items.push([b, m0, Math.ceil((kHi - kLo) / blockN)]);
      spans.push([m0, m1]);
      any = true;
    }
    if (any) sliceSpans.push([qs, qe]);
  }
  items.sort((x, y) => y[2] - x[2] || x[0] - y[0] || x[1] - y[1]);
  const work = new Int32Array(items.length * 2);
  let kTiles = 0;
  items.forEach(([b, m0, n], i) => {
    work[2 * i] = b;
    work[2 * i + 1] = m0;
    kTiles += n;
  });

  sliceSpans.sort((x, y) => x[0] - y[0]);
  let overlappingQ = false;
  let reach = -1;
  for (const [s, e] of sliceSpans) {
    if (s < reach) overlappingQ = true;
    reach = Math.max(reach, e);
  }

  spans.sort((x, y) => x[0] - y[0]);
  const gaps: number[] = [];
  let cursor = 0;
  for (const [s, e] of spans) {
    if (s > cursor) gaps.push(cursor, s);
    cursor = Math.max(cursor, e);
  }
  if (cursor < tokensQ) gaps.push(cursor, tokensQ);
  return { work, numWork: items.length, kTiles, overlappingQ, uncoveredRows: Int32Array.from(gaps) };
}

// ---------------------------------------------------------------------------------------------
// Launching

export interface FfaForwardShape {
  tokensQ: number;
  tokensK: number;
  headsQ: number;
  headsKv: number;
  dim: number;
  /** Input dtype: bfloat16 or float16. */
  dtype: DType;
}

export interface FfaForwardLaunchOptions {
  /** Use the merge epilogue even when q ranges are disjoint (testing). */
  forceMerge?: boolean;
  /** Output dtype: the input dtype (default) or float32. */
  outDtype?: DType;
}

/** The options around the main launch (all off by default). */
export interface FfaForwardExtras {
  /**
   * The `out`/`lse` handed to launch() hold a previous result (out in `outDtype`: bfloat16,
   * float16 or float32; lse fp32) that this call's result is LSE-merged into, in place.
   */
  accumulate?: { outDtype: DType };
  /** float32 [count, Hq] sink logits, applied after everything else. */
  sink?: { buffer: DeviceBuffer; count: number };
  /** float32 [Hq], max-merged in place; `fresh`: set it to -inf first. */
  maxLogits?: { buffer: DeviceBuffer; fresh: boolean };
  /** Bit-reproducible merge order (grouped launches, see the file comment). */
  deterministic?: boolean;
}

const TYPE_TAG: Partial<Record<DType, string>> = { bfloat16: 'bf16', float16: 'fp16', float32: 'f32' };

export function typeTag(dtype: DType, what: string): string {
  const t = TYPE_TAG[dtype];
  if (t === undefined) throw new FfaCudaUnsupportedError(`${what} dtype must be bfloat16, float16 or float32, got ${dtype}`);
  return t;
}

type LaunchCfg = (grid: number | [number, number], block: number, sharedMemBytes?: number) => { grid: number | [number, number]; block: number; sharedMemBytes: number; stream?: Stream };

function launchCfg(stream: Stream | undefined): LaunchCfg {
  return (grid, block, sharedMemBytes = 0) => (stream === undefined ? { grid, block, sharedMemBytes } : { grid, block, sharedMemBytes, stream });
}

/** Sets `n` floats of `buf` to -inf (ffa_fwd_lse_init of ffa_fwd.cu's module). */
export function enqueueFillNegInf(module: Module, buf: DeviceBuffer, n: number, stream?: Stream): void {
  if (n <= 0) return;
  module.kernel('ffa_fwd_lse_init').launch(launchCfg(stream)(Math.min(1024, Math.ceil(n / 256)), 256), [ptr(buf), { type: 'i64', value: n }]);
}

/**
 * The post-pass of ffa_fwd.cu on final rows (any main kernel's output): with `part`, LSE-merge
 * the partial (out in part.outDtype, lse) into (out, lse) in place; then, with `sink`, apply it.
 */
export function enqueueForwardPost(
  module: Module,
  a: {
    out: DeviceBuffer;
    outDtype: DType;
    lse: DeviceBuffer;
    rows: number;
    dim: number;
    headsQ: number;
    part?: { out: DeviceBuffer; outDtype: DType; lse: DeviceBuffer };
    sink?: { buffer: DeviceBuffer; count: number };
  },
  stream?: Stream,
): void {
  if (a.rows === 0 || (a.part === undefined && a.sink === undefined)) return;
  const outTag = typeTag(a.outDtype, 'out');
  const partTag = a.part === undefined ? outTag : typeTag(a.part.outDtype, 'partial out');
  module.kernel(`ffa_fwd_post_${partTag}_${outTag}`).launch(launchCfg(stream)(Math.min(8192, Math.ceil(a.rows / 8)), 256), [
    ptr(a.part?.out ?? null),
    ptr(a.part?.lse ?? null),
    ptr(a.out),
    ptr(a.lse),
    ptr(a.sink?.buffer ?? null),
    i32(a.sink?.count ?? 0),
    { type: 'i64', value: a.rows },
    i32(a.dim),
    i32(a.headsQ),
  ]);
}

/** The compiled module; one per device. */
/**
 * Which main kernel a CudaFfaForward launches: 'sm90' (Hopper: TMA + wgmma, compute capability
 * 9.0 only), 'mma' (mma.sync, any sm_80+ GPU, tile shape configurable), or 'auto' (sm90 where
 * available unless a tile shape is asked for).
 */
export type FfaForwardKernelKind = 'auto' | 'mma' | 'sm90';

export class CudaFfaForward {
  readonly module: Module;
  /** The Hopper main kernel, or null when the mma.sync one is used. */
  readonly sm90: Sm90ForwardMain | null;
  readonly warps: number;
  readonly blockM: number;
  readonly blockN: number;
  /** Rows of one merge lock (the lock array has ceil(Tq / lockRows) + 1 entries per head). */
  readonly lockRows: number;
  /** Threads of one main-kernel block. */
  readonly mainThreads: number;

  constructor(
    readonly device: CudaDevice,
    options: {
      cacheDir?: string;
      tile?: Partial<FfaForwardTileConfig>;
      kernel?: FfaForwardKernelKind;
      /** The Hopper kernel's schedule (Sm90ForwardOptions: per plan by default); ignored by the mma one. */
      sm90?: Omit<Sm90ForwardOptions, 'cacheDir'>;
    } = {},
  ) {
    const kind = options.kernel ?? 'auto';
    const useSm90 = kind === 'sm90' || (kind === 'auto' && options.tile === undefined && sm90Available(device));
    if (useSm90 && options.tile !== undefined) throw new FfaCudaUnsupportedError('the sm90 kernel picks its tile per plan (128 q rows x 128 or 176 keys); tile options apply to the mma kernel');
    this.warps = options.tile?.warps ?? FFA_FWD_WARPS;
    if (![2, 4, 8].includes(this.warps)) throw new FfaCudaUnsupportedError(`tile warps must be 2, 4 or 8, got ${this.warps}`);
    const mmaBlockN = options.tile?.blockN ?? FFA_FWD_BLOCK_N;
    if (![32, 64, 128].includes(mmaBlockN)) throw new FfaCudaUnsupportedError(`tile blockN must be 32, 64 or 128, got ${mmaBlockN}`);
    const opts: { name: string; cacheDir?: string; options: string[] } = {
      name: 'ffa_fwd.cu',
      options: [`-DFFA_NWARPS=${this.warps}`, `-DFFA_BN=${mmaBlockN}`],
    };
    if (options.cacheDir !== undefined) opts.cacheDir = options.cacheDir;
    // the mma module is always loaded: it also holds the side kernels (fill, finalize, post-pass)
    this.module = device.compile(ffaForwardSource(), opts);
    this.sm90 = useSm90 ? new Sm90ForwardMain(device, { ...options.sm90, ...(options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir }) }) : null;
    this.blockM = this.sm90?.blockM ?? 16 * this.warps;
    this.blockN = this.sm90?.blockN ?? mmaBlockN;
    this.lockRows = this.sm90?.lockRows ?? this.blockM;
    this.mainThreads = this.sm90?.threads ?? 32 * this.warps;
  }

  /** Kernel of the main launch, with its dynamic shared memory opted in (`build`: the Hopper kernel's; the mma kernel has one). */
  mainKernel(dtype: DType, dim: number, merge: boolean, build: Sm90ForwardBuild = 'block'): { kernel: Kernel; smemBytes: number } {
    const t = dtype === 'bfloat16' ? 'bf16' : dtype === 'float16' ? 'fp16' : null;
    if (t === null) throw new FfaCudaUnsupportedError(`input dtype must be bfloat16 or float16, got ${dtype}`);
    if (!FFA_FWD_HEAD_DIMS.includes(dim)) throw new FfaCudaUnsupportedError(`head dim must be one of ${FFA_FWD_HEAD_DIMS.join(', ')}, got ${dim}`);
    if (this.sm90 !== null) return this.sm90.mainKernel(t, dim, merge, build);
    const name = `ffa_fwd_${t}_d${dim}_${merge ? 'merge' : 'direct'}`;
    const kernel = this.module.kernel(name);
    const smemBytes = (this.blockM + 4 * this.blockN) * dim * 2;
    kernel.setMaxDynamicSharedMemory(smemBytes);
    return { kernel, smemBytes };
  }

  /** Device-resident plan and scratch for one (shape, slice list); launch it as often as needed. */
  prepare(shape: FfaForwardShape, slices: SliceList, options: FfaForwardLaunchOptions = {}): FfaForwardProblem {
    return new FfaForwardProblem(this, shape, slices, options);
  }
}

const { i32, ptr } = kernelArg;

/** A slice list planned and uploaded for one shape: work list, slices, lock and fp32 scratch. */
export class FfaForwardProblem {
  readonly plan: FfaForwardPlan;
  readonly merge: boolean;
  /** The Hopper kernel's build this plan runs on (Sm90ForwardMain.picksBuild); 'block' on the mma kernel. */
  readonly build: Sm90ForwardBuild;
  readonly outDtype: DType;
  private readonly qRanges: DeviceBuffer;
  private readonly kRanges: DeviceBuffer;
  private readonly types: DeviceBuffer;
  private readonly work: DeviceBuffer;
  private readonly uncovered: DeviceBuffer | null;
  private readonly locks: DeviceBuffer | null;
  private readonly acc: DeviceBuffer | null;
  /** Made on first use: the deterministic schedule and the partial (out, lse) of accumulation. */
  private detWork: { plan: GroupedWork; buffer: DeviceBuffer } | null = null;
  private part: { out: DeviceBuffer; lse: DeviceBuffer } | null = null;

  constructor(
    readonly owner: CudaFfaForward,
    readonly shape: FfaForwardShape,
    readonly slices: SliceList,
    options: FfaForwardLaunchOptions = {},
  ) {
    const dev = owner.device;
    this.plan = planFfaForward(slices, shape.tokensQ, owner.blockM, owner.blockN);
    this.outDtype = options.outDtype ?? shape.dtype;
    this.merge = this.plan.overlappingQ || options.forceMerge === true || this.outDtype === 'float32';
    this.build = owner.sm90?.picksBuild(slices, this.plan, shape.dim, shape.headsQ) ?? 'block';
    owner.mainKernel(shape.dtype, shape.dim, this.merge, this.build); // validates dtype / dim early
    const nonEmpty = (a: Int32Array): Int32Array => (a.length > 0 ? a : new Int32Array(2));
    this.qRanges = dev.upload(nonEmpty(slices.qRanges));
    this.kRanges = dev.upload(nonEmpty(slices.kRanges));
    this.types = dev.upload(nonEmpty(Int32Array.from(slices.maskTypes)));
    this.work = dev.upload(nonEmpty(this.plan.work));
    this.uncovered = !this.merge && this.plan.uncoveredRows.length > 0 ? dev.upload(this.plan.uncoveredRows) : null;
    const rows = shape.tokensQ * shape.headsQ;
    this.locks = this.merge ? dev.alloc(Math.max(4, (Math.ceil(shape.tokensQ / owner.lockRows) + 1) * shape.headsQ * 4)) : null;
    // float32 output: the accumulator is the output buffer itself
    this.acc = this.merge && this.outDtype !== 'float32' ? dev.alloc(Math.max(4, rows * shape.dim * 4)) : null;
  }

  /** Fills the fp32 scratch with NaN bits (tests: the merge must never read unwritten rows). */
  poisonScratch(): void {
    this.acc?.fill(0xff);
    if (this.part !== null) {
      this.part.out.fill(0xff);
      this.part.lse.fill(0xff);
    }
  }

  /** The deterministic schedule (grouped work list), uploaded on first use. */
  deterministicWork(): { plan: GroupedWork; buffer: DeviceBuffer } {
    if (this.detWork === null) {
      const plan = planDeterministicForward(this.plan, this.slices);
      this.detWork = { plan, buffer: this.owner.device.upload(plan.work.length > 0 ? plan.work : new Int32Array(2)) };
    }
    return this.detWork;
  }

  private partial(): { out: DeviceBuffer; lse: DeviceBuffer } {
    if (this.part === null) {
      const { tokensQ, headsQ, dim } = this.shape;
      const rows = tokensQ * headsQ;
      const dev = this.owner.device;
      this.part = { out: dev.alloc(Math.max(4, rows * dim * bytesPerElement(this.outDtype))), lse: dev.alloc(Math.max(4, rows * 4)) };
    }
    return this.part;
  }

  /**
   * Enqueues the whole forward on `stream`: out [Tq, Hq, D] in outDtype, lse [Tq, Hq] fp32.
   * q/k/v are token-major device buffers of the input dtype. With `extras.accumulate`, out/lse
   * are the caller's accumulators (out in extras.accumulate.outDtype) and this problem's outDtype
   * is the precision of the partial it merges in.
   */
  launch(
    q: DeviceBuffer,
    k: DeviceBuffer,
    v: DeviceBuffer,
    finalOut: DeviceBuffer,
    finalLse: DeviceBuffer,
    softmaxScale: number,
    softcap = 0,
    stream?: Stream,
    extras: FfaForwardExtras = {},
  ): void {
    const { tokensQ, headsQ, headsKv, dim } = this.shape;
    const part = extras.accumulate !== undefined ? this.partial() : null;
    const out = part?.out ?? finalOut;
    const lse = part?.lse ?? finalLse;
    if (extras.maxLogits?.fresh) enqueueFillNegInf(this.owner.module, extras.maxLogits.buffer, headsQ, stream);
    const mod = this.owner.module;
    const rows = tokensQ * headsQ;
    const LOG2E = Math.LOG2E;
    const unit = softcap > 0 ? softcap : softmaxScale;
    const scaleLog2 = unit * LOG2E;
    const softcapScale = softcap > 0 ? softmaxScale / softcap : 0;
    const cfg = (grid: number | [number, number], block: number, sharedMemBytes = 0) =>
      stream === undefined ? { grid, block, sharedMemBytes } : { grid, block, sharedMemBytes, stream };

    if (this.merge) {
      this.locks!.fill(0, stream);
      if (rows > 0) {
        mod.kernel('ffa_fwd_lse_init').launch(cfg(Math.min(1024, Math.ceil(rows / 256)), 256), [ptr(lse), { type: 'i64', value: rows }]);
      }
    } else if (this.uncovered !== null) {
      const n = this.plan.uncoveredRows.length / 2;
      for (let r0 = 0; r0 < n; r0 += 65535) {
        const ny = Math.min(65535, n - r0);
        mod.kernel('ffa_fwd_fill_rows').launch(cfg([64, ny], 256), [
          ptr(out),
          ptr(lse),
          { type: 'ptr', value: this.uncovered.ptr + BigInt(r0 * 8) },
          i32(headsQ * dim),
          i32(headsQ),
        ]);
      }
    }

    if (this.plan.numWork > 0 && headsQ > 0) {
      const { kernel, smemBytes } = this.owner.mainKernel(this.shape.dtype, dim, this.merge, this.build);
      const accBuf = this.merge ? (this.acc ?? out) : out;
      const sm90 = this.owner.sm90;
      const inputs = sm90 !== null ? sm90.inputArgs(q, k, v, this.shape.dtype, tokensQ, this.shape.tokensK, headsQ, headsKv, dim, this.build) : [ptr(q), ptr(k), ptr(v)];
      const mainLaunch = (work: DeviceBuffer | CuDevicePtr, items: number): void => {
        // one block per (item, head), or the persistent Hopper kernel's grid walking them
        const { grid, tail } = sm90 !== null ? sm90.launchShape(kernel, smemBytes, items * headsQ, this.build) : { grid: items * headsQ, tail: [] };
        kernel.launch(cfg(grid, this.owner.mainThreads, smemBytes), [
          ...inputs,
          ptr(accBuf),
          ptr(lse),
          ptr(this.qRanges),
          ptr(this.kRanges),
          ptr(this.types),
          ptr(work),
          ptr(this.locks),
          i32(headsQ),
          i32(headsKv),
          { type: 'f32', value: scaleLog2 },
          { type: 'f32', value: unit },
          { type: 'f32', value: softcapScale },
          ptr(extras.maxLogits?.buffer ?? null),
          ...tail,
        ]);
      };
      if (extras.deterministic === true && this.plan.overlappingQ) {
        // disjoint q ranges already give one writer per row; only overlapping ones need groups
        const det = this.deterministicWork();
        const g = det.plan.groups;
        for (let i = 0; i < g.length; i += 2) mainLaunch(det.buffer.ptr + BigInt(g[i] * 8), g[i + 1]);
      } else {
        mainLaunch(this.work, this.plan.numWork);
      }
    }

    if (this.merge && rows > 0) {
      const name = this.outDtype === 'float32' ? 'ffa_fwd_finalize_f32' : this.outDtype === 'bfloat16' ? 'ffa_fwd_finalize_bf16' : 'ffa_fwd_finalize_fp16';
      mod.kernel(name).launch(cfg(Math.min(4096, Math.ceil((rows * dim) / 256)), 256), [
        ptr(this.acc ?? out),
        ptr(out),
        ptr(lse),
        { type: 'i64', value: rows },
        i32(dim),
      ]);
    }

    if (part !== null || extras.sink !== undefined) {
      const post: Parameters<typeof enqueueForwardPost>[1] = { out: finalOut, outDtype: extras.accumulate?.outDtype ?? this.outDtype, lse: finalLse, rows, dim, headsQ };
      if (part !== null) post.part = { out: part.out, outDtype: this.outDtype, lse: part.lse };
      if (extras.sink !== undefined) post.sink = extras.sink;
      enqueueForwardPost(this.owner.module, post, stream);
    }
  }

  /** Frees the problem's device memory; with `after`, once the work queued there is done (launches may still be in flight). */
  free(after?: Stream): void {
    for (const b of [this.qRanges, this.kRanges, this.types, this.work, this.uncovered, this.locks, this.acc, this.detWork?.buffer, this.part?.out, this.part?.lse]) {
      if (after === undefined) b?.free();
      else b?.freeAfter(after);
    }
  }
}
