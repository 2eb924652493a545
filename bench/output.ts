/**
 * Where benchmarks write: bench/out/ (untracked) by default, so a casual run never rewrites the
 * committed results; bench/results/ (committed, quoted by the READMEs) only with --update-results.
 */
import type { Command } from 'commander';

export const COMMITTED_RESULTS_DIR = 'bench/results';
export const SCRATCH_RESULTS_DIR = 'bench/out';

/** Adds --out and --update-results to a benchmark's command line. */
export function withOutputOptions(program: Command, file: string): Command {
  return program
    .option('--out <file>', `JSON output (default ${SCRATCH_RESULTS_DIR}/${file}; ${COMMITTED_RESULTS_DIR}/${file} with --update-results)`)
    .option('--update-results', `write to the committed ${COMMITTED_RESULTS_DIR}/ (what the READMEs quote)`);
}

/** The output path the options ask for. */
export function outputPath(opts: { out?: string; updateResults?: boolean }, file: string): string {
  return opts.out ?? `${opts.updateResults === true ? COMMITTED_RESULTS_DIR : SCRATCH_RESULTS_DIR}/${file}`;
}
