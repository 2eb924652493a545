/**
 * GPU check of the range kernels (src/kernels/cuda/range_ops.cu) against the host semantics of
 * GroupCast / GroupReduce (src/comm/group-collective.ts, src/kernels/cpu/merge.ts). Not a CI test:
 * it needs a GPU. Run on the GPU machine:
 *   node dist/test/device/range-ops-gpu.js [--seed N] [--no-bench]
 * Fresh random inputs and range lists per case (empty ranges, single rows, unaligned row sizes,
 * misaligned pointers, thousands of ranges); outputs poisoned with 0xff bytes (NaN) first. One
 * PASS/FAIL line per check, exit code 1 on any failure.
 *
 * Expected: gather and sum/avg are bit-identical to the host (same fp32 operations in the same
 * order, rounded once); the lse merge is fp32 on the GPU against the host's float64 arithmetic on
 * float32 storage: |err| <= 1e-6 * (1 + contributions to the row) * (1 + |ref|), -inf exactly
 * where the host has -inf, no NaN.
 */
import { DeviceBuffer, DeviceTensor } from '../../src/device/index.js';
import { type DType, bf16BitsToFloat, bytesPerElement, f16BitsToFloat, floatToBf16Bits, floatToF16Bits } from '../../src/dtype.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { Tensor } from '../../src/tensor.js';
import { mergeRow } from '../../src/lse-merge.js';
import { CudaRangeOps } from '../../src/kernels/cuda/range-ops.js';
import { Tally, openDevice, randomTensor as uniformTensor, scriptArgs } from './common.js';
import { meanEventMs } from '../../bench/kernel/timing.js';

const args = scriptArgs();
const bench = !args.has('--no-bench');
const rand = (): number => args.rng.next();
const randInt = (n: number): number => Math.floor(rand() * n);

const tally = new Tally();
const report = (ok: boolean, name: string, detail: string): boolean => tally.record(ok, `${name}: ${detail}`);

/** Random values in ±2 (never 0) as a host tensor. */
const randomTensor = (dtype: DType, shape: number[]): Tensor => uniformTensor(args.rng, dtype, shape, 2);

/** A mix of empty, single-row and longer ranges inside [0, rows), possibly overlapping. */
function randomRanges(rows: number, count: number, maxLen: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let i = 0; i < count; i++) {
    const kind = rand();
    const s = randInt(rows + 1);
    const len = kind < 0.15 ? 0 : kind < 0.35 ? 1 : 1 + randInt(maxLen);
    out.push([Math.min(s, rows), Math.min(rows, s + len)]);
  }
  return out;
}

