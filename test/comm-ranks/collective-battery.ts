/**
 * Every ProcessGroup collective checked on one rank against a direct computation. All ranks draw
 * the same random sizes from the seed, and every element is a hash of (round, sender, receiver,
 * index), so each rank knows exactly what it must receive without any other channel. Sizes
 * include zero-length sends and payloads above the thread backend's inline limit (shared-memory
 * path), SharedArrayBuffer-backed arrays (the zero-copy send path) and several collectives in
 * flight at once, waited in reverse order.
 */
import type { HostArray, ProcessGroup } from '../../src/comm/process-group.js';
import { bf16BitsToFloat, floatToBf16Bits } from '../../src/dtype.js';
import { Rng } from '../../src/util/rng.js';

type Kind = 'f32' | 'f64' | 'u16' | 'i32';
const KINDS: readonly Kind[] = ['f32', 'f64', 'u16', 'i32'];
const CTOR = { f32: Float32Array, f64: Float64Array, u16: Uint16Array, i32: Int32Array } as const;

const mix = (h: number, x: number): number => Math.imul(h ^ (x | 0), 0x01000193) ^ (h >>> 15);

/** A hash of two to five integers (fixed arity, not rest parameters: it runs once per element checked, in every rank's cold isolate). */
function hash(a: number, b: number, c?: number, d?: number, e?: number): number {
  let h = mix(mix(0x811c9dc5, a), b);
  if (c !== undefined) h = mix(h, c);
  if (d !== undefined) h = mix(h, d);
  if (e !== undefined) h = mix(h, e);
  return h >>> 0;
}

/** An exactly representable element of `kind` derived from a hash. */
function value(kind: Kind, h: number): number {
  switch (kind) {
    case 'f32':
      return (h % 65536) - 32768.25;
    case 'f64':
      return h + 0.5;
    case 'u16':
      return h & 0xffff;
    case 'i32':
      return h | 0;
  }
}

function make(kind: Kind, n: number, shared: boolean): HostArray {
  const buf = shared ? new SharedArrayBuffer(n * CTOR[kind].BYTES_PER_ELEMENT) : null;
  switch (kind) {
    case 'f32':
      return buf ? new Float32Array(buf) : new Float32Array(n);
    case 'f64':
      return buf ? new Float64Array(buf) : new Float64Array(n);
    case 'u16':
      return buf ? new Uint16Array(buf) : new Uint16Array(n);
    case 'i32':
      return buf ? new Int32Array(buf) : new Int32Array(n);
  }
}

/** A count whose payload just exceeds 64 KiB: the thread backend's shared-memory path and allReduce's two-round path. */
function largeCount(rng: Rng, kind: Kind): number {
  return Math.ceil(65536 / CTOR[kind].BYTES_PER_ELEMENT) + rng.int(1, 600);
}

export interface BatteryResult {
  checks: number;
  failures: string[];
}

