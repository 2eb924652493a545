/**
 * A CPU engine runs the main loops of one forward or backward call over the work list, kv head
 * by kv head, on float32 token-major buffers. Two engines fill this interface: the TypeScript
 * tiles (here; float64 arithmetic, one thread, runs anywhere) and the WebAssembly SIMD kernel
 * (wasm/engine.ts; float32, several threads where the runtime allows). The backend (index.ts)
 * does everything around them: dtype widening, accumulation into a caller's (out, lse), the sink.
 * Each engine checks for itself whether the inputs are all finite (see forward.ts), where it
 * reads them fastest.
 */
import { backwardHead } from './backward.js';
import { forwardHead } from './forward.js';
import { allFinite, gatherHeads, scatterHeads } from './layout.js';
import { TILE_K, TILE_Q, type WorkList } from './work.js';

interface JobShape {
  tokensQ: number;
  tokensK: number;
  headsQ: number;
  headsKv: number;
  dim: number;
  scale: number;
  /** 0 = off. */
  softcap: number;
  work: WorkList;
}

export interface ForwardJob extends JobShape {
  /** Token-major inputs: q [Tq, Hq, D], k and v [Tk, Hkv, D]. */
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  /** [Tq, Hq, D], written for rows the work list covers (the caller zeroes the rest). */
  out: Float32Array;
  /** [Tq, Hq], written for rows the work list covers (the caller sets the rest to -inf). */
  lse: Float64Array;
  /** [Hq], max-merged. */
  maxLogits: Float64Array;
}

export interface BackwardJob extends JobShape {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  dout: Float32Array;
  /** Final lse and Δ = Σ_d out·dout, [Tq, Hq]. */
  lse: Float64Array;
  delta: Float64Array;
  /** Zeroed by the caller; dq [Tq, Hq, D], dk and dv [Tk, Hkv, D]. */
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
}

export interface CpuEngine {
  /** For logs and benchmark tables, naming the build and the threads: 'typescript', 'wasm-relaxed-simd x2', 'wasm-simd x1', ... */
  readonly name: string;
  /** Threads one call uses (1 for the TypeScript engine). */
  readonly threads: number;
  /** The tiles its work list is cut into: q tiles of at most tileQ rows, k tiles of at most tileK keys. */
  readonly tileQ: number;
  readonly tileK: number;
  forward(job: ForwardJob): void;
  backward(job: BackwardJob): void;
}

/** The TypeScript engine: float64 tiles, one thread. */
export const typescriptEngine: CpuEngine = {
  name: 'typescript',
  threads: 1,
  tileQ: TILE_Q,
  tileK: TILE_K,
  forward(job) {
    const { tokensQ, tokensK, headsQ, headsKv, dim } = job;
    const group = headsQ / headsKv;
    const q = new Float32Array(group * tokensQ * dim);
    const k = new Float32Array(tokensK * dim);
    const v = new Float32Array(tokensK * dim);
    const out = new Float32Array(group * tokensQ * dim);
    const lse = new Float64Array(group * tokensQ);
    const finite = allFinite(job.q, job.k, job.v);
    for (let hk = 0; hk < headsKv; hk++) {
      gatherHeads(q, 0, job.q, tokensQ, headsQ, hk * group, group, dim);
      gatherHeads(k, 0, job.k, tokensK, headsKv, hk, 1, dim);
      gatherHeads(v, 0, job.v, tokensK, headsKv, hk, 1, dim);
      out.fill(0);
      lse.fill(-Infinity);
      const maxLogits = job.maxLogits.subarray(hk * group, (hk + 1) * group);
      forwardHead({ ...job, q, k, v, group, finite, out, lse, maxLogits });
      scatterHeads(job.out, out, 0, tokensQ, headsQ, hk * group, group, dim);
      scatterHeads(job.lse, lse, 0, tokensQ, headsQ, hk * group, group, 1);
    }
  },
  backward(job) {
    const { tokensQ, tokensK, headsQ, headsKv, dim } = job;
    const group = headsQ / headsKv;
    const q = new Float32Array(group * tokensQ * dim);
    const dout = new Float32Array(group * tokensQ * dim);
    const lse = new Float64Array(group * tokensQ);
    const delta = new Float64Array(group * tokensQ);
    const k = new Float32Array(tokensK * dim);
    const v = new Float32Array(tokensK * dim);
    const dq = new Float32Array(group * tokensQ * dim);
    const dk = new Float32Array(tokensK * dim);
    const dv = new Float32Array(tokensK * dim);
    const finite = allFinite(job.q, job.k, job.v, job.dout);
    for (let hk = 0; hk < headsKv; hk++) {
      const h0 = hk * group;
      gatherHeads(q, 0, job.q, tokensQ, headsQ, h0, group, dim);
      gatherHeads(dout, 0, job.dout, tokensQ, headsQ, h0, group, dim);
      gatherHeads(lse, 0, job.lse, tokensQ, headsQ, h0, group, 1);
      gatherHeads(delta, 0, job.delta, tokensQ, headsQ, h0, group, 1);
      gatherHeads(k, 0, job.k, tokensK, headsKv, hk, 1, dim);
      gatherHeads(v, 0, job.v, tokensK, headsKv, hk, 1, dim);
      dq.fill(0);
      dk.fill(0);
      dv.fill(0);
      backwardHead({ ...job, q, dout, lse, delta, k, v, group, finite, dq, dk, dv });
      scatterHeads(job.dq, dq, 0, tokensQ, headsQ, h0, group, dim);
      scatterHeads(job.dk, dk, 0, tokensK, headsKv, hk, 1, dim);
      scatterHeads(job.dv, dv, 0, tokensK, headsKv, hk, 1, dim);
    }
  },
};
