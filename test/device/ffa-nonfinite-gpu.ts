/**
 * GPU check that NaN and ±Inf propagate through the CUDA flex-flash-attention kernels as the
 * arithmetic says (issue 9, item 2), forward and backward, on every main kernel: the Hopper
 * forward, the mma.sync forward, the Hopper backward (head dims 64 and 128) and the
 * mma.sync backward. Not a CI test: it needs a GPU. Run on the GPU machine:
 *   node dist/test/device/ffa-nonfinite-gpu.js [--seed N] [--only NAME]
 *
 * Per case one element of q, k or v is set to NaN or ±Inf in fresh random inputs; out / lse / dq /
 * dk / dv buffers are poisoned before each launch. What must hold (the float64 reference, which
 * sums over the cells a row sees, is the oracle for the finite part and for the backward):
 *   forward  - a row that sees the non-finite value comes back as the arithmetic gives it: NaN q
 *              or NaN k → out and lse NaN (never out = 0 / lse = -inf, the old behaviour); +Inf k
 *              → NaN where q·k = +inf, a finite row where q·k = −inf (that key's weight is 0);
 *              NaN v → NaN in that column of out, lse finite; −Inf v → −Inf in that column;
 *   backward - every element the reference gives as NaN / ±Inf comes back non-finite;
 *   both     - elements the reference gives as finite come back finite and within
 *              2e-2·max|ref| in the rows / keys listed as clean (other documents, rows that do not
 *              see the value). Elsewhere a finite reference element may come back NaN: the
 *              kernels multiply whole tiles on the tensor cores, and 0 · NaN = NaN for a cell a
 *              row does not see but whose tile it shares (as in FlashAttention). Those are
 *              counted and printed, never required.
 */
import { Tensor } from '../../src/tensor.js';
import type { DType } from '../../src/dtype.js';
import { referenceBackward, referenceForward } from '../../src/kernels/reference.js';
import { cellMultiplicity } from '../../src/kernels/reference.js';
import { CudaFfaForward } from '../../src/kernels/cuda/ffa-forward.js';
import { CudaFfaBackward } from '../../src/kernels/cuda/ffa-backward.js';
import { causalMask, fullMask, makeSliceList, varlenCausalMask, type SliceList } from '../../src/mask/index.js';
import { Tally, openDevice, randomQkv, randomTensor, scriptArgs } from './common.js';
import { hostBackward, hostForward } from './host-harness.js';

const args = scriptArgs();
const { rng } = args;

interface Case {
  name: string;
  slices: SliceList;
  tokens: number;
  headsQ: number;
  headsKv: number;
  dim: number;
  dtype: DType;
  /** which tensor, token, head, column, and the value put there */
  poison: { tensor: 'q' | 'k' | 'v'; token: number; head: number; col: number; value: number };
  /** [start, end) token range whose q rows and keys must come back exact in the backward (no tile shared with the value) */
  clean: [number, number];
}

const T = 512;
const cases: Case[] = [
  { name: 'NaN in q, full 512, 4:2 heads, bf16 d128', slices: fullMask(T), tokens: T, headsQ: 4, headsKv: 2, dim: 128, dtype: 'bfloat16', poison: { tensor: 'q', token: 100, head: 1, col: 7, value: NaN }, clean: [0, 0] },
  { name: 'NaN in k, varlen causal [200, 312], 4:2 heads, bf16 d128', slices: varlenCausalMask([0, 200, T]), tokens: T, headsQ: 4, headsKv: 2, dim: 128, dtype: 'bfloat16', poison: { tensor: 'k', token: 300, head: 0, col: 5, value: NaN }, clean: [0, 200] },
  { name: '+Inf in k, causal 512, 4:2 heads, bf16 d128', slices: causalMask(T), tokens: T, headsQ: 4, headsKv: 2, dim: 128, dtype: 'bfloat16', poison: { tensor: 'k', token: 50, head: 1, col: 3, value: Infinity }, clean: [0, 0] },
  { name: 'NaN in v, varlen causal [200, 312], 4:2 heads, bf16 d128', slices: varlenCausalMask([0, 200, T]), tokens: T, headsQ: 4, headsKv: 2, dim: 128, dtype: 'bfloat16', poison: { tensor: 'v', token: 300, head: 1, col: 9, value: NaN }, clean: [0, 200] },
  { name: '-Inf in v, full 512, 4:2 heads, bf16 d128', slices: fullMask(T), tokens: T, headsQ: 4, headsKv: 2, dim: 128, dtype: 'bfloat16', poison: { tensor: 'v', token: 400, head: 0, col: 11, value: -Infinity }, clean: [0, 0] },
  {
    name: 'NaN in k seen through one of two overlapping slices (merge epilogue), 4:2 heads, bf16 d128',
    slices: makeSliceList([[0, T], [200, 400]], [[0, 256], [256, T]], ['full', 'full']),
    tokens: T, headsQ: 4, headsKv: 2, dim: 128, dtype: 'bfloat16', poison: { tensor: 'k', token: 300, head: 1, col: 2, value: NaN }, clean: [0, 200],
  },
  { name: 'NaN in k, varlen causal [200, 312], 4:2 heads, fp16 d64', slices: varlenCausalMask([0, 200, T]), tokens: T, headsQ: 4, headsKv: 2, dim: 64, dtype: 'float16', poison: { tensor: 'k', token: 260, head: 1, col: 1, value: NaN }, clean: [0, 200] },
];