export async function collectiveBattery(group: ProcessGroup, seed: number, rounds = 5): Promise<BatteryResult> {
  const P = group.size;
  const me = group.rank;
  const failures: string[] = [];
  let checks = 0;
  const expectArray = (what: string, got: HostArray, want: (k: number) => number, n: number): void => {
    checks++;
    if (got.length !== n) {
      failures.push(`${what}: length ${got.length}, want ${n}`);
      return;
    }
    for (let k = 0; k < n; k++) {
      const w = want(k);
      if (got[k] !== w && !(Number.isNaN(got[k]) && Number.isNaN(w))) {
        failures.push(`${what}: [${k}] = ${got[k]}, want ${w}`);
        return;
      }
    }
  };

  for (let round = 0; round < rounds; round++) {
    const rng = new Rng(hash(seed, round));
    const tag = `seed ${seed} round ${round} rank ${me}/${P}`;

    // all-to-all-v: a random count matrix, some pairs empty, some large.
    {
      const kind = rng.pick(KINDS);
      const large = rng.next() < 0.4;
      const counts = Array.from({ length: P }, () => Array.from({ length: P }, () => (rng.next() < 0.25 ? 0 : large ? largeCount(rng, kind) : rng.int(1, 40))));
      const shared = rng.next() < 0.4;
      const sendCounts = counts[me];
      const recvCounts = counts.map((row) => row[me]);
      const send = make(kind, sendCounts.reduce((a, b) => a + b, 0), shared);
      let at = 0;
      for (let r = 0; r < P; r++) for (let k = 0; k < sendCounts[r]; k++) send[at++] = value(kind, hash(round, me, r, k));
      const recv = make(kind, recvCounts.reduce((a, b) => a + b, 0), false);
      recv.fill(7);
      await group.allToAllV(send, sendCounts, recv, recvCounts).wait();
      let off = 0;
      for (let s = 0; s < P; s++) {
        expectArray(`${tag} allToAllV ${kind} from ${s}`, recv.subarray(off, off + recvCounts[s]), (k) => value(kind, hash(round, s, me, k)), recvCounts[s]);
        off += recvCounts[s];
      }
    }

    // all-gather-v with zero-length contributions, and plain all-gather.
    {
      const kind = rng.pick(KINDS);
      const large = rng.next() < 0.3;
      const lens = Array.from({ length: P }, () => (rng.next() < 0.3 ? 0 : large ? largeCount(rng, kind) : rng.int(1, 30)));
      const send = make(kind, lens[me], rng.next() < 0.3);
      for (let k = 0; k < lens[me]; k++) send[k] = value(kind, hash(round, me, 99, k));
      const recv = make(kind, lens.reduce((a, b) => a + b, 0), false);
      await group.allGatherV(send, recv, lens).wait();
      let off = 0;
      for (let s = 0; s < P; s++) {
        expectArray(`${tag} allGatherV ${kind} from ${s}`, recv.subarray(off, off + lens[s]), (k) => value(kind, hash(round, s, 99, k)), lens[s]);
        off += lens[s];
      }
      const n = rng.int(0, 20);
      const one = make('f64', n, false);
      for (let k = 0; k < n; k++) one[k] = value('f64', hash(round, me, 98, k));
      const all = make('f64', n * P, false);
      await group.allGather(one, all).wait();
      for (let s = 0; s < P; s++) expectArray(`${tag} allGather from ${s}`, all.subarray(s * n, (s + 1) * n), (k) => value('f64', hash(round, s, 98, k)), n);
    }

    // all-reduce: sum and max, one-round and reduce-scatter sizes, every element type.
    for (const op of ['sum', 'max'] as const) {
      const kind = rng.pick(KINDS);
      const n = rng.next() < 0.5 ? rng.int(0, 50) : largeCount(rng, kind);
      const contrib = (s: number, k: number): number => {
        const h = hash(round, s, 97, k);
        if (kind === 'f32') return Math.fround((h / 2 ** 32) * 2 - 1);
        if (kind === 'u16') return floatToBf16Bits((h / 2 ** 32) * 8 - 4);
        return value(kind, h);
      };
      const data = make(kind, n, rng.next() < 0.3);
      for (let k = 0; k < n; k++) data[k] = contrib(me, k);
      await group.allReduce(data, op, kind === 'u16' ? { halfType: 'bfloat16' } : {}).wait();
      const want = (k: number): number => {
        if (kind === 'u16') {
          let acc = bf16BitsToFloat(contrib(0, k));
          for (let s = 1; s < P; s++) acc = op === 'sum' ? Math.fround(acc + bf16BitsToFloat(contrib(s, k))) : Math.max(acc, bf16BitsToFloat(contrib(s, k)));
          return floatToBf16Bits(acc);
        }
        let acc = contrib(0, k);
        for (let s = 1; s < P; s++) {
          const v = contrib(s, k);
          if (op === 'max') acc = Math.max(acc, v);
          else if (kind === 'f32') acc = Math.fround(acc + v);
          else if (kind === 'i32') acc = (acc + v) | 0;
          else acc += v;
        }
        return acc;
      };
      expectArray(`${tag} allReduce(${op}) ${kind} n=${n}`, data, want, n);
    }

    // broadcast from a random root.
    {
      const root = rng.int(0, P - 1);
      const kind = rng.pick(KINDS);
      const n = rng.next() < 0.5 ? rng.int(0, 30) : largeCount(rng, kind);
      const data = make(kind, n, false);
      if (me === root) for (let k = 0; k < n; k++) data[k] = value(kind, hash(round, 96, k));
      else data.fill(3);
      await group.broadcast(data, root).wait();
      expectArray(`${tag} broadcast(root ${root}) ${kind}`, data, (k) => value(kind, hash(round, 96, k)), n);
    }

    await group.barrier().wait();
    checks++;

    // Several collectives in flight at once, waited in reverse order.
    {
      const n = rng.int(1, 2) * 10_000;
      const a2aSend = make('f32', n * P, false);
      for (let r = 0; r < P; r++) for (let k = 0; k < n; k++) a2aSend[r * n + k] = value('f32', hash(round, me, r, k, 5));
      const a2aRecv = make('f32', n * P, false);
      const counts = new Array<number>(P).fill(n);
      const red = make('f64', n, false).fill(me + 1);
      const gathered = make('i32', P, false);
      const w1 = group.allToAllV(a2aSend, counts, a2aRecv, counts);
      const w2 = group.allReduce(red, 'sum');
      const w3 = group.allGather(Int32Array.of(me * 11), gathered as Int32Array);
      const w4 = group.barrier();
      await w4.wait();
      await w3.wait();
      await w2.wait();
      await w1.wait();
      expectArray(`${tag} in-flight allGather`, gathered, (k) => k * 11, P);
      expectArray(`${tag} in-flight allReduce`, red, () => (P * (P + 1)) / 2, n);
      for (let s = 0; s < P; s++) expectArray(`${tag} in-flight allToAllV from ${s}`, a2aRecv.subarray(s * n, (s + 1) * n), (k) => value('f32', hash(round, s, me, k, 5)), n);
    }
  }
  return { checks, failures };
}
