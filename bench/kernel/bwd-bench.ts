/**
 * What the backward benches beside bench:kernel share (det-speed.ts, bwd-walk.ts, bwd-trace.ts):
 * opening the device, the problem's device buffers with random inputs and the forward's out / lse,
 * the fp32 sums of one main launch, how two such sums must agree, and the process exit.
 */
import type { CudaDevice, DeviceBuffer } from '../../src/device/device.js';
import type { FfaBackwardBuffers, FfaBackwardProblem, FfaBackwardShape } from '../../src/kernels/cuda/ffa-backward.js';
import type { CudaFfaForward } from '../../src/kernels/cuda/ffa-forward.js';
import type { SliceList } from '../../src/mask/slice-list.js';
import { randomDeviceTensor } from './inputs.js';

/** bf16 buffers of one [S, Hq | Hkv, D] backward problem: q, k, v, dout random (seeds 1-4, as bench:kernel), the rest allocated. */
export async function backwardBuffers(dev: CudaDevice, S: number, headsQ: number, headsKv: number, dim: number): Promise<FfaBackwardBuffers & { free(): void }> {
  const [q, k, v, dout] = await Promise.all([
    randomDeviceTensor(dev, [S, headsQ, dim], 1),
    randomDeviceTensor(dev, [S, headsKv, dim], 2),
    randomDeviceTensor(dev, [S, headsKv, dim], 3),
    randomDeviceTensor(dev, [S, headsQ, dim], 4),
  ]);
  const bufs = {
    q: q.buffer, k: k.buffer, v: v.buffer, dout: dout.buffer,
    out: dev.alloc(S * headsQ * dim * 2), lse: dev.alloc(S * headsQ * 4),
    dq: dev.alloc(S * headsQ * dim * 2), dk: dev.alloc(S * headsKv * dim * 2), dv: dev.alloc(S * headsKv * dim * 2),
  };
  return { ...bufs, free: () => Object.values(bufs).forEach((b: DeviceBuffer) => b.free()) };
}

/**
 * What a backward bench opens first: device 0 (a line naming it and the problem printed, with
 * `name`), the bf16 buffers of the [S, Hq | Hkv, D] problem (backwardBuffers) and a forward to
 * fill out / lse (forwardInto). Imported lazily, so that a bench's --help runs without a driver.
 */
export async function openBackwardBench(name: string, S: number, headsQ: number, headsKv: number, dim: number) {
  const { CudaDevice } = await import('../../src/device/index.js');
  const { CudaFfaForward } = await import('../../src/kernels/cuda/ffa-forward.js');
  const dev = CudaDevice.open(0);
  console.log(`${name} on ${dev.name} (${dev.smCount} SMs), ${S} tokens, ${headsQ}:${headsKv} heads, D ${dim}, bf16`);
  const bufs = await backwardBuffers(dev, S, headsQ, headsKv, dim);
  return { dev, bufs, fwd: new CudaFfaForward(dev) };
}

/** The fp32 dq, dk, dv sums of one main launch (pre-pass, zeroing, main kernel: no conversion). */
export function backwardSums(p: FfaBackwardProblem, bufs: FfaBackwardBuffers, scale: number, deterministic = false): Float32Array[] {
  p.launchMain(bufs, scale, 0, undefined, { deterministic });
  return [p.dqAcc, p.dkAcc, p.dvAcc].map((b: DeviceBuffer) => {
    const u = b.download(new Uint8Array(b.bytes));
    return new Float32Array(u.buffer, u.byteOffset, u.byteLength / 4);
  });
}

/** Whether two runs' sums are bit-identical. */
export function sameBits(a: Float32Array[], b: Float32Array[]): boolean {
  return a.every((x, i) => Buffer.compare(Buffer.from(x.buffer, x.byteOffset, x.byteLength), Buffer.from(b[i].buffer, b[i].byteOffset, b[i].byteLength)) === 0);
}

/**
 * `got` against `ref` per tensor (dq, dk, dv): max |got − ref| within `tol` of max |ref| and no
 * NaN (the same fp32 adds in another order). One line per tensor: the relative error, NaN count, BAD.
 */
export function sumsAgree(got: Float32Array[], ref: Float32Array[], tol = 1e-3): { ok: boolean; line: string } {
  let ok = true;
  const parts = ['dq', 'dk', 'dv'].map((name, i) => {
    const x = got[i];
    const r = ref[i];
    let maxRef = 0;
    let maxDiff = 0;
    let nan = 0;
    for (let j = 0; j < r.length; j++) {
      if (Number.isNaN(x[j])) nan++;
      maxRef = Math.max(maxRef, Math.abs(r[j]));
      maxDiff = Math.max(maxDiff, Math.abs(x[j] - r[j]));
    }
    const good = nan === 0 && maxDiff <= tol * maxRef;
    ok &&= good;
    return `${name} ${(maxDiff / (maxRef || 1)).toExponential(1)}${nan > 0 ? ` ${nan} NaN` : ''}${good ? '' : ' BAD'}`;
  });
  return { ok, line: parts.join(' ') };
}

/** Runs a bench's main and exits with its code (1 on a throw, printed). */
export function exitWith(main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}

/** The bf16 self-attention shape of S tokens, Hq : Hkv heads, head dim D that the backward benches time. */
export function benchShape(S: number, headsQ: number, headsKv: number, dim: number): FfaBackwardShape {
  return { tokensQ: S, tokensK: S, headsQ, headsKv, dim, dtype: 'bfloat16' };
}

/** Backward TFLOP/s as bench:kernel counts them: 2.5 · 4 · mask area · Hq · D over `ms`. */
export function backwardTflops(area: number, headsQ: number, dim: number, ms: number): number {
  return (2.5 * 4 * area * headsQ * dim) / (ms * 1e-3) / 1e12;
}

/** out and lse of the mask in `bufs` (the backward's inputs), from one forward launch. */
export function forwardInto(fwd: CudaFfaForward, shape: FfaBackwardShape, slices: SliceList, bufs: FfaBackwardBuffers, scale: number): void {
  const fp = fwd.prepare(shape, slices);
  fp.launch(bufs.q, bufs.k, bufs.v, bufs.out, bufs.lse, scale);
  fp.free();
}
