/**
 * Worker threads for the WebAssembly kernel: the Node-only part of the CPU backend, with
 * node-runtime.ts (through which it reaches Node's built-ins, so a browser build pulls none; where
 * there are none, a browser or an older Node, the kernel runs on the calling thread).
 *
 * Each worker instantiates the same compiled module (whichever build the loader picked: relaxed
 * or plain SIMD) on the same shared memory and sleeps in
 * Atomics.wait on a generation word (after a short spin on it, for the next job of the same call). A call bumps the generation; workers 1 .. n-1 run their
 * share (`run(job, tid)` inside WebAssembly), count themselves done and go back to sleep, while
 * the calling thread runs share 0 and then waits for the count. Calls stay synchronous, which is
 * what the kernel backend's interface asks for. Workers are unref'd: they never keep a process
 * alive.
 */
import type { WasmMemory, WasmModule } from './api.js';
import { builtin, nodeRequire } from './node-runtime.js';

/** Most threads a job may use (createCpuBackend's bound). */
export const MAX_THREADS = 1024;
/** Words of the control block at the start of the memory (Int32 indices); GEN + tid is worker tid's generation. */
const DONE = 1;
const JOB = 2;
const FAILED = 4;
const GEN = 16;
/** Bytes the control block takes, in whole cache lines. */
export const CONTROL_BYTES = Math.ceil(((GEN + MAX_THREADS) * 4) / 64) * 64;
/** Checks of the generation word a worker makes before it sleeps (about a millisecond). */
const SPIN = 100_000;

const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, tid, gen, host } = workerData;
const ctl = new Int32Array(memory.buffer, 0, ${CONTROL_BYTES / 4});
const mine = ${GEN} + tid;
let run;
try {
  const env = { memory, gemm: () => { throw new Error('this kernel instance has no host tile products'); } };
  if (host) Object.assign(env, new Function('require', 'memory', 'data', host.source)(require, memory, host.data));
  run = new WebAssembly.Instance(module, { env }).exports.run;
} catch (e) {
  Atomics.store(ctl, ${FAILED}, tid);
  Atomics.notify(ctl, ${DONE});
  throw e;
}
let seen = gen;
for (;;) {
  // A call runs a few jobs back to back: spin a little before sleeping, so that the next one
  // does not wait for this thread to be woken (up to milliseconds on a virtual machine).
  for (let i = 0; i < ${SPIN} && Atomics.load(ctl, mine) === seen; i++);
  Atomics.wait(ctl, mine, seen);
  const now = Atomics.load(ctl, mine);
  if (now === seen) continue; // a spurious wake-up
  seen = now;
  try {
    run(Atomics.load(ctl, ${JOB}), tid);
  } catch (e) {
    Atomics.store(ctl, ${FAILED}, tid);
  }
  Atomics.add(ctl, ${DONE}, 1);
  Atomics.notify(ctl, ${DONE});
}
`;

interface WorkerLike {
  unref(): void;
  on(event: 'error', listener: (e: unknown) => void): unknown;
}
interface WorkerThreadsModule {
  isMainThread: boolean;
  Worker: new (code: string, options: { eval: true; workerData: unknown; stdout?: boolean; stderr?: boolean }) => WorkerLike;
}
/** The kernel's worker threads on one shared memory. */
export interface KernelThreads {
  /** Runs `self()` here and share tid of the job on worker tid, for tid = 1 .. n - 1; returns when all are done. */
  run(n: number, job: number, self: () => void): void;
}

/**
 * Threads a call uses when not told: the machine's cores on a process's main thread, 1 inside
 * a worker thread (a cp rank of the thread runtime is one of several threads already, so each
 * rank runs its kernel single-threaded unless asked), 1 where there are no worker threads.
 */
export function defaultThreadCount(): number {
  const wt = builtin<WorkerThreadsModule>('node:worker_threads');
  const os = builtin<{ availableParallelism?: () => number; cpus(): unknown[] }>('node:os');
  if (wt === undefined || os === undefined || !wt.isMainThread) return 1;
  return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
}

/**
 * Imports a kernel instance takes besides its memory (the BLAS engine's tile product), made the
 * same way on every thread from one source: `source` is the body of a function of (require,
 * memory, data) returning the imports; `data` must survive a structured clone.
 */
export interface HostImports {
  source: string;
  data: unknown;
}

/** The imports `host` describes, made on this thread (Node only: it needs `require`). */
export function makeHostImports(host: HostImports, memory: WasmMemory): Record<string, unknown> {
  const req = nodeRequire();
  if (req === undefined) throw new Error('host tile products need Node (process.getBuiltinModule)');
  const make = new Function('require', 'memory', 'data', host.source) as (require: (id: string) => unknown, memory: WasmMemory, data: unknown) => Record<string, unknown>;
  return make(req, memory, host.data);
}

/**
 * Worker threads for `module` over the shared `memory` (control block at byte 0), each instance
 * given `host`'s imports where present, or undefined where there are no worker threads.
 */
export function startKernelThreads(module: WasmModule, memory: WasmMemory, host?: HostImports): KernelThreads | undefined {
  const wt = builtin<WorkerThreadsModule>('node:worker_threads');
  if (wt === undefined || typeof SharedArrayBuffer === 'undefined' || !(memory.buffer instanceof SharedArrayBuffer)) return undefined;
  const ctl = new Int32Array(memory.buffer, 0, CONTROL_BYTES / 4);
  let workers = 1; // thread 0 is the caller
  let failure: string | undefined;
  const check = (): void => {
    const tid = Atomics.load(ctl, FAILED);
    if (tid !== 0) failure ??= `CPU kernel worker thread ${tid} failed`;
    if (failure !== undefined) throw new Error(failure);
  };
  return {
    run(n, job, self) {
      if (failure !== undefined) throw new Error(failure);
      for (; workers < n; workers++) {
        const w = new wt.Worker(WORKER_SOURCE, { eval: true, workerData: { module, memory, tid: workers, gen: Atomics.load(ctl, GEN + workers), host } });
        w.on('error', () => undefined); // reported through the FAILED word; the event itself would only arrive after the call
        w.unref();
      }
      Atomics.store(ctl, JOB, job);
      Atomics.store(ctl, DONE, 0);
      Atomics.store(ctl, FAILED, 0);
      for (let tid = 1; tid < n; tid++) {
        Atomics.add(ctl, GEN + tid, 1);
        Atomics.notify(ctl, GEN + tid);
      }
      self();
      for (let done = Atomics.load(ctl, DONE); done < n - 1; done = Atomics.load(ctl, DONE)) {
        check();
        Atomics.wait(ctl, DONE, done, 1000);
      }
      check();
    },
  };
}
