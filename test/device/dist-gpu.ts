/**
 * GPU checks of the distributed runtime (run on the GPU machine: node dist/test/device/dist-gpu.js
 * [--seed N] [--only NAME] [--json FILE]).
 *
 * 1. The collective battery of the device process group (cp ranks on one GPU): allToAllV with
 *    random counts (zero-length sends included), allGather(V), allReduce sum / max, broadcast,
 *    barrier, GroupCast / GroupReduce of random plans, against the same computation on the host;
 *    a rank that skips a collective times out naming it, ranks that disagree get a mismatch.
 * 2. undispatch(calcAttn(dispatch(x))) and the backward on DeviceTensors at cp 1, 2, 4 and 8
 *    ranks on one GPU equal single-GPU flexFlashAttn on the whole sequence: out, lse, max logits,
 *    dq, dk, dv, dsink (summed over ranks), on varlen-causal, varlen block-causal, sliding-window,
 *    overlapping-q and random masks, bfloat16, GQA 64:8 and 8:8, with sink and softcap, overlap
 *    degrees 0-4.
 *
 * Tolerances (both sides run the same bf16 kernels; the distributed result differs in the order
 * of float32 roundings: out/lse merged stage by stage, dq summed over stages, dk/dv summed over
 * ranks, and each rounded once to bfloat16): out, dq, dk, dv: |err| <= 2^-6·|ref| + 2^-8·max|ref|
 * (two bfloat16 ulps, plus one relative to the tensor's scale for sums that cancel); lse and max
 * logits (float32): 1e-5·|ref| + 1e-5·max|ref|; dsink (float32 sums over ranks): 1e-4 of both.
 */
import { writeFileSync } from 'node:fs';
import { CommMismatchError, CommTimeoutError } from '../../src/comm/errors.js';
import { groupCast, groupReduce } from '../../src/comm/group-collective.js';
import { createLocalGroups } from '../../src/comm/local-group.js';
import { DeviceTensor, deviceArrayOf, runLocalDeviceRanks, deviceGroupCast, deviceGroupReduceSum, type CudaDevice, type LocalDeviceGroup } from '../../src/device/index.js';
import type { DType } from '../../src/dtype.js';
import { flexFlashAttn, flexFlashAttnBackward } from '../../src/kernels/flex-flash-attn.js';
import { compareClose, SIXTEEN_BIT_RUN_TOLERANCES } from '../../src/kernels/tolerance.js';
import { blockCausalMask, cuSeqlensFromLengths, sampleDocLengths, slidingWindowMask, varlenCausalMask } from '../../src/mask/helpers.js';
import type { SliceList } from '../../src/mask/slice-list.js';
import { calcAttn, calcAttnBackward, dispatch, magiAttnFlexKey, undispatch } from '../../src/runtime/index.js';
import { planDistAttn } from '../../src/solver/solve.js';
import { Tensor } from '../../src/tensor.js';
import type { Rng } from '../../src/util/rng.js';
import { randomMask } from '../util/solver-masks.js';
import { openDevice, randomTensor, scriptArgs, Tally } from './common.js';

const args = scriptArgs();
const dev = openDevice();
const tally = new Tally();
const results: Array<Record<string, unknown>> = [];

const TOL = SIXTEEN_BIT_RUN_TOLERANCES;

const up = (t: Tensor): DeviceTensor => DeviceTensor.fromHost(dev, t);

// ---------------------------------------------------------------------------------------------
// 1. Collective battery

