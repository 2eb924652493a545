/**
 * Host overhead of the GPU flex-flash-attention entry points (issue 11, item 4): the host time of
 * one `flexFlashAttn` / `flexFlashAttnBackward` call on DeviceTensors, from the call to the return
 * of its last launch (the kernels run asynchronously; the device is synchronized between calls
 * and outside the timed region), for a 1M-token varlen-causal mask of 2,000 documents (uniform
 * random cuts, seed 7), 8 q heads : 1 kv head, D 128, bf16. An untimed first call compiles the
 * modules and plans the mask (work lists, uploads, scratch); the timed calls then repeat the mask
 * (the backward's with fresh arrays of equal contents), hit the backend's problem cache and the
 * TMA-map cache, and only validate, look up and launch. `firstMs` is the first timed call (the
 * first after planning, still paying first-use costs such as result allocations).
 *
 *   source .device/boot.sh && node dist/bench/kernel/host-overhead.js [--out DIR | --update-results] [--calls 20]
 *
 * Prints the first call's and the median / max of the repeated calls' host times, and writes
 * DIR/host-overhead.json (DIR: bench/out, or bench/results with --update-results).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { flexFlashAttn, flexFlashAttnBackward } from '../../src/kernels/flex-flash-attn.js';
import { CudaDevice, DeviceTensor } from '../../src/device/index.js';
import { varlenCausalMask } from '../../src/mask/index.js';
import { Rng } from '../../src/util/rng.js';
import { median } from '../../src/util/stats.js';
import { COMMITTED_RESULTS_DIR, SCRATCH_RESULTS_DIR } from '../output.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
const N = 1 << 20;
const DOCS = 2000;
const HQ = 8;
const HKV = 1;
const D = 128;
const calls = Number(opt('--calls', '20'));

const rng = new Rng(7);
const cuts = new Set<number>();
while (cuts.size < DOCS - 1) cuts.add(rng.int(1, N - 1));
const cu = [0, ...[...cuts].sort((a, b) => a - b), N];
const mask = varlenCausalMask(cu);

const dev = CudaDevice.open(0);
const tensor = (heads: number, fill: number): DeviceTensor => {
  const t = DeviceTensor.empty(dev, 'bfloat16', [N, heads, D]);
  t.buffer.fill(fill); // bf16 bits 0x3c3c / 0x3d3d...: finite, non-zero values
  return t;
};
const [q, k, v, dout] = [tensor(HQ, 0x3c), tensor(HKV, 0x3d), tensor(HKV, 0x3b), tensor(HQ, 0x3a)];
const options = { qRanges: mask.qRanges, kRanges: mask.kRanges, maskTypes: mask.maskTypes };

function timeCalls(run: () => { free(): void }): { firstMs: number; medianMs: number; maxMs: number } {
  const times: number[] = [];
  for (let i = 0; i <= calls; i++) {
    dev.synchronize();
    const t0 = performance.now();
    const r = run();
    times.push(performance.now() - t0);
    dev.synchronize();
    r.free();
  }
  const rest = times.slice(1).sort((a, b) => a - b);
  return { firstMs: times[0], medianMs: median(rest), maxMs: rest[rest.length - 1] };
}

// the forward's out / lse for the backward (and one forward to compile the modules: untimed)
const f0 = flexFlashAttn(q, k, v, options);
const fwd = timeCalls(() => {
  const r = flexFlashAttn(q, k, v, { ...options });
  return { free: () => [r.out, r.lse].forEach((t) => t.free()) };
});
const b0 = flexFlashAttnBackward(dout, q, k, v, f0.out, f0.lse, options);
[b0.dq, b0.dk, b0.dv].forEach((t) => t.free());
// a fresh mask object with equal contents: the cache is keyed by contents, not identity
const bwd = timeCalls(() => {
  const r = flexFlashAttnBackward(dout, q, k, v, f0.out, f0.lse, { qRanges: mask.qRanges.slice(), kRanges: mask.kRanges.slice(), maskTypes: mask.maskTypes.slice() });
  return { free: () => [r.dq, r.dk, r.dv].forEach((t) => t.free()) };
});
const line = (name: string, t: { firstMs: number; medianMs: number; maxMs: number }): string =>
  `${name}: first timed call ${t.firstMs.toFixed(2)} ms, repeated mask median ${t.medianMs.toFixed(3)} ms, max ${t.maxMs.toFixed(3)} ms over ${calls} calls`;
console.log(`host overhead on ${dev.name}, ${N} tokens, ${DOCS} documents (varlen causal), ${HQ}:${HKV} heads, D ${D}, bf16`);
console.log(line('flexFlashAttn', fwd));
console.log(line('flexFlashAttnBackward', bwd));
const outDir = opt('--out', argv.includes('--update-results') ? COMMITTED_RESULTS_DIR : SCRATCH_RESULTS_DIR);
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'host-overhead.json'), JSON.stringify({ gpu: dev.name, tokens: N, documents: DOCS, headsQ: HQ, headsKv: HKV, dim: D, calls, forward: fwd, backward: bwd }, null, 1) + '\n');
for (const t of [q, k, v, dout, f0.out, f0.lse]) t.free();
dev.close();
