/**
 * The launcher of the thread backend: `spawnRanks(P, script, args)` starts P worker threads, wires
 * a MessageChannel between every pair of them, lets every rank load the script, then starts the
 * script's default export `(group, args) => result` on all of them at once and returns the
 * results in rank order.
 *
 * Fail fast: the first rank that throws (or dies) makes the launcher tell every other rank to
 * abort, which rejects their pending collectives at once; ranks that do not stop within a short
 * grace period are terminated. The returned promise then rejects with a RankFailedError naming
 * that rank, with every rank's outcome attached.
 *
 * TypeScript scripts: a Worker does not inherit the tsx loader that `node --import tsx` installs
 * in the main thread (on Node 20 the flag is passed down but its hooks do not apply to the
 * worker's entry). When this module itself runs from source, or the script is a .ts file, each
 * worker therefore boots through a two-line loader that registers tsx's ESM hooks in that thread
 * first (`tsx/esm/api`), then imports the real entry. That costs ~0.1-0.3 s per worker, which is
 * why compiled JavaScript starts faster.
 */
import { freemem } from 'node:os';
import { Worker, MessageChannel, type MessagePort } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { resolve as resolvePath } from 'node:path';
import { InvalidArgumentError } from '../../errors.js';
import { isTypeScriptScript, resolveTsx } from '../../util/tsx.js';
import { RunDeadlineError, type RankOutcome, type SerializedError } from '../errors.js';
import { blameFirstFailure, settleLaunch } from '../launch-outcome.js';
import { wrapTensors } from './transfer.js';
import type { ProcessGroup } from '../process-group.js';

export interface SpawnOptions {
  /** Timeout of every collective, in milliseconds (default 60 000). */
  timeoutMs?: number;
  /** Group name used in error messages (default "threads"). */
  name?: string;
  /** After a rank fails, how long the others get to stop before they are terminated (default 500 ms). */
  abortGraceMs?: number;
  /**
   * The run's deadline in milliseconds (default: none), counted once for loading the scripts and
   * again from the moment every rank starts. Past it every rank still running is terminated and
   * the promise rejects with a RunDeadlineError naming them: a rank stuck outside any collective
   * (an endless loop, a lost await) cannot hold the launch forever.
   */
  deadlineMs?: number;
}

/** Each thread rank is a V8 isolate of its own (tens of MiB once it computes), and ranks are wired all-to-all. */
const BYTES_PER_THREAD_RANK = 64 * 2 ** 20;
const MAX_THREAD_RANKS = 256;

/** The most thread ranks this machine can hold now (at least 1), and why. */
export function maxThreadRanks(): { limit: number; reason: string } {
  const byMemory = Math.max(1, Math.floor(freemem() / BYTES_PER_THREAD_RANK));
  const limit = Math.min(MAX_THREAD_RANKS, byMemory);
  const reason =
    limit === MAX_THREAD_RANKS
      ? `thread ranks are wired all-to-all (P² channels); past ${MAX_THREAD_RANKS}, use processes (NCCL) instead`
      : `each thread rank is a V8 isolate of about ${BYTES_PER_THREAD_RANK / 2 ** 20} MiB and this machine has ${(freemem() / 2 ** 30).toFixed(1)} GiB free`;
  return { limit, reason };
}

/** What a rank script's default export looks like. */
export type RankMain<A = unknown, R = unknown> = (group: ProcessGroup, args: A) => R | Promise<R>;

/** workerData of a rank's thread. */
export interface WorkerInit {
  readonly rank: number;
  readonly size: number;
  readonly name: string;
  readonly timeoutMs: number;
  readonly ports: readonly (MessagePort | null)[];
  /** file: URL of the rank script. */
  readonly script: string;
  readonly args: unknown;
}

/** Launcher to rank: run (once every rank is ready), abort because `rank` failed, or wind down. */
export type ToRank = { readonly t: 'start' } | { readonly t: 'abort'; readonly rank: number; readonly reason: string } | { readonly t: 'exit' };
/** Rank to launcher: script loaded, or the rank's outcome. */
export type ToLauncher = { readonly t: 'ready' } | { readonly t: 'result'; readonly value: unknown } | { readonly t: 'failed'; readonly error: SerializedError };

export const DEFAULT_TIMEOUT_MS = 60_000;

/** How long a finished rank's thread gets to end by itself before it is terminated. */
const EXIT_GRACE_MS = 300;

function scriptUrl(script: string | URL): URL {
  if (script instanceof URL) return script;
  if (/^file:/.test(script)) return new URL(script);
  return pathToFileURL(resolvePath(script));
}

