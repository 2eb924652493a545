/**
 * The magi-attn program: its sub-commands, and the one place where every error ends. A user
 * mistake (a bad flag, a bad mask or plan file, an unwritable path) prints one line naming the
 * flag or field and the rule, exit status 2, never a stack trace; a failed check exits 1; an
 * internal error prints its message and exits 1 (MAGI_ATTN_DEBUG=1 adds the stack).
 * `runCli` runs in-process with its output captured, so tests drive the real command line.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { registerDemo } from './demo.js';
import { packageRoot } from './package-root.js';
import { registerPlan } from './plan.js';
import { registerPlanner } from './planner.js';
import { registerRun } from './run.js';
import { registerSimulate } from './simulate.js';

/** Where a command writes, and how it reports its exit status. */
export interface CliContext {
  out(text: string): void;
  err(text: string): void;
  /** The exit status the command asks for (0 unless set). */
  exitCode: number;
}

export const processIO = { out: (t: string) => void process.stdout.write(t), err: (t: string) => void process.stderr.write(t) };

/** The version in the package's package.json. */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

export function buildProgram(ctx: CliContext): Command {
  const program = new Command();
  program
    .name('magi-attn')
    .description('Context-parallel flexible attention for long sequences with irregular masks')
    .version(packageVersion(), '-V, --version')
    .exitOverride()
    .showHelpAfterError('(add --help for the options)')
    .configureOutput({ writeOut: (s) => ctx.out(s), writeErr: (s) => ctx.err(s) });
  registerDemo(program, ctx);
  registerPlan(program, ctx);
  registerRun(program, ctx);
  registerSimulate(program, ctx);
  registerPlanner(program, ctx);
  return program;
}

/** Runs the command line `argv` (without node and script) and resolves with the exit status. */
export async function runCli(argv: readonly string[], io: { out(t: string): void; err(t: string): void } = processIO): Promise<number> {
  const ctx: CliContext = { out: io.out, err: io.err, exitCode: 0 };
  const program = buildProgram(ctx);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return ctx.exitCode;
  } catch (e) {
    return reportError(e, argv, ctx);
  }
}

function reportError(e: unknown, argv: readonly string[], ctx: CliContext): number {
  if (e instanceof CommanderError) {
    // Commander has already printed its one-line message (or the help / version).
    return e.exitCode === 0 ? 0 : 2;
  }
  const command = argv.find((a) => !a.startsWith('-'));
  const prefix = command === undefined ? 'magi-attn' : `magi-attn ${command}`;
  if (e instanceof InvalidArgumentError) {
    ctx.err(`${prefix}: ${e.message}\n`);
    return 2;
  }
  const err = e instanceof Error ? e : new Error(String(e));
  ctx.err(`${prefix}: internal error: ${err.name}: ${err.message}${process.env.MAGI_ATTN_DEBUG ? `\n${err.stack ?? ''}` : ' (MAGI_ATTN_DEBUG=1 shows the stack)'}\n`);
  return 1;
}
