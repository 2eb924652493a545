/**
 * EXPERIMENT (issue 11; removed with FFA_SM90_FWD_PERSISTENT once measured): the persistent Hopper
 * forward against the kernel as it is (one block per work item), on bench:kernel's masks and
 * inputs: 64:8 heads, D 128, bf16, N(0, 1) inputs drawn on the device, masks from
 * bench/kernel/masks.ts (documents from the bench's seed), timed as bench:kernel times ours
 * (timeLaunches: CUDA events around each launch, median after warm-up). Per mask the default
 * kernel is timed first and again last, to show the drift between the two readings.
 *
 * Before timing, the two kernels' outputs on the mask are compared: in the direct epilogue (q
 * ranges disjoint, every bench mask) each item runs the same arithmetic in both, so out and lse
 * must be bit-identical; a difference fails the run (exit code 1). This is the persistent kernel's
 * check at full size, where every block walks ~60 items (the GPU checks run small cases).
 *
 *   node dist/bench/kernel/fwd-persist.js [--seqlen 16384] [--masks full,causal,...] [--seed 42]
 *        [--iters 20] [--warmup 5] [--json FILE]
 */
import { writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { CudaDevice } from '../../src/device/index.js';
import { CudaFfaForward } from '../../src/kernels/cuda/ffa-forward.js';
import { buildMask, MASK_NAMES, type MaskName } from './masks.js';
import { randomDeviceTensor } from './inputs.js';
import { timeLaunches } from './timing.js';

const HQ = 64;
const HKV = 8;
const DIM = 128;
const DEFAULT_MASKS: readonly MaskName[] = ['full', 'causal', 'varlen_causal', 'sw_causal', 'varlen_block_causal'];

const cli = new Command()
  .option('--seqlen <n>', 'tokens', '16384')
  .option('--masks <list>', `comma-separated, of ${MASK_NAMES.join(', ')}`, DEFAULT_MASKS.join(','))
  .option('--seed <n>', 'documents of the varlen masks (bench:kernel default)', '42')
  .option('--iters <n>', 'timed launches', '20')
  .option('--warmup <n>', 'warm-up launches', '5')
  .option('--json <file>', 'write the results here')
  .parse();
const o = cli.opts<{ seqlen: string; masks: string; seed: string; iters: string; warmup: string; json?: string }>();
const S = Number(o.seqlen);
const iters = Number(o.iters);
const warmup = Number(o.warmup);
const masks = o.masks.split(',') as MaskName[];
for (const m of masks) if (!MASK_NAMES.includes(m)) throw new Error(`--masks: unknown mask ${m} (one of ${MASK_NAMES.join(', ')})`);

const dev = CudaDevice.open(0);
const variants = [
  ['default', new CudaFfaForward(dev, { kernel: 'sm90', sm90: { persistent: false } })],
  ['persistent', new CudaFfaForward(dev, { kernel: 'sm90', sm90: { persistent: true } })],
] as const;
console.log(`${dev.name} (${dev.smCount} SMs): Hopper forward, one block per work item vs persistent; S ${S}, ${HQ}:${HKV} heads, D ${DIM}, bf16; median of ${iters} after ${warmup} warm-ups`);
const [q, k, v] = (await Promise.all([randomDeviceTensor(dev, [S, HQ, DIM], 1), randomDeviceTensor(dev, [S, HKV, DIM], 2), randomDeviceTensor(dev, [S, HKV, DIM], 3)])).map((t) => t.buffer);
const outs = variants.map(() => ({ out: dev.alloc(S * HQ * DIM * 2), lse: dev.alloc(S * HQ * 4) }));
const scale = 1 / Math.sqrt(DIM);

interface Row {
  mask: MaskName;
  seqlen: number;
  workItems: number;
  merge: boolean;
  /** out and lse of the two kernels bit-identical (direct epilogue), or the count of differing elements. */
  identical: boolean;
  differing: number;
  ms: Record<string, number>;
  tflops: Record<string, number>;
}
const rows: Row[] = [];
let failed = false;
for (const name of masks) {
  const m = buildMask(name, S, Number(o.seed));
  const shape = { tokensQ: S, tokensK: S, headsQ: HQ, headsKv: HKV, dim: DIM, dtype: 'bfloat16' as const };
  const problems = variants.map(([, f]) => f.prepare(shape, m.slices));
  const flops = 4 * m.area * HQ * DIM;
  // the outputs, poisoned first, then compared bit for bit
  problems.forEach((p, i) => {
    outs[i].out.fill(0xff);
    outs[i].lse.fill(0xff);
    p.launch(q, k, v, outs[i].out, outs[i].lse, scale);
  });
  dev.synchronize();
  const got = outs.map((b) => ({ out: b.out.download(new Uint16Array(S * HQ * DIM)), lse: b.lse.download(new Uint32Array(S * HQ)) }));
  let differing = 0;
  for (let i = 0; i < got[0].out.length; i++) if (got[0].out[i] !== got[1].out[i]) differing++;
  for (let i = 0; i < got[0].lse.length; i++) if (got[0].lse[i] !== got[1].lse[i]) differing++;
  const merge = problems[0].merge;
  // the direct epilogue must match bit for bit; the merge one may merge in another order
  if (differing > 0 && !merge) failed = true;
  const row: Row = { mask: name, seqlen: S, workItems: problems[0].plan.numWork, merge, identical: differing === 0, differing, ms: {}, tflops: {} };
  for (const [label, i] of [['default', 0], ['persistent', 1], ['default again', 0]] as const) {
    const t = timeLaunches(dev, () => problems[i].launch(q, k, v, outs[i].out, outs[i].lse, scale), iters, warmup);
    row.ms[label] = t.ms;
    row.tflops[label] = flops / (t.ms * 1e-3) / 1e12;
  }
  for (const p of problems) p.free();
  rows.push(row);
  console.log(
    `${name} S=${S}: ${row.workItems} items x ${HQ} heads, ${merge ? 'merge' : 'direct'}, outputs ${differing === 0 ? 'bit-identical' : `DIFFER in ${differing} elements`}; ` +
      Object.entries(row.ms).map(([l, ms]) => `${l} ${ms.toFixed(3)} ms ${row.tflops[l].toFixed(0)} TFLOP/s`).join(' | '),
  );
}

console.log('\n| mask | default | persistent | default again | persistent / default | outputs |');
console.log('|---|--:|--:|--:|--:|---|');
for (const r of rows) {
  const base = (r.tflops['default'] + r.tflops['default again']) / 2;
  console.log(
    `| ${r.mask} ${r.seqlen} | ${r.tflops['default'].toFixed(0)} | ${r.tflops['persistent'].toFixed(0)} | ${r.tflops['default again'].toFixed(0)} | ${(r.tflops['persistent'] / base).toFixed(3)} | ${r.identical ? 'identical' : `${r.differing} differ`} |`,
  );
}
console.log('TFLOP/s = 4 · area · Hq · D / median time; the ratio is over the mean of the two default readings');
if (o.json !== undefined) {
  writeFileSync(
    o.json,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        gpu: dev.name,
        smCount: dev.smCount,
        node: process.version,
        what: 'Hopper forward: one block per work item (default) vs persistent (FFA_SM90_FWD_PERSISTENT=1), TFLOP/s of the main launch path (CudaFfaForward problem.launch), bench:kernel masks and inputs',
        settings: { headsQ: HQ, headsKv: HKV, dim: DIM, dtype: 'bfloat16', seed: Number(o.seed), iters, warmup },
        rows,
      },
      null,
      2,
    ),
  );
}
for (const b of [q, k, v, ...outs.flatMap((x) => [x.out, x.lse])]) b.free();
dev.close();
if (failed) {
  console.log('FAIL: the persistent kernel\'s direct-epilogue output differs from the default kernel\'s');
  process.exit(1);
}