function bytesOf(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

const dev = openDevice();
let t0 = performance.now();
const ops = new CudaRangeOps(dev);
console.log(`nvrtc compile + load range_ops.cu: ${(performance.now() - t0).toFixed(0)} ms`);

// ---------------------------------------------------------------------------------------------
// Gather

function hostGather(x: Tensor, ranges: ReadonlyArray<readonly [number, number]>): Uint8Array {
  const rowBytes = x.data.byteLength / Math.max(x.shape[0], 1);
  const src = bytesOf(x);
  const total = ranges.reduce((a, [s, e]) => a + e - s, 0);
  const out = new Uint8Array(total * rowBytes);
  let at = 0;
  for (const [s, e] of ranges) {
    out.set(src.subarray(s * rowBytes, e * rowBytes), at);
    at += (e - s) * rowBytes;
  }
  return out;
}

function checkGather(name: string, dtype: DType, rowShape: number[], rows: number, ranges: Array<[number, number]>): void {
  try {
    const x = randomTensor(dtype, [rows, ...rowShape]);
    const want = hostGather(x, ranges);
    const gx = DeviceTensor.fromHost(dev, x);
    const total = ranges.reduce((a, [s, e]) => a + e - s, 0);
    const out = DeviceTensor.empty(dev, dtype, [total, ...rowShape]);
    out.buffer.fill(0xff);
    ops.gather(gx, ranges, out);
    const got = bytesOf(out.toHost());
    const d = firstDiff(got, want);
    const rowBytes = rowShape.reduce((a, b) => a * b, 1) * bytesPerElement(dtype);
    report(d < 0, `gather ${name}`, `${dtype} rows of ${rowBytes} B, ${ranges.length} ranges, ${total} rows${d < 0 ? ', bit-identical' : `, first differing byte ${d}`}`);
    gx.free();
    out.free();
  } catch (e) {
    report(false, `gather ${name}`, `threw ${(e as Error).stack ?? String(e)}`);
  }
}

checkGather('kv rows, 16-byte vectors', 'bfloat16', [8, 128], 3000, randomRanges(3000, 40, 200));
checkGather('fp32 lse rows (32 B)', 'float32', [8], 3000, randomRanges(3000, 40, 200));
checkGather('fp16 rows of 14 B (2-byte units)', 'float16', [7], 1000, randomRanges(1000, 30, 100));
checkGather('bf16 rows of 30 B (2-byte units)', 'bfloat16', [3, 5], 1000, randomRanges(1000, 30, 100));
checkGather('fp32 rows of 12 B (4-byte units)', 'float32', [3], 1000, randomRanges(1000, 30, 100));
checkGather('fp32 rows of 24 B (8-byte units)', 'float32', [6], 1000, randomRanges(1000, 30, 100));
checkGather('4000 short ranges', 'bfloat16', [2, 64], 5000, randomRanges(5000, 4000, 4));
checkGather('single rows only', 'float16', [4, 64], 500, Array.from({ length: 300 }, () => { const s = randInt(500); return [s, s + 1] as [number, number]; }));
checkGather('one range, whole tensor', 'float32', [4, 64], 777, [[0, 777]]);
checkGather('huge row (64 KiB, one row per block)', 'bfloat16', [256, 128], 64, randomRanges(64, 10, 16));
checkGather('empty ranges only', 'bfloat16', [8, 128], 100, [[5, 5], [0, 0], [100, 100]]);
checkGather('empty range list', 'float32', [8], 100, []);

// Misaligned pointers: rows of 32 B at a 2-byte offset must fall back to 2-byte units.
try {
  const rows = 300;
  const rowBytes = 32;
  const host = new Uint8Array(rows * rowBytes + 2);
  for (let i = 0; i < host.length; i++) host[i] = randInt(256);
  const ranges = randomRanges(rows, 25, 40);
  const plan = ops.prepareGather(ranges, rows);
  const inBuf = dev.upload(host);
  const outBuf = dev.alloc(plan.layout.totalRows * rowBytes + 2);
  outBuf.fill(0xff);
  const view = (b: DeviceBuffer, bytes: number): DeviceBuffer => new DeviceBuffer(dev, b.ptr + 2n, bytes, bytes);
  ops.gatherBuffers(plan, view(inBuf, rows * rowBytes), view(outBuf, plan.layout.totalRows * rowBytes), rowBytes);
  const got = outBuf.download(new Uint8Array(plan.layout.totalRows * rowBytes + 2)).subarray(2);
  const want = new Uint8Array(plan.layout.totalRows * rowBytes);
  let at = 0;
  for (const [s, e] of ranges) {
    want.set(host.subarray(2 + s * rowBytes, 2 + e * rowBytes), at);
    at += (e - s) * rowBytes;
  }
  const d = firstDiff(got, want);
  report(d < 0, 'gather misaligned pointers (+2 B)', `${ranges.length} ranges, ${plan.layout.totalRows} rows${d < 0 ? ', bit-identical' : `, first differing byte ${d}`}`);
  plan.free();
  inBuf.free();
  outBuf.free();
} catch (e) {
  report(false, 'gather misaligned pointers (+2 B)', `threw ${(e as Error).stack ?? String(e)}`);
}

// ---------------------------------------------------------------------------------------------
// Reduce (sum / avg)

/** GroupReduce-like placements: destination splits, each with 0-3 contributors laid out in a shuffled source. */
function groupReducePlacements(dstRows: number, maxSplit: number): { srcRanges: Array<[number, number]>; dstStarts: number[]; srcRows: number } {
  const pieces: Array<[number, number]> = []; // [dstStart, len]
  for (let at = 0; at < dstRows; ) {
    const len = Math.min(dstRows - at, rand() < 0.2 ? 1 : 1 + randInt(maxSplit));
    const contributors = randInt(4);
    for (let c = 0; c < contributors; c++) pieces.push([at, len]);
    at += len;
  }
  // The source is the receive buffer: the pieces in some order (by sender), so shuffle them.
  for (let i = pieces.length - 1; i > 0; i--) {
    const j = randInt(i + 1);
    [pieces[i], pieces[j]] = [pieces[j], pieces[i]];
  }
  const srcRanges: Array<[number, number]> = [];
  const dstStarts: number[] = [];
  let s = 0;
  for (const [d, len] of pieces) {
    srcRanges.push([s, s + len]);
    dstStarts.push(d);
    s += len;
    if (rand() < 0.1) {
      srcRanges.push([s, s]); // empty ranges between real ones
      dstStarts.push(randInt(dstRows + 1));
    }
  }
  return { srcRanges, dstStarts, srcRows: s };
}

/** Arbitrary (not split-aligned) overlapping ranges. */
function randomPlacements(srcRows: number, dstRows: number, count: number, maxLen: number): { srcRanges: Array<[number, number]>; dstStarts: number[]; srcRows: number } {
  const srcRanges: Array<[number, number]> = [];
  const dstStarts: number[] = [];
  for (let i = 0; i < count; i++) {
    const len = rand() < 0.1 ? 0 : rand() < 0.2 ? 1 : 1 + randInt(maxLen);
    const s = randInt(srcRows - len + 1);
    srcRanges.push([s, s + len]);
    dstStarts.push(randInt(dstRows - len + 1));
  }
  return { srcRanges, dstStarts, srcRows };
}

/** The host GroupReduce arithmetic (group-collective.ts reduceRows), per row count of covering ranges. */
function hostReduce(op: 'sum' | 'avg', dst: Tensor, src: Tensor, srcRanges: Array<[number, number]>, dstStarts: number[]): Tensor {
  const w = dst.size / Math.max(dst.shape[0], 1);
  const half = dst.dtype === 'bfloat16' || dst.dtype === 'float16';
  const widen = dst.dtype === 'bfloat16' ? bf16BitsToFloat : f16BitsToFloat;
  const narrow = dst.dtype === 'bfloat16' ? floatToBf16Bits : floatToF16Bits;
  const acc = half ? Float32Array.from(dst.data as Uint16Array, widen) : (dst.data as Float32Array).slice();
  const part = half ? Float32Array.from(src.data as Uint16Array, widen) : (src.data as Float32Array);
  const count = new Int32Array(dst.shape[0]);
  srcRanges.forEach(([s, e], i) => {
    for (let r = 0; r < e - s; r++) {
      count[dstStarts[i] + r]++;
      for (let x = 0; x < w; x++) acc[(dstStarts[i] + r) * w + x] += part[(s + r) * w + x];
    }
  });
  const out = new Tensor(dst.dtype, dst.shape, dst.data.slice());
  for (let r = 0; r < count.length; r++) {
    if (count[r] === 0) continue;
    for (let x = r * w; x < (r + 1) * w; x++) {
      if (op === 'avg') acc[x] /= 1 + count[r];
      if (half) (out.data as Uint16Array)[x] = narrow(acc[x]);
      else (out.data as Float32Array)[x] = acc[x];
    }
  }
  return out;
}

function checkReduce(name: string, op: 'sum' | 'avg', dtype: DType, rowShape: number[], dstRows: number, p: { srcRanges: Array<[number, number]>; dstStarts: number[]; srcRows: number }): void {
  try {
    const src = randomTensor(dtype, [p.srcRows, ...rowShape]);
    const dst = randomTensor(dtype, [dstRows, ...rowShape]);
    const want = hostReduce(op, dst, src, p.srcRanges, p.dstStarts);
    const gs = DeviceTensor.fromHost(dev, src);
    const gd = DeviceTensor.fromHost(dev, dst);
    ops.reduce(op, gs, gd, { srcRanges: p.srcRanges, dstStarts: p.dstStarts });
    const got = gd.toHost();
    const d = firstDiff(bytesOf(got), bytesOf(want));
    const touched = p.srcRanges.reduce((a, [s, e]) => a + e - s, 0);
    report(d < 0, `reduce ${op} ${name}`, `${dtype} [${[dstRows, ...rowShape].join(', ')}], ${p.srcRanges.length} ranges, ${touched} contributed rows${d < 0 ? ', bit-identical' : `, first differing element ${Math.floor(d / bytesPerElement(dtype))}: ${got.at(Math.floor(d / bytesPerElement(dtype)))} vs ${want.at(Math.floor(d / bytesPerElement(dtype)))}`}`);
    gs.free();
    gd.free();
  } catch (e) {
    report(false, `reduce ${op} ${name}`, `threw ${(e as Error).stack ?? String(e)}`);
  }
}

for (const op of ['sum', 'avg'] as const) {
  checkReduce('group-reduce splits, 16-byte vectors', op, 'float32', [4, 64], 2000, groupReducePlacements(2000, 150));
  checkReduce('group-reduce splits, 16-byte vectors', op, 'bfloat16', [4, 64], 2000, groupReducePlacements(2000, 150));
  checkReduce('group-reduce splits, 16-byte vectors', op, 'float16', [2, 128], 2000, groupReducePlacements(2000, 150));
  checkReduce('rows of 3 elements (scalar)', op, 'float32', [3], 1500, groupReducePlacements(1500, 100));
  checkReduce('rows of 5 elements (scalar)', op, 'bfloat16', [5], 1500, groupReducePlacements(1500, 100));
  checkReduce('rows of 6 elements (2-wide)', op, 'float16', [6], 1500, groupReducePlacements(1500, 100));
  checkReduce('3000 overlapping arbitrary ranges', op, 'float32', [8], 1200, randomPlacements(4000, 1200, 3000, 6));
  checkReduce('3000 overlapping arbitrary ranges', op, 'bfloat16', [16], 1200, randomPlacements(4000, 1200, 3000, 6));
}
checkReduce('no ranges (dst unchanged)', 'avg', 'float32', [8], 100, { srcRanges: [], dstStarts: [], srcRows: 10 });

// ---------------------------------------------------------------------------------------------
// LSE merge

/** Random lse with a fraction of -inf; out rows of -inf heads set to NaN (must never be read). */
function randomOutLse(rows: number, heads: number, dim: number, negInf: number): { out: Tensor; lse: Tensor } {
  const out = randomTensor('float32', [rows, heads, dim]);
  const lse = Tensor.zeros('float32', [rows, heads]);
  const l = lse.data as Float32Array;
  const o = out.data as Float32Array;
  for (let i = 0; i < l.length; i++) {
    if (rand() < negInf) {
      l[i] = -Infinity;
      o.fill(NaN, i * dim, (i + 1) * dim);
    } else {
      l[i] = (rand() * 2 - 1) * 20;
    }
  }
  return { out, lse };
}

function checkLse(name: string, heads: number, dim: number, dstRows: number, p: { srcRanges: Array<[number, number]>; dstStarts: number[]; srcRows: number }): void {
  try {
    const src = randomOutLse(p.srcRows, heads, dim, 0.15);
    const dst = randomOutLse(dstRows, heads, dim, 0.15);
    const wantOut = (dst.out.data as Float32Array).slice();
    const wantLse = (dst.lse.data as Float32Array).slice();
    const contributions = new Int32Array(dstRows);
    p.srcRanges.forEach(([s, e], i) => {
      for (let r = 0; r < e - s; r++) contributions[p.dstStarts[i] + r]++;
    });
    const so = src.out.data as Float32Array;
    const sl = src.lse.data as Float32Array;
    p.srcRanges.forEach(([s, e], i) => {
      for (let x = 0; x < (e - s) * heads; x++) {
        const to = p.dstStarts[i] * heads + x;
        wantLse[to] = mergeRow(wantOut, to * dim, wantLse[to], so, (s * heads + x) * dim, sl[s * heads + x], dim);
      }
    });
    const g = { out: DeviceTensor.fromHost(dev, src.out), lse: DeviceTensor.fromHost(dev, src.lse) };
    const gd = { out: DeviceTensor.fromHost(dev, dst.out), lse: DeviceTensor.fromHost(dev, dst.lse) };
    ops.lseMerge(g, gd, { srcRanges: p.srcRanges, dstStarts: p.dstStarts });
    const gotOut = gd.out.toHost().data as Float32Array;
    const gotLse = gd.lse.toHost().data as Float32Array;
    let bad = 0;
    let first = '';
    let maxErr = 0;
    const cmp = (got: number, want: number, what: string, row: number): void => {
      // Rows nobody touched keep their NaN garbage on both sides: compare bits there.
      const same = Object.is(got, want) || (Number.isNaN(got) && Number.isNaN(want));
      const err = Math.abs(got - want);
      if (Number.isFinite(err)) maxErr = Math.max(maxErr, err / (1 + Math.abs(want)));
      // fp32 rounding grows with the length of the merge chain: 1e-6 per step, plus one.
      if (!(same || err <= 1e-6 * (1 + contributions[row]) * (1 + Math.abs(want)))) {
        bad++;
        if (first === '') first = `${what}: ${got} vs ${want}`;
      }
    };
    for (let i = 0; i < wantLse.length; i++) cmp(gotLse[i], wantLse[i], `lse[${i}]`, Math.floor(i / heads));
    for (let i = 0; i < wantOut.length; i++) cmp(gotOut[i], wantOut[i], `out[${i}]`, Math.floor(i / (heads * dim)));
    const longest = contributions.reduce((a, c) => Math.max(a, c), 0);
    const negInf = wantLse.reduce((a, x) => a + (x === -Infinity ? 1 : 0), 0);
    report(bad === 0, `lse merge ${name}`, `[${dstRows}, ${heads}, ${dim}], ${p.srcRanges.length} ranges, max rel err ${maxErr.toExponential(2)} (chains up to ${longest}), ${negInf} -inf heads after${bad === 0 ? '' : `; ${bad} bad, first ${first}`}`);
    for (const t of [g.out, g.lse, gd.out, gd.lse]) t.free();
  } catch (e) {
    report(false, `lse merge ${name}`, `threw ${(e as Error).stack ?? String(e)}`);
  }
}

checkLse('group-reduce splits, d128 (float4, 32 lanes)', 4, 128, 1500, groupReducePlacements(1500, 120));
checkLse('group-reduce splits, d64 (16 lanes)', 8, 64, 1500, groupReducePlacements(1500, 120));
checkLse('d80 (20 vectors over 32 lanes)', 3, 80, 800, groupReducePlacements(800, 60));
checkLse('d6 (float2), 5 heads', 5, 6, 800, groupReducePlacements(800, 60));
checkLse('d3 (scalar), 2 heads', 2, 3, 800, groupReducePlacements(800, 60));
checkLse('d256 (2 vectors per lane)', 2, 256, 400, groupReducePlacements(400, 60));
checkLse('3000 overlapping arbitrary ranges', 4, 64, 1000, randomPlacements(3000, 1000, 3000, 5));

// ---------------------------------------------------------------------------------------------
// Bad arguments

function expectInvalid(name: string, argument: string, f: () => unknown): void {
  try {
    f();
    report(false, `rejects ${name}`, 'did not throw');
  } catch (e) {
    const ok = e instanceof InvalidArgumentError && e.argument === argument;
    report(ok, `rejects ${name}`, ok ? (e as Error).message : `threw ${String(e)}`);
  }
}
{
  const x = DeviceTensor.empty(dev, 'float32', [10, 4]);
  const y = DeviceTensor.empty(dev, 'float32', [10, 4]);
  const h = DeviceTensor.empty(dev, 'float64', [10, 4]);
  expectInvalid('range past the end', 'ranges[1]', () => ops.gather(x, [[0, 2], [8, 11]]));
  expectInvalid('reversed range', 'srcRanges[0]', () => ops.reduce('sum', x, y, { srcRanges: [[3, 2]], dstStarts: [0] }));
  expectInvalid('destination past the end', 'dstStarts[0]', () => ops.reduce('avg', x, y, { srcRanges: [[0, 4]], dstStarts: [7] }));
  expectInvalid('float64 reduce', 'dst', () => ops.reduce('sum', h, h, { srcRanges: [[0, 1]], dstStarts: [0] }));
  expectInvalid('wrong output shape', 'output', () => ops.gather(x, [[0, 3]], y));
  for (const t of [x, y, h]) t.free();
}

// ---------------------------------------------------------------------------------------------
// Bandwidth

/** ms per call: one warm-up, then `reps` calls between two CUDA events. */
const timeMs = (f: () => void, reps: number): number => meanEventMs(dev, f, 1, reps);

if (bench && tally.failures === 0) {
  const rows = 65536;
  const rowShape = [8, 128]; // a k or v row of 8 kv heads at d128, bf16: 2 KiB
  const rowBytes = 8 * 128 * 2;
  const x = DeviceTensor.empty(dev, 'bfloat16', [rows, ...rowShape]);
  x.buffer.fill(0);
  for (const [label, ranges] of [
    ['64 ranges of 512 rows', Array.from({ length: 64 }, (_, i) => [i * 1024, i * 1024 + 512] as [number, number])],
    ['8192 ranges of 4 rows', Array.from({ length: 8192 }, (_, i) => [i * 8, i * 8 + 4] as [number, number])],
  ] as const) {
    const plan = ops.prepareGather(ranges, rows);
    const out = DeviceTensor.empty(dev, 'bfloat16', [plan.layout.totalRows, ...rowShape]);
    const ms = timeMs(() => ops.gather(x, plan, out), 20);
    const bytes = 2 * plan.layout.totalRows * rowBytes;
    console.log(`bench gather bf16 ${label} (${(bytes / 2 / 2 ** 20).toFixed(0)} MiB moved): ${(ms * 1e3).toFixed(1)} us, ${(bytes / ms / 1e6).toFixed(0)} GB/s (read + write)`);
    plan.free();
    out.free();
  }
  {
    // 4 contributors per destination row (cp 4 GroupReduce of fp32 dk rows).
    const dstRows = 16384;
    const srcRanges: Array<[number, number]> = [];
    const dstStarts: number[] = [];
    for (let c = 0; c < 4; c++) for (let b = 0; b < 16; b++) { srcRanges.push([c * dstRows + b * 1024, c * dstRows + (b + 1) * 1024]); dstStarts.push(b * 1024); }
    const src = DeviceTensor.empty(dev, 'float32', [4 * dstRows, ...rowShape]);
    const dst = DeviceTensor.empty(dev, 'float32', [dstRows, ...rowShape]);
    src.buffer.fill(0);
    dst.buffer.fill(0);
    const plan = ops.prepareReduce(srcRanges, dstStarts, 4 * dstRows, dstRows);
    const ms = timeMs(() => ops.reduce('sum', src, dst, plan), 20);
    const bytes = (4 + 2) * dstRows * 8 * 128 * 4;
    console.log(`bench reduce sum fp32 [${dstRows}, 8, 128] x 4 contributors: ${(ms * 1e3).toFixed(1)} us, ${(bytes / ms / 1e6).toFixed(0)} GB/s (5 reads + 1 write)`);
    const out = DeviceTensor.empty(dev, 'float32', [dstRows, 8, 128]);
    const lse = DeviceTensor.empty(dev, 'float32', [dstRows, 8]);
    const sOut = DeviceTensor.empty(dev, 'float32', [4 * dstRows, 8, 128]);
    const sLse = DeviceTensor.empty(dev, 'float32', [4 * dstRows, 8]);
    for (const t of [out, lse, sOut, sLse]) t.buffer.fill(0);
    const ms2 = timeMs(() => ops.lseMerge({ out: sOut, lse: sLse }, { out, lse }, plan), 20);
    const bytes2 = 6 * dstRows * 8 * 128 * 4;
    console.log(`bench lse merge fp32 [${dstRows}, 8, 128] x 4 contributors: ${(ms2 * 1e3).toFixed(1)} us, ${(bytes2 / ms2 / 1e6).toFixed(0)} GB/s (5 reads + 1 write of out)`);
    for (const t of [src, dst, out, lse, sOut, sLse]) t.free();
    plan.free();
  }
  x.free();
}

console.log(`${tally.checks - tally.failures}/${tally.checks} checks passed`);
dev.close();
tally.exit(true);