const dev = openDevice();
const forwards: Array<[string, CudaFfaForward]> = [
  ['sm90', new CudaFfaForward(dev, { kernel: 'sm90' })],
  ['mma', new CudaFfaForward(dev, { kernel: 'mma' })],
];
const backwards: Array<[string, CudaFfaBackward]> = [
  ['default', new CudaFfaBackward(dev)],
  ['mma', new CudaFfaBackward(dev, { kernel: 'mma' })],
];
const tally = new Tally();

/** Writes `value` into one element of a 16-bit tensor (through a float64 round trip of the whole tensor). */
function poisoned(x: Tensor, token: number, head: number, col: number, value: number): Tensor {
  const [, heads, dim] = x.shape;
  const f = x.toFloat64();
  f[(token * heads + head) * dim + col] = value;
  return Tensor.fromValues(x.dtype, x.shape, f);
}

const isFinite = Number.isFinite;

/**
 * Compares `got` with the reference element by element: non-finite reference → got non-finite
 * (`exact`: the same value, NaN matching NaN); finite reference → got finite and within
 * 2e-2·max|finite ref| where `clean(i)`, got finite-and-close or non-finite elsewhere (counted).
 */
function compare(name: string, got: Float64Array, ref: Float64Array, clean: (i: number) => boolean, exact: boolean): { bad: number; first: string; spurious: number; nonFinite: number } {
  let maxRef = 0;
  for (const r of ref) if (isFinite(r)) maxRef = Math.max(maxRef, Math.abs(r));
  const tol = 2e-2 * maxRef + 1e-6;
  let bad = 0;
  let first = '';
  let spurious = 0;
  let nonFinite = 0;
  const fail = (msg: string): void => {
    if (bad++ === 0) first = msg;
  };
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i];
    const g = got[i];
    if (!isFinite(r)) {
      nonFinite++;
      if (isFinite(g)) fail(`${name}[${i}] = ${g}, expected ${r}`);
      else if (exact && !(Object.is(g, r) || (Number.isNaN(g) && Number.isNaN(r)))) fail(`${name}[${i}] = ${g}, expected ${r}`);
      continue;
    }
    if (!isFinite(g)) {
      if (clean(i)) fail(`${name}[${i}] = ${g} in a clean row, expected ${r}`);
      else spurious++;
      continue;
    }
    if (!(Math.abs(g - r) <= tol)) fail(`${name}[${i}] = ${g} vs ${r}`);
  }
  return { bad, first, spurious, nonFinite };
}

