/**
 * `magi-attn run -n P script.js [args...]`: runs a rank script on P ranks of the worker-thread
 * backend, the way `torchrun` starts one process per GPU. The script's default export is called
 * as `(group, args)` on every rank, with `args` the strings after the script; each rank's result
 * (or error) is printed on one line, and the exit code is non-zero if any rank failed. Put `--`
 * before script arguments that look like options.
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { RankFailedError, type RankOutcome } from '../comm/errors.js';
import { DEFAULT_TIMEOUT_MS, spawnRanks } from '../comm/threads/spawn.js';

export interface RunOptions {
  readonly ranks: number;
  readonly timeoutMs: number;
  /** Print the results as one JSON array instead of one line per rank. */
  readonly json: boolean;
}

function positiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(flag, 'must be a positive integer', `got ${value}`);
  return n;
}

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
  let failed: RankFailedError | null = null;
  try {
    const values = await spawnRanks(options.ranks, script, [...scriptArgs], { timeoutMs: options.timeoutMs });
    outcomes = values.map((value, rank) => ({ rank, status: 'ok', value }));
  } catch (e) {
    if (!(e instanceof RankFailedError)) throw e;
    failed = e;
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
    if (failed !== null) {
      const root = failed.outcomes[failed.rank];
      if (root.status !== 'ok' && root.error.stack !== undefined) print(`\nrank ${failed.rank} stack:\n${root.error.stack}`);
      print(`\n${failed.message} (${seconds} s)`);
    } else {
      print(`${options.ranks} ranks ok in ${seconds} s`);
    }
  }
  return failed === null ? 0 : 1;
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description("run a script's default export (group, args) => result on P ranks (worker threads sharing memory)")
    .requiredOption('-n, --ranks <P>', 'number of ranks')
    .option('--timeout <ms>', 'timeout of every collective, in milliseconds', String(DEFAULT_TIMEOUT_MS))
    .option('--json', 'print the per-rank outcomes as one JSON array')
    .argument('<script>', 'an ES module (.js, or .ts with tsx installed) whose default export runs on every rank')
    .argument('[args...]', 'passed to the script as an array of strings')
    .allowUnknownOption()
    .action(async (script: string, args: string[], opts: { ranks: string; timeout: string; json?: boolean }) => {
      const options: RunOptions = { ranks: positiveInt(opts.ranks, '--ranks'), timeoutMs: positiveInt(opts.timeout, '--timeout'), json: opts.json === true };
      process.exitCode = await runScript(script, args, options);
    });
}
