/**
 * `magi-attn run -n P script.mjs [args...]` runs a rank script on P worker-thread ranks (CPU);
 * `magi-attn run --gpus N script.mjs [args...]` on N processes, one per GPU, over NCCL, the way
 * `torchrun` does (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT in each environment).
 * The script's default export is called as `(group, args)` on every rank, with `args` the strings
 * after the script; each rank's result (or error) is printed on one line, and the exit code is
 * non-zero if any rank failed or the run passed its deadline, with the rank that failed first
 * named. Put `--` before script arguments that look like options.
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { RankFailedError, RunDeadlineError, type RankOutcome } from '../comm/errors.js';
import { DEFAULT_TIMEOUT_MS, maxThreadRanks, spawnRanks } from '../comm/threads/spawn.js';
import { launchGpuRanks } from '../comm/launch/launch-gpus.js';
import { intAtLeast, intOrWord } from './flags.js';
import type { CliContext } from './program.js';

export interface RunOptions {
  readonly ranks: number;
  /** One process per GPU over NCCL instead of worker threads. */
  readonly gpus?: boolean;
  /** MASTER_ADDR / MASTER_PORT of a GPU launch. */
  readonly addr?: string;
  readonly port?: number;
  /** Timeout of every collective. */
  readonly timeoutMs: number;
  /** Deadline of the whole run (undefined: none). */
  readonly deadlineMs?: number;
  /** Print the results as one JSON array instead of one line per rank. */
  readonly json: boolean;
}

/** Default deadline of a whole `magi-attn run`, in seconds. */
export const DEFAULT_RUN_DEADLINE_S = 600;

function show(value: unknown): string {
  if (value === undefined) return 'undefined';
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/** Runs `script` on `ranks` ranks and prints one line per rank; resolves with the exit code. */
export async function runScript(script: string, scriptArgs: readonly string[], options: RunOptions, print: (line: string) => void = console.log): Promise<number> {
  const t0 = performance.now();
  let outcomes: readonly RankOutcome<unknown>[];
  let failure: RankFailedError | RunDeadlineError | null = null;
  try {
    const common = { timeoutMs: options.timeoutMs, ...(options.deadlineMs === undefined ? {} : { deadlineMs: options.deadlineMs }) };
    const values =
      options.gpus === true
        ? await launchGpuRanks(options.ranks, script, [...scriptArgs], { ...common, ...(options.addr === undefined ? {} : { addr: options.addr }), ...(options.port === undefined ? {} : { port: options.port }) })
        : await spawnRanks(options.ranks, script, [...scriptArgs], common);
    outcomes = values.map((value, rank) => ({ rank, status: 'ok', value }));
  } catch (e) {
    if (!(e instanceof RankFailedError) && !(e instanceof RunDeadlineError)) throw e;
    failure = e;
    outcomes = e.outcomes;
  }
  const seconds = ((performance.now() - t0) / 1000).toFixed(2);
  if (options.json) {
    print(JSON.stringify(outcomes.map((o) => (o.status === 'ok' ? { rank: o.rank, status: o.status, value: o.value } : o))));
  } else {
    for (const o of outcomes) {
      if (o.status === 'ok') print(`rank ${o.rank}: ok ${show(o.value)}`);
      else print(`rank ${o.rank}: ${o.status} ${o.error.name}: ${o.error.message}`);
    }
    if (failure instanceof RankFailedError) {
      const root = failure.outcomes[failure.rank];
      if (root.status !== 'ok' && root.error.stack !== undefined) print(`\nrank ${failure.rank} stack:\n${root.error.stack}`);
      print(`\n${failure.message} (${seconds} s)`);
    } else if (failure !== null) {
      print(`\n${failure.message} (${seconds} s)`);
    } else {
      print(`${options.ranks} ranks ok in ${seconds} s`);
    }
  }
  return failure === null ? 0 : 1;
}

export function registerRun(program: Command, ctx: CliContext): void {
  program
    .command('run')
    .description("run a script's default export (group, args) => result on P ranks (worker threads sharing memory)")
    .option('-n, --ranks <P>', `number of worker-thread ranks (at most ${maxThreadRanks().limit} on this machine now)`, intAtLeast(1))
    .option('--gpus <N>', 'one process per GPU over NCCL (torchrun-like) instead of threads', intAtLeast(1))
    .option('--master-addr <host>', 'rendezvous address of a GPU launch (default: $MASTER_ADDR or 127.0.0.1)')
    .option('--master-port <port>', 'rendezvous port of a GPU launch (default: $MASTER_PORT or a free port)', intAtLeast(1))
    .option('--timeout <ms>', 'timeout of every collective, in milliseconds', intAtLeast(1), DEFAULT_TIMEOUT_MS)
    .option('--deadline <s>', 'deadline in seconds for loading the script and again for running it (none: no deadline); past it every rank is ended and the ones still running are named', intOrWord(1, ['none'] as const), DEFAULT_RUN_DEADLINE_S)
    .option('--json', 'print the per-rank outcomes as one JSON array')
    .argument('<script>', 'an ES module (.mjs/.js, or .ts with tsx installed) whose default export runs on every rank')
    .argument('[args...]', 'passed to the script as an array of strings')
    .allowUnknownOption()
    .action(async (script: string, args: string[], opts: { ranks?: number; gpus?: number; masterAddr?: string; masterPort?: number; timeout: number; deadline: number | 'none'; json?: boolean }) => {
      if ((opts.ranks === undefined) === (opts.gpus === undefined)) throw new InvalidArgumentError('--ranks / --gpus', 'give exactly one: -n P worker-thread ranks, or --gpus N processes (one per GPU)');
      const cap = maxThreadRanks();
      if (opts.ranks !== undefined && opts.ranks > cap.limit) throw new InvalidArgumentError('--ranks', `must be at most ${cap.limit} on this machine now`, `got ${opts.ranks}: ${cap.reason}`);
      const options: RunOptions = {
        ranks: opts.ranks ?? (opts.gpus as number),
        gpus: opts.gpus !== undefined,
        ...(opts.masterAddr === undefined ? {} : { addr: opts.masterAddr }),
        ...(opts.masterPort === undefined ? {} : { port: opts.masterPort }),
        timeoutMs: opts.timeout,
        ...(opts.deadline === 'none' ? {} : { deadlineMs: opts.deadline * 1000 }),
        json: opts.json === true,
      };
      ctx.exitCode = await runScript(script, args, options, (line) => ctx.out(`${line}\n`));
    });
}
