/**
 * `magi-attn run --gpus N`: one process per GPU, the way torchrun starts them. Each gets RANK,
 * WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT (and NCCL_NVLS_ENABLE=0) in
 * its environment and runs gpu-rank-main.ts, which joins the NCCL group and calls the script.
 *
 * Fail-fast: the first rank that fails (throws, exits non-zero, is killed) is the root cause;
 * the launcher tells every other rank to abort (their NCCL communicators are aborted, so none is
 * left busy on the GPU), kills those that do not exit within a grace period, and rejects with a
 * RankFailedError naming the root cause. A run past its deadline ends every rank and names the
 * ones still running. Node-only.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { resolve as resolvePath } from 'node:path';
import { InvalidArgumentError } from '../../errors.js';
import { isTypeScriptScript, resolveTsx } from '../../util/tsx.js';
import { RunDeadlineError, type RankOutcome, type SerializedError } from '../errors.js';
import { blameFirstFailure, settleLaunch } from '../launch-outcome.js';
import { wrapTensors } from '../threads/transfer.js';

/** Launcher to rank process. */
export type ToRankProcess = { readonly t: 'abort'; readonly rank: number; readonly reason: string };
/** Rank process to launcher. */
export type FromRankProcess = { readonly t: 'result'; readonly value: unknown } | { readonly t: 'failed'; readonly error: SerializedError };

export interface LaunchOptions {
  /** MASTER_ADDR (default: $MASTER_ADDR or 127.0.0.1). */
  addr?: string;
  /** MASTER_PORT (default: $MASTER_PORT, else a free port). */
  port?: number;
  /** Collective and rendezvous timeout of every rank, in ms (default 60 000). */
  timeoutMs?: number;
  /** Deadline of the whole run, in ms (default: none). */
  deadlineMs?: number;
  /** After the root-cause failure, how long the others get to exit before they are killed (default 5 s). */
  abortGraceMs?: number;
  /** Extra environment for every rank. */
  env?: Record<string, string>;
  /** Where each rank's output lines go (default: this process's stdout/stderr, prefixed "[rank r]"). */
  output?: (rank: number, stream: 'out' | 'err', line: string) => void;
}

/** A free TCP port on the loopback, for a local launch that names none. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function lines(rank: number, stream: 'out' | 'err', out: LaunchOptions['output'], src: NodeJS.ReadableStream | null): void {
  if (src === null) return;
  let buf = '';
  src.setEncoding('utf8');
  src.on('data', (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (out !== undefined) out(rank, stream, line);
      else (stream === 'out' ? process.stdout : process.stderr).write(`[rank ${rank}] ${line}\n`);
    }
  });
}

/** Runs `script`'s default export on `size` rank processes; resolves with the results in rank order. */
export async function launchGpuRanks<R = unknown>(size: number, script: string, args: unknown, options: LaunchOptions = {}): Promise<R[]> {
  if (!Number.isInteger(size) || size < 1) throw new InvalidArgumentError('--gpus', 'must be a positive integer', `got ${size}`);
  const addr = options.addr ?? process.env.MASTER_ADDR ?? '127.0.0.1';
  const port = options.port ?? (process.env.MASTER_PORT !== undefined ? Number(process.env.MASTER_PORT) : await freePort());
  const timeoutMs = options.timeoutMs ?? 60_000;
  const grace = options.abortGraceMs ?? 5000;
  const here = import.meta.url;
  const entry = new URL(here.endsWith('.ts') ? './gpu-rank-main.ts' : './gpu-rank-main.js', here);
  // A rank process inherits this process's Node flags; a compiled launcher adds tsx's loader for
  // a TypeScript rank script (one run through tsx already passes it on).
  const execArgv = [...process.execArgv];
  if (isTypeScriptScript(script) && !here.endsWith('.ts') && !execArgv.some((a) => a.includes('tsx'))) execArgv.push('--import', resolveTsx('tsx', script));

  return new Promise<R[]>((resolve, reject) => {
    const outcomes: Array<RankOutcome<R> | undefined> = new Array(size).fill(undefined);
    const children: ChildProcess[] = [];
    let rootCause = -1;
    let finished = false;
    let killTimer: ReturnType<typeof setTimeout> | undefined;
    let deadlineTimer: ReturnType<typeof setTimeout> | undefined;

    const finishIfDone = (): void => {
      if (finished || outcomes.some((o) => o === undefined)) return;
      finished = true;
      clearTimeout(killTimer);
      clearTimeout(deadlineTimer);
      settleLaunch(outcomes as RankOutcome<R>[], rootCause, resolve, reject);
    };

    const record = (rank: number, given: RankOutcome<R>): void => {
      if (finished || outcomes[rank] !== undefined) return;
      let outcome = given;
      if (outcome.status !== 'ok' && rootCause < 0) {
        ({ root: rootCause, outcome } = blameFirstFailure(outcome, rank, size));
        const reason = rootCause === rank ? `${outcome.error.name}: ${outcome.error.message}` : `rank ${rootCause} failed`;
        children.forEach((c, r) => {
          if (r !== rank && outcomes[r] === undefined && c.connected) c.send({ t: 'abort', rank: rootCause, reason } satisfies ToRankProcess);
        });
        killTimer = setTimeout(() => children.forEach((c, r) => outcomes[r] === undefined && c.kill('SIGKILL')), grace);
      } else if (outcome.status !== 'ok' && rootCause >= 0 && rank !== rootCause) {
        outcome = { ...outcome, status: 'aborted' };
      }
      outcomes[rank] = outcome;
      finishIfDone();
    };

    for (let rank = 0; rank < size; rank++) {
      const child = fork(entry, [], {
        execArgv,
        env: {
          ...process.env,
          ...options.env,
          RANK: String(rank),
          WORLD_SIZE: String(size),
          LOCAL_RANK: String(rank),
          LOCAL_WORLD_SIZE: String(size),
          MASTER_ADDR: addr,
          MASTER_PORT: String(port),
          NCCL_NVLS_ENABLE: '0',
          MAGI_ATTN_SCRIPT: resolvePath(script),
          MAGI_ATTN_ARGS: JSON.stringify(wrapTensors(args)),
          MAGI_ATTN_TIMEOUT_MS: String(timeoutMs),
        },
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      });
      children.push(child);
      lines(rank, 'out', options.output, child.stdout);
      lines(rank, 'err', options.output, child.stderr);
      let reported: FromRankProcess | null = null;
      child.on('message', (m: FromRankProcess) => (reported = m));
      child.on('exit', (code, signal) => {
        const m = reported as FromRankProcess | null;
        if (m !== null && m.t === 'result' && code === 0) record(rank, { rank, status: 'ok', value: m.value as R });
        else if (m !== null && m.t === 'failed') record(rank, { rank, status: 'failed', error: m.error });
        else record(rank, { rank, status: 'failed', error: { name: 'Exit', message: signal !== null ? `the process was killed by ${signal}` : `the process exited with code ${code} before reporting` } });
      });
    }
    if (options.deadlineMs !== undefined) {
      const deadline = options.deadlineMs;
      deadlineTimer = setTimeout(() => {
        if (finished) return;
        finished = true;
        clearTimeout(killTimer);
        const running: number[] = [];
        children.forEach((c, r) => {
          if (outcomes[r] !== undefined) return;
          running.push(r);
          outcomes[r] = { rank: r, status: 'failed', error: { name: 'RunDeadlineError', message: `still running at the deadline (${deadline / 1000} s)` } };
          c.kill('SIGKILL');
        });
        reject(new RunDeadlineError(deadline, running, outcomes as RankOutcome<R>[]));
      }, deadline);
    }
  });
}
