#!/usr/bin/env node
/**
 * magi-attn: the command-line entry. Each sub-command lives in its own module and registers
 * itself here; this file only wires them together.
 */
import { Command } from 'commander';
import { registerDemo } from './demo.js';
import { registerPlan } from './plan.js';
import { registerRun } from './run.js';

const program = new Command();
program.name('magi-attn').description('Context-parallel flexible attention for long sequences with irregular masks').showHelpAfterError();
registerDemo(program);
registerPlan(program);
registerRun(program);
await program.parseAsync(process.argv);