tally.forEach(cases, args.selects, '', (c) => {
  const shape = { tokensQ: c.tokens, tokensK: c.tokens, headsQ: c.headsQ, headsKv: c.headsKv, dim: c.dim, dtype: c.dtype };
  const base = randomQkv(rng, shape);
  const p = c.poison;
  const qkv = { ...base, [p.tensor]: poisoned(base[p.tensor], p.token, p.head, p.col, p.value) };
  const { q, k, v } = qkv;
  const dout = randomTensor(rng, c.dtype, [c.tokens, c.headsQ, c.dim], 1);
  const softmaxScale = 1 / Math.sqrt(c.dim);
  const fargs = { q, k, v, slices: c.slices, softmaxScale, softcap: 0, returnMaxLogits: false, outDtype: c.dtype, deterministic: false };

  // Forward expectations: which rows see the poisoned element, and what the arithmetic gives them.
  const group = c.headsQ / c.headsKv;
  const mult = cellMultiplicity(c.slices, c.tokens, c.tokens);
  const hp = referenceForward(fargs);
  const expOut = Float64Array.from(hp.out.data as Float64Array);
  const expLse = Float64Array.from(hp.lse.data as Float64Array);
  const sees = (t: number, h: number): boolean => {
    if (p.tensor === 'q') return t === p.token && h === p.head;
    return Math.floor(h / group) === p.head && mult[t * c.tokens + p.token] > 0;
  };
  const qf = q.toFloat64();
  for (let t = 0; t < c.tokens; t++) {
    for (let h = 0; h < c.headsQ; h++) {
      if (!sees(t, h)) continue;
      const row = t * c.headsQ + h;
      // NaN q or k, or q·k = +inf: the whole row is NaN (the float64 reference loses an all-NaN
      // row, so the expectation is written here); q·k = −inf: that key has weight 0 (reference)
      const rowNaN = p.tensor === 'q' || (p.tensor === 'k' && (Number.isNaN(p.value) || Math.sign(qf[row * c.dim + p.col]) * p.value > 0));
      if (rowNaN) {
        expLse[row] = NaN;
        expOut.fill(NaN, row * c.dim, (row + 1) * c.dim);
      } else if (p.tensor === 'v') {
        expOut[row * c.dim + p.col] = p.value; // p > 0 times NaN / −inf
      }
    }
  }
  const cleanToken = (t: number): boolean => t >= c.clean[0] && t < c.clean[1];
  const kvHead = p.tensor === 'q' ? Math.floor(p.head / group) : p.head;
  // q rows / key rows in the clean range or of another kv-head group must be exact
  const cleanQ = (row: number): boolean => cleanToken(Math.floor(row / c.headsQ)) || Math.floor((row % c.headsQ) / group) !== kvHead;
  const cleanK = (krow: number): boolean => cleanToken(Math.floor(krow / c.headsKv)) || krow % c.headsKv !== kvHead;

  const fwdResults = forwards.map(([label, f]) => [label, hostForward(f, fargs, { poison: true })] as const);
  for (const [label, got] of fwdResults) {
    // forward: a non-finite q or k reaches only the rows that see it (masked logits are -inf),
    // so every other element is exact; a non-finite v can spoil its column in rows sharing a tile
    const outClean = (i: number): boolean => p.tensor !== 'v' || i % c.dim !== p.col || cleanQ(Math.floor(i / c.dim));
    const o = compare('out', got.out.toFloat64(), expOut, outClean, true);
    const l = compare('lse', got.lse.toFloat64(), expLse, () => true, true);
    const ok = o.bad === 0 && l.bad === 0 && o.nonFinite > 0;
    tally.record(
      ok,
      `[fwd ${label}] ${c.name}: ${o.nonFinite} non-finite out and ${l.nonFinite} lse expected; ${o.spurious} out elements non-finite through a shared tile` +
        (o.bad + l.bad ? `; ${o.bad + l.bad} bad, first ${o.first || l.first}` : ''),
    );
  }

  // Backward: fed the default forward's out / lse (with their NaN); the reference is the oracle.
  const f0 = fwdResults[0][1];
  const bargs = { dout, q, k, v, out: f0.out, lse: f0.lse, slices: c.slices, softmaxScale, softcap: 0, deterministic: false };
  const ref = referenceBackward(bargs);
  for (const [label, b] of backwards) {
    const got = hostBackward(b, bargs, { poison: true });
    const dq = compare('dq', got.dq.toFloat64(), ref.dq.data as Float64Array, (i) => cleanQ(Math.floor(i / c.dim)), false);
    const dk = compare('dk', got.dk.toFloat64(), ref.dk.data as Float64Array, (i) => cleanK(Math.floor(i / c.dim)), false);
    const dv = compare('dv', got.dv.toFloat64(), ref.dv.data as Float64Array, (i) => cleanK(Math.floor(i / c.dim)), false);
    const bad = dq.bad + dk.bad + dv.bad;
    const ok = bad === 0 && dq.nonFinite + dk.nonFinite + dv.nonFinite > 0;
    tally.record(
      ok,
      `[bwd ${label} ${b.usesSm90(c.dim) ? 'sm90' : 'mma'}] ${c.name}: non-finite expected dq ${dq.nonFinite}, dk ${dk.nonFinite}, dv ${dv.nonFinite}; ` +
        `through shared tiles dq ${dq.spurious}, dk ${dk.spurious}, dv ${dv.spurious}` +
        (bad ? `; ${bad} bad, first ${dq.first || dk.first || dv.first}` : ''),
    );
  }
});

dev.close();
tally.exit();
