/**
 * The cost model on the command line, shared by `magi-attn plan --degree auto` and
 * `magi-attn simulate`: measured kernel throughput read from the kernel benchmark's JSON file (the
 * one the package ships, unless --kernel-json names another) and a link preset (--link). The model
 * itself is src/cost, which the planner page runs too.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { KernelThroughput, type KernelBenchJSON } from '../cost/index.js';
import { packageRoot } from './package-root.js';

export function defaultKernelJson(): string {
  return join(packageRoot(), 'bench', 'results', 'kernel.json');
}

export function loadThroughput(path: string): KernelThroughput {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new InvalidArgumentError('--kernel-json', 'must be a readable kernel benchmark JSON (bench/results/kernel.json)', `${path}: ${(e as Error).message}`);
  }
  return new KernelThroughput(json as KernelBenchJSON);
}

/** Adds --link and --kernel-json; `use` (e.g. ' (with --degree auto)') says when the command reads them. */
export function addCostModelOptions(command: Command, use = ''): Command {
  return command
    .option('--link <preset|GB/s>', `links${use}: nvlink-ib (8 GPUs a node) | nvlink | ib | a bandwidth in GB/s per direction`, 'nvlink-ib')
    .option('--kernel-json <path>', `kernel benchmark results to read throughput from${use} (default: bench/results/kernel.json)`);
}
