/**
 * Rank script for the thread backend's failure and overlap tests; `args.mode` picks the scenario.
 */
import { CommMismatchError, CommTimeoutError } from '../../src/comm/errors.js';
import type { ProcessGroup } from '../../src/comm/process-group.js';
import { Tensor } from '../../src/tensor.js';

export type Scenario =
  | { mode: 'throw'; failRank: number }
  | { mode: 'throw-async'; failRank: number }
  | { mode: 'absent'; absentRank: number }
  | { mode: 'mismatch' }
  | { mode: 'overlap'; peerDelayMs: number; workMs: number }
  | { mode: 'exit'; exitRank: number }
  | { mode: 'stuck'; stuckRanks: number[] }
  | { mode: 'tensors'; x: Tensor; nested: { list: Tensor[] } };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function busy(ms: number): number {
  const end = performance.now() + ms;
  let x = 0;
  while (performance.now() < end) x += Math.sqrt(x + 1);
  return x;
}

export default async function scenario(group: ProcessGroup, args: Scenario): Promise<unknown> {
  const me = group.rank;
  const P = group.size;
  switch (args.mode) {
    case 'throw': {
      await group.barrier().wait();
      if (me === args.failRank) throw new Error(`boom on purpose (rank ${me}) at ${Date.now()}`);
      // Everyone else blocks in a collective the failed rank will never join.
      const n = new Array<number>(P).fill(1);
      await group.allToAllV(new Float32Array(P), n, new Float32Array(P), n).wait();
      return 'unreachable';
    }
    case 'throw-async': {
      await group.barrier().wait();
      if (me === args.failRank) {
        setTimeout(() => {
          throw new Error(`uncaught asynchronous boom (rank ${me})`);
        }, 20);
        await sleep(60_000);
      } else {
        await group.barrier().wait();
      }
      return 'unreachable';
    }
    case 'absent': {
      if (me === args.absentRank) return 'stayed away';
      const t0 = performance.now();
      try {
        await group.barrier().wait();
        return 'the barrier completed without rank ' + args.absentRank;
      } catch (e) {
        if (!(e instanceof CommTimeoutError)) throw e;
        return { name: e.name, message: e.message, missing: e.missingRanks, collective: e.collective, elapsedMs: performance.now() - t0 };
      }
    }
    case 'mismatch': {
      // Rank 1 sends 4 elements to rank 0, which expects 3.
      const send = me === 0 ? [1, 3] : [4, 1];
      const recv = me === 0 ? [1, 3] : [3, 1];
      const total = (c: number[]): number => c[0] + c[1];
      let countError: string | null = null;
      try {
        await group.allToAllV(new Float64Array(total(send)), send, new Float64Array(total(recv)), recv).wait();
      } catch (e) {
        if (!(e instanceof CommMismatchError)) throw e;
        countError = e.message;
      }
      // Then different collectives under the same sequence number.
      let callError: string | null = null;
      try {
        if (me === 0) await group.barrier().wait();
        else await group.allGather(new Int32Array(1), new Int32Array(P)).wait();
      } catch (e) {
        if (!(e instanceof CommMismatchError)) throw e;
        callError = e.message;
      }
      return { countError, callError };
    }
    case 'exit': {
      await group.barrier();
      if (me === args.exitRank) process.exit(1);
      await group.barrier();
      return 'unreachable';
    }
    case 'stuck': {
      await group.barrier();
      // Outside any collective: nothing but the run's deadline can end this rank.
      if (args.stuckRanks.includes(me)) await new Promise<never>(() => setInterval(() => undefined, 1000));
      return 'done';
    }
    case 'tensors': {
      if (!(args.x instanceof Tensor) || !args.nested.list.every((t) => t instanceof Tensor)) return 'arrived as plain objects';
      const doubled = Tensor.fromValues(args.x.dtype, args.x.shape, Array.from(args.x.toFloat32(), (v) => 2 * v + me));
      return { doubled, count: args.nested.list.length };
    }
    case 'overlap': {
      await group.barrier().wait();
      const n = 1 << 20; // 4 MiB per peer: the shared-memory path
      const send = new Float32Array(n * P).map((_, k) => me * 1e6 + (k % 1000));
      const recv = new Float32Array(n * P);
      const counts = new Array<number>(P).fill(n);
      const check = (): boolean => {
        for (let s = 0; s < P; s++) for (let k = 0; k < n; k += 4099) if (recv[s * n + k] !== s * 1e6 + ((me * n + k) % 1000)) return false;
        return true;
      };
      if (me !== 0) {
        await sleep(args.peerDelayMs);
        await group.allToAllV(send, counts, recv, counts).wait();
        return { ok: check() };
      }
      const t0 = performance.now();
      const work = group.allToAllV(send, counts, recv, counts);
      const startMs = performance.now() - t0;
      const completedAtStart = work.completed;
      busy(args.workMs);
      await work.wait();
      const totalMs = performance.now() - t0;
      return { ok: check(), startMs, completedAtStart, totalMs };
    }
  }
}
