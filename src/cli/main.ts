#!/usr/bin/env node
/**
 * magi-attn: the command-line entry (program.ts holds the commands and the error handling).
 */
import { runCli } from './program.js';

process.exitCode = await runCli(process.argv.slice(2));