/** How to start one rank's thread: the entry, and whether it must boot through tsx first. */
function workerBoot(script: URL): { code: string | URL; evalCode: boolean } {
  const here = import.meta.url;
  const fromSource = here.endsWith('.ts');
  const entry = new URL(fromSource ? './worker-entry.ts' : './worker-entry.js', here);
  if (!fromSource && !isTypeScriptScript(script.pathname)) return { code: entry, evalCode: false };
  const tsxApi = resolveTsx('tsx/esm/api', script.href);
  const code = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); });`;
  return { code, evalCode: true };
}

/**
 * Runs `script`'s default export on `size` ranks (worker threads) and resolves with their
 * results in rank order; rejects with RankFailedError if any rank fails. `args` and the results
 * must be structured-clonable.
 */
export function spawnRanks<R = unknown, A = unknown>(size: number, script: string | URL, args?: A, options: SpawnOptions = {}): Promise<R[]> {
  if (!Number.isInteger(size) || size < 1) return Promise.reject(new InvalidArgumentError('size', 'must be a positive integer', `got ${size}`));
  const cap = maxThreadRanks();
  if (size > cap.limit) return Promise.reject(new InvalidArgumentError('size', `must be at most ${cap.limit} here`, `got ${size}: ${cap.reason}`));
  const deadlineMs = options.deadlineMs;
  if (deadlineMs !== undefined && !(deadlineMs > 0)) return Promise.reject(new InvalidArgumentError('options.deadlineMs', 'must be positive', `got ${deadlineMs}`));
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const grace = options.abortGraceMs ?? 500;
  const name = options.name ?? 'threads';
  if (!(timeoutMs > 0)) return Promise.reject(new InvalidArgumentError('options.timeoutMs', 'must be positive', `got ${timeoutMs}`));
  let boot: ReturnType<typeof workerBoot>;
  let url: URL;
  try {
    url = scriptUrl(script);
    boot = workerBoot(url);
  } catch (e) {
    return Promise.reject(e);
  }

  // ports[r][p]: rank r's end of the channel it shares with rank p.
  const ports: (MessagePort | null)[][] = Array.from({ length: size }, () => new Array<MessagePort | null>(size).fill(null));
  for (let a = 0; a < size; a++) {
    for (let b = a + 1; b < size; b++) {
      const ch = new MessageChannel();
      ports[a][b] = ch.port1;
      ports[b][a] = ch.port2;
    }
  }

  return new Promise<R[]>((resolve, reject) => {
    const outcomes: (RankOutcome<R> | undefined)[] = new Array(size).fill(undefined);
    const workers: Worker[] = [];
    // Each thread's end, recorded from its start: a rank that died early has already exited by
    // the time finish() runs, and a listener attached only then would wait forever.
    const exited: Promise<void>[] = [];
    let rootCause = -1;
    let ready = 0;
    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    let finished = false;
    let deadlineTimer: ReturnType<typeof setTimeout> | undefined;

    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(graceTimer);
      clearTimeout(deadlineTimer);
      // Ask every thread to close its ports and end on its own, which flushes what it printed;
      // terminate those that do not (busy, or holding timers) after a short while.
      for (const w of workers) w.postMessage({ t: 'exit' } satisfies ToRank);
      const stop = setTimeout(() => workers.forEach((w) => void w.terminate()), EXIT_GRACE_MS);
      void Promise.all(exited).then(() => {
        clearTimeout(stop);
        settleLaunch(outcomes as RankOutcome<R>[], rootCause, resolve, reject);
      });
    };

    const record = (rank: number, given: RankOutcome<R>): void => {
      if (finished || outcomes[rank] !== undefined) return;
      let outcome = given;
      if (outcome.status !== 'ok' && rootCause < 0) {
        ({ root: rootCause, outcome } = blameFirstFailure(outcome, rank, size));
        const reason = rootCause === rank ? `${outcome.error.name}: ${outcome.error.message}` : `rank ${rootCause} left the group`;
        for (let r = 0; r < size; r++) if (outcomes[r] === undefined && r !== rank && r !== rootCause) workers[r]?.postMessage({ t: 'abort', rank: rootCause, reason } satisfies ToRank);
        graceTimer = setTimeout(() => {
          for (let r = 0; r < size; r++) {
            if (outcomes[r] === undefined) {
              outcomes[r] = { rank: r, status: 'aborted', error: { name: 'Terminated', message: `did not stop within ${grace} ms after rank ${rootCause} failed` } };
            }
          }
          finish();
        }, grace);
      }
      outcomes[rank] = outcome;
      if (outcomes.every((o) => o !== undefined)) finish();
    };

    const armDeadline = (): void => {
      if (deadlineMs === undefined) return;
      clearTimeout(deadlineTimer);
      deadlineTimer = setTimeout(() => {
        if (finished) return;
        finished = true;
        clearTimeout(graceTimer);
        const running: number[] = [];
        for (let r = 0; r < size; r++) {
          if (outcomes[r] !== undefined) continue;
          running.push(r);
          outcomes[r] = { rank: r, status: 'failed', error: { name: 'RunDeadlineError', message: `still running at the deadline (${deadlineMs / 1000} s)` } };
        }
        void Promise.all(workers.map((w) => w.terminate())).then(() => reject(new RunDeadlineError(deadlineMs, running, outcomes as RankOutcome<R>[])));
      }, deadlineMs);
    };

    const failedFrom = (rank: number, error: SerializedError): RankOutcome<R> => ({
      rank,
      status: error.name === 'CommAbortedError' && rootCause >= 0 ? 'aborted' : 'failed',
      error,
    });

    for (let rank = 0; rank < size; rank++) {
      const init: WorkerInit = { rank, size, name, timeoutMs, ports: ports[rank], script: url.href, args: wrapTensors(args) };
      const transfer = ports[rank].filter((p): p is MessagePort => p !== null);
      let w: Worker;
      try {
        w = new Worker(boot.code, { eval: boot.evalCode, workerData: init, transferList: transfer, execArgv: [] });
      } catch (e) {
        for (const started of workers) void started.terminate();
        reject(e);
        return;
      }
      workers.push(w);
      exited.push(new Promise<void>((done) => w.once('exit', () => done())));
      w.on('message', (m: ToLauncher) => {
        if (m.t === 'ready') {
          if (++ready === size && rootCause < 0) {
            armDeadline();
            for (const x of workers) x.postMessage({ t: 'start' } satisfies ToRank);
          }
        } else if (m.t === 'result') {
          record(rank, { rank, status: 'ok', value: m.value as R });
        } else {
          record(rank, failedFrom(rank, m.error));
        }
      });
      w.on('error', (e: Error) => record(rank, failedFrom(rank, { name: e.name, message: e.message, stack: e.stack })));
      w.on('exit', (code) => record(rank, { rank, status: 'failed', error: { name: 'Exit', message: `the thread exited (code ${code}) before returning` } }));
    }
    armDeadline();
  });
}
