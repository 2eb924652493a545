/**
 * Rank script for the NCCL checks on the GPU machine (started by the launcher:
 * `magi-attn run --gpus N dist/test/device/nccl-rank.js [fail]`). On the NCCL group: every
 * collective on device buffers against the same collective of an in-process host group fed the
 * same data (all ranks compute the host side for every rank, so no host traffic is needed), then
 * calcAttn / calcAttnBackward on DeviceTensors over NCCL against single-GPU flexFlashAttn.
 * With `fail`, the last rank throws after the first barrier (the launcher must name it).
 */
import { createLocalGroups } from '../../src/comm/local-group.js';
import type { NcclProcessGroup } from '../../src/comm/device/nccl-group.js';
import { DeviceTensor, deviceArrayOf } from '../../src/device/index.js';
import { flexFlashAttn, flexFlashAttnBackward } from '../../src/kernels/flex-flash-attn.js';
import { compareClose, SIXTEEN_BIT_RUN_TOLERANCES } from '../../src/kernels/tolerance.js';
import { cuSeqlensFromLengths, sampleDocLengths, varlenCausalMask } from '../../src/mask/helpers.js';
import { calcAttn, calcAttnBackward, dispatch, magiAttnFlexKey, undispatch } from '../../src/runtime/index.js';
import { Tensor } from '../../src/tensor.js';
import { Rng } from '../../src/util/rng.js';

export default async function main(group: NcclProcessGroup, [mode]: string[]): Promise<unknown> {
  const P = group.size;
  const me = group.rank;
  const dev = group.device;
  const lines: string[] = [];
  let failures = 0;
  const record = (ok: boolean, line: string): void => {
    if (!ok) failures++;
    lines.push(`${ok ? 'PASS' : 'FAIL'} ${line}`);
  };
  await group.barrier();
  if (mode === 'fail' && me === P - 1) throw new Error(`rank ${me} fails on purpose after the first barrier`);

  // Same data on every rank: rank r's inputs are drawn from seed 100 + r.
  const counts = Array.from({ length: P }, (_, s) => Array.from({ length: P }, (_, r) => ((s * 7 + r * 3) % 5) * 111));
  const sendOf = (r: number): Float32Array => Float32Array.from({ length: counts[r].reduce((a, b) => a + b, 0) }, (_, i) => r * 1e4 + i + 0.25);
  const dataOf = (r: number): Float32Array => Float32Array.from({ length: 3000 }, (_, i) => Math.sin(r * 13 + i));
  const host = await Promise.all(
    createLocalGroups(P).map(async (g, r) => {
      const rc = counts.map((row) => row[r]);
      const recv = new Float32Array(rc.reduce((a, b) => a + b, 0));
      await g.allToAllV(sendOf(r), counts[r], recv, rc);
      const gathered = new Float32Array(3000 * P);
      await g.allGather(dataOf(r), gathered);
      const sum = dataOf(r);
      await g.allReduce(sum, 'sum');
      const max = dataOf(r);
      await g.allReduce(max, 'max');
      const b = r === 0 ? dataOf(0) : new Float32Array(3000);
      await g.broadcast(b, 0);
      return { recv, gathered, sum, max, b };
    }),
  );
  const up = (a: Float32Array): DeviceTensor => DeviceTensor.fromHost(dev, Tensor.fromValues('float32', [a.length], a));
  const rc = counts.map((row) => row[me]);
  const recv = DeviceTensor.empty(dev, 'float32', [rc.reduce((a, b) => a + b, 0)]);
  await group.allToAllV(deviceArrayOf(up(sendOf(me))), counts[me], deviceArrayOf(recv), rc);
  const gathered = DeviceTensor.empty(dev, 'float32', [3000 * P]);
  await group.allGather(deviceArrayOf(up(dataOf(me))), deviceArrayOf(gathered));
  const sum = up(dataOf(me));
  await group.allReduce(deviceArrayOf(sum), 'sum');
  const max = up(dataOf(me));
  await group.allReduce(deviceArrayOf(max), 'max');
  const b = up(me === 0 ? dataOf(0) : new Float32Array(3000));
  await group.broadcast(deviceArrayOf(b), 0);
  group.stream.synchronize();
  const got = { recv, gathered, sum, max, b };
  for (const k of ['recv', 'gathered', 'sum', 'max', 'b'] as const) {
    const a = got[k].toHost().toFloat32();
    const e = host[me][k];
    // NCCL sums in its own order: sums get a float32 tolerance, everything else must be exact.
    const ok = a.length === e.length && a.every((v, i) => (k === 'sum' ? Math.abs(v - e[i]) <= 1e-5 * (1 + Math.abs(e[i])) : v === e[i]));
    record(ok, `nccl rank ${me}/${P} ${k}`);
  }

  // calcAttn over NCCL (bf16, 16:4 heads, D 128, varlen causal).
  const n = 4096;
  const rng = new Rng(42);
  const mask = varlenCausalMask(cuSeqlensFromLengths(sampleDocLengths(n, rng)));
  const randn = (h: number): DeviceTensor => DeviceTensor.fromHost(dev, Tensor.fromValues('bfloat16', [n, h, 128], rng.normals(n * h * 128)));
  const [q, k, v, dout] = [randn(16), randn(4), randn(4), randn(16)];
  const key = magiAttnFlexKey({ ...mask, totalSeqlenQ: n, numHeadsQ: 16, numHeadsKv: 4, headDim: 128, group, overlapConfig: { degree: 2, minChunkSize: 256 } });
  const [lq, lk, lv, ld] = [q, k, v, dout].map((x) => dispatch(x, key));
  const fwd = await calcAttn(lq, lk, lv, key);
  const g = await calcAttnBackward(ld, lq, lk, lv, fwd.out, fwd.lse, key);
  const out = await undispatch(fwd.out, key);
  const lse = await undispatch(fwd.lse, key);
  const dq = await undispatch(g.dq, key);
  const dk = await undispatch(g.dk, key);
  const ref = flexFlashAttn(q, k, v, mask);
  const refG = flexFlashAttnBackward(dout, q, k, v, out, lse, mask);
  const tol = SIXTEEN_BIT_RUN_TOLERANCES;
  for (const [name, a, e, t] of [
    ['out', out, ref.out, tol.out],
    ['lse', lse, ref.lse, tol.lse],
    ['dq', dq, refG.dq, tol.grad],
    ['dk', dk, refG.dk, tol.grad],
  ] as const) {
    const c = compareClose(a.toHost(), e.toHost(), t, name);
    record(c.ok, `nccl rank ${me}/${P} calcAttn ${c.message}`);
  }
  for (const l of lines) console.log(l);
  if (failures > 0) throw new Error(`${failures} NCCL checks failed on rank ${me}`);
  return { rank: me, ncclVersion: group.ncclVersion, checks: lines.length };
}