async function battery(): Promise<void> {
  for (const P of [1, 2, 3, 4, 8]) {
    const name = `collectives cp ${P}`;
    if (!args.selects(name)) continue;
    try {
      const rng = args.rng;
      // Per-rank random counts (some 0) and data, the same on the host and on the device.
      const counts = Array.from({ length: P }, () => Array.from({ length: P }, () => (rng.next() < 0.2 ? 0 : rng.int(1, 700))));
      const sends = counts.map((row, r) => Float32Array.from({ length: row.reduce((a, b) => a + b, 0) }, (_, i) => r * 1e4 + i + 0.5));
      const reduceData = Array.from({ length: P }, (_, r) => Float32Array.from({ length: 5000 }, (_, i) => Math.sin(r * 7 + i) * 3));
      const hostGroups = createLocalGroups(P);
      const want = await Promise.all(
        hostGroups.map(async (g, r) => {
          const recvCounts = counts.map((row) => row[r]);
          const recv = new Float32Array(recvCounts.reduce((a, b) => a + b, 0));
          await g.allToAllV(sends[r], counts[r], recv, recvCounts);
          const gathered = new Float32Array(5000 * P);
          await g.allGather(reduceData[r], gathered);
          const sum = reduceData[r].slice();
          await g.allReduce(sum, 'sum');
          const max = reduceData[r].slice();
          await g.allReduce(max, 'max');
          const b = r === P - 1 ? reduceData[r].slice() : new Float32Array(5000);
          await g.broadcast(b, P - 1);
          return { recv, gathered, sum, max, b };
        }),
      );
      const got = await runLocalDeviceRanks(dev, P, async (g) => {
        const r = g.rank;
        const recvCounts = counts.map((row) => row[r]);
        const send = up(Tensor.fromValues('float32', [sends[r].length], sends[r]));
        const recv = DeviceTensor.empty(dev, 'float32', [recvCounts.reduce((a, b) => a + b, 0)]);
        await g.allToAllV(deviceArrayOf(send), counts[r], deviceArrayOf(recv), recvCounts);
        const data = up(Tensor.fromValues('float32', [5000], reduceData[r]));
        const gathered = DeviceTensor.empty(dev, 'float32', [5000 * P]);
        await g.allGather(deviceArrayOf(data), deviceArrayOf(gathered));
        const sum = up(Tensor.fromValues('float32', [5000], reduceData[r]));
        await g.allReduce(deviceArrayOf(sum), 'sum');
        const max = up(Tensor.fromValues('float32', [5000], reduceData[r]));
        await g.allReduce(deviceArrayOf(max), 'max');
        const b = up(r === P - 1 ? Tensor.fromValues('float32', [5000], reduceData[r]) : Tensor.zeros('float32', [5000]));
        await g.broadcast(deviceArrayOf(b), P - 1);
        await g.barrier();
        g.stream.synchronize();
        return { recv: recv.toHost(), gathered: gathered.toHost(), sum: sum.toHost(), max: max.toHost(), b: b.toHost() };
      });
      let ok = true;
      const bad: string[] = [];
      got.forEach((x, r) => {
        for (const k of ['recv', 'gathered', 'sum', 'max', 'b'] as const) {
          const a = Array.from(x[k].toFloat32());
          const e = Array.from(want[r][k]);
          if (a.length !== e.length || a.some((v, i) => v !== e[i])) {
            ok = false;
            bad.push(`rank ${r} ${k}`);
          }
        }
      });
      tally.record(ok, `${name}: allToAllV (zero counts too), allGather, allReduce sum/max, broadcast, barrier bit-identical to the host${ok ? '' : `: ${bad.join(', ')}`}`);

      // GroupCast / GroupReduce(sum) of a random plan's stages, against the host collectives.
      if (P > 1) {
        const n = 480;
        const plan = planDistAttn({ mask: randomMask(rng, 'varlen-causal', n), totalSeqlenQ: n, cpSize: P, overlapConfig: { degree: 2, minChunkSize: 8 } });
        const w = 6;
        const inputs = plan.perRank.map((rp) => Float32Array.from({ length: plan.dispatch.shardSeqlen * w }, (_, i) => rp.rank * 1e5 + i));
        const hg = createLocalGroups(P);
        const hostOut = await Promise.all(
          hg.map(async (g, r) => {
            const outs: Float32Array[] = [];
            for (const st of plan.perRank[r].stages) {
              const cast = (await groupCast(g, inputs[r], st.groupCast, w)) as Float32Array;
              const acc = Float32Array.from(inputs[r]);
              await groupReduce(g, cast.map((x) => x * 0.5), acc, st.groupReduce, 'sum', { rowWidth: w });
              outs.push(cast, acc);
            }
            return outs;
          }),
        );
        const devOut = await runLocalDeviceRanks(dev, P, async (g) => {
          const r = g.rank;
          const outs: Tensor[] = [];
          const input = up(Tensor.fromValues('float32', [plan.dispatch.shardSeqlen, w], inputs[r]));
          for (const st of plan.perRank[r].stages) {
            const cast = DeviceTensor.empty(dev, 'float32', [st.stageBufferLength, w]);
            await deviceGroupCast(g, input, st.groupCast, cast);
            g.stream.synchronize();
            const half = up(Tensor.fromValues('float32', [st.stageBufferLength, w], cast.toHost().toFloat32().map((x) => x * 0.5)));
            const acc = up(Tensor.fromValues('float32', [plan.dispatch.shardSeqlen, w], inputs[r]));
            await deviceGroupReduceSum(g, half, acc, st.groupReduce);
            g.stream.synchronize();
            outs.push(cast.toHost(), acc.toHost());
          }
          return outs;
        });
        let same = true;
        devOut.forEach((outs, r) => outs.forEach((t, i) => (same &&= Array.from(t.toFloat32()).every((v, j) => v === hostOut[r][i][j]))));
        tally.record(same, `${name}: GroupCast / GroupReduce(sum) of ${plan.overlapDegree} stages bit-identical to the host collectives`);
      }

      if (P >= 2) {
        // A rank that skips a collective: the others time out naming it.
        const res = await runLocalDeviceRanks(
          dev,
          P,
          async (g) => {
            if (g.rank === P - 1) return 'away';
            try {
              await g.barrier();
              return 'completed without the last rank';
            } catch (e) {
              return e instanceof CommTimeoutError ? `timeout missing ${e.missingRanks.join(',')}` : String(e);
            }
          },
          { timeoutMs: 300 },
        );
        tally.record(res.slice(0, -1).every((x) => x === `timeout missing ${P - 1}`), `${name}: a skipped barrier times out naming rank ${P - 1} (${res[0]})`);
        const mism = await runLocalDeviceRanks(dev, P, async (g) => {
          const a = DeviceTensor.empty(dev, 'float32', [g.rank === 0 ? 3 : 4]);
          try {
            await g.allGather(deviceArrayOf(a), deviceArrayOf(DeviceTensor.empty(dev, 'float32', [a.size * P])));
            return 'no error';
          } catch (e) {
            return e instanceof CommMismatchError ? 'mismatch' : String(e);
          }
        });
        tally.record(mism.some((x) => x === 'mismatch'), `${name}: ranks that disagree on a count get a CommMismatchError, not a hang`);
      }
    } catch (e) {
      tally.threw(name, e);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 2. calcAttn on DeviceTensors vs single-GPU flexFlashAttn

interface DistCase {
  name: string;
  cp: number;
  n: number;
  headsQ: number;
  headsKv: number;
  degree: number;
  sink: number;
  softcap: number;
  mask: (rng: Rng, n: number) => SliceList;
}

const docs = (rng: Rng, n: number): number[] => cuSeqlensFromLengths(sampleDocLengths(n, rng));
const MASKS: Record<string, DistCase['mask']> = {
  'varlen-causal': (rng, n) => varlenCausalMask(docs(rng, n)),
  'varlen-block-causal': (rng, n) => blockCausalMask(docs(rng, n), 256),
  'sliding-window': (_rng, n) => slidingWindowMask(n, [512, 0]),
  'overlapping-q': (rng, n) => randomMask(rng, 'overlapping', n),
  random: (rng, n) => randomMask(rng, 'random-slices', n),
};

function distCases(): DistCase[] {
  const cases: DistCase[] = [];
  const names = Object.keys(MASKS);
  const cps = [1, 2, 4, 8];
  const heads: Array<[number, number]> = [
    [64, 8],
    [8, 8],
  ];
  let i = 0;
  for (const cp of cps) {
    for (const m of names) {
      const [hq, hkv] = heads[i % 2];
      const degree = cp === 1 ? 1 : i % 5;
      const sink = i % 3 === 0 ? 2 : 0;
      const softcap = i % 4 === 1 ? 30 : 0;
      const n = 4096;
      cases.push({ name: `cp ${cp} ${m} ${hq}:${hkv} degree ${degree} sink ${sink} softcap ${softcap} n ${n}`, cp, n, headsQ: hq, headsKv: hkv, degree, sink, softcap, mask: MASKS[m] });
      i++;
    }
  }
  return cases;
}

async function distCase(c: DistCase, device: CudaDevice): Promise<void> {
  const rng = args.rng;
  const mask = c.mask(rng, c.n);
  const dtype: DType = 'bfloat16';
  const D = 128;
  const q = randomTensor(rng, dtype, [c.n, c.headsQ, D], 2);
  const k = randomTensor(rng, dtype, [c.n, c.headsKv, D], 1);
  const v = randomTensor(rng, dtype, [c.n, c.headsKv, D], 1);
  const dout = randomTensor(rng, dtype, [c.n, c.headsQ, D], 1);
  const sink = c.sink > 0 ? randomTensor(rng, 'float32', [c.sink, c.headsQ], 1) : undefined;
  const [gq, gk, gv, gdout] = [q, k, v, dout].map(up);
  const gsink = sink === undefined ? undefined : up(sink);

  // Single GPU, whole sequence.
  const opts = { ...mask, softcap: c.softcap, ...(gsink === undefined ? {} : { sink: gsink }) };
  const ref = flexFlashAttn(gq, gk, gv, { ...opts, returnMaxLogits: true });

  const t0 = performance.now();
  const per = await runLocalDeviceRanks(device, c.cp, async (group: LocalDeviceGroup) => {
    const key = magiAttnFlexKey({ ...mask, totalSeqlenQ: c.n, numHeadsQ: c.headsQ, numHeadsKv: c.headsKv, headDim: D, group, overlapConfig: { degree: c.degree, minChunkSize: 256 } });
    const [lq, lk, lv, ld] = [gq, gk, gv, gdout].map((x) => dispatch(x, key));
    const run = { softcap: c.softcap, ...(gsink === undefined ? {} : { sink: gsink }) };
    const fwd = await calcAttn(lq, lk, lv, key, { ...run, returnMaxLogits: true });
    const g = await calcAttnBackward(ld, lq, lk, lv, fwd.out, fwd.lse, key, { ...run, dsinkReduce: 'sum' });
    const full = {
      out: await undispatch(fwd.out, key),
      lse: await undispatch(fwd.lse, key),
      dq: await undispatch(g.dq, key),
      dk: await undispatch(g.dk, key),
      dv: await undispatch(g.dv, key),
    };
    return { full, maxLogits: fwd.maxLogits, dsink: g.dsink, stages: key.plan.overlapDegree };
  });
  const ms = performance.now() - t0;
  const r0 = per[0];
  // The reference backward gets the distributed out and lse, as a user's backward would.
  const refG = flexFlashAttnBackward(gdout, gq, gk, gv, r0.full.out, r0.full.lse, opts);
  const checks = [
    compareClose(r0.full.out.toHost(), ref.out.toHost(), TOL.out, 'out'),
    compareClose(r0.full.lse.toHost(), ref.lse.toHost(), TOL.lse, 'lse'),
    compareClose((r0.maxLogits as DeviceTensor).toHost(), (ref.maxLogits as DeviceTensor).toHost(), TOL.maxLogits, 'maxLogits'),
    compareClose(r0.full.dq.toHost(), refG.dq.toHost(), TOL.grad, 'dq'),
    compareClose(r0.full.dk.toHost(), refG.dk.toHost(), TOL.grad, 'dk'),
    compareClose(r0.full.dv.toHost(), refG.dv.toHost(), TOL.grad, 'dv'),
  ];
  if (gsink !== undefined) checks.push(compareClose((r0.dsink as DeviceTensor).toHost(), (refG.dsink as DeviceTensor).toHost(), TOL.dsink, 'dsink'));
  // Every rank undispatches the same full tensors.
  const sameOnAll = per.every((p) => sameTensor(p.full.out, r0.full.out) && sameTensor(p.full.dk, r0.full.dk));
  const ok = checks.every((x) => x.ok) && sameOnAll;
  results.push({ case: c.name, stages: r0.stages, ms, checks: checks.map((x) => ({ ok: x.ok, worstRatio: x.worstRatio })), sameOnAll });
  tally.record(ok, `${c.name} (${r0.stages} stages): ${checks.map((x) => x.message).join('; ')}${sameOnAll ? '' : '; ranks disagree on the undispatched tensors'}`);
  for (const p of per) {
    for (const t of [p.full.out, p.full.lse, p.full.dq, p.full.dk, p.full.dv, p.maxLogits, p.dsink]) t?.free();
  }
  for (const t of [gq, gk, gv, gdout, gsink, ref.out, ref.lse, ref.maxLogits, refG.dq, refG.dk, refG.dv, refG.dsink]) t?.free();
}

function sameTensor(a: DeviceTensor, b: DeviceTensor): boolean {
  const x = a.toHost().data;
  const y = b.toHost().data;
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

await battery();
for (const c of distCases()) {
  if (!args.selects(c.name)) continue;
  try {
    await distCase(c, dev);
  } catch (e) {
    tally.threw(c.name, e);
  }
}
const json = args.value('--json', '');
if (json !== '') writeFileSync(json, JSON.stringify({ seed: args.seed, device: dev.name, results }, null, 1));
tally.exit();
