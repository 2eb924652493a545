/**
 * bench/kernel/ncu-source: where a kernel's warps wait, per SASS instruction, from Nsight Compute's
 * warp-state sampling (issue 11). The method that found the Hopper backward's Pᵀ stall
 * (bench/kernel/README.md, "Hopper backward: the Pᵀ step"), as a script instead of a notebook.
 *
 * On the GPU machine (ncu needs the hardware counters; --clock-control none leaves the clocks alone):
 *   ncu --clock-control none -k regex:'^ffa_bwd_sm90_bf16_d128$' -c 1 --section SourceCounters \
 *     --import-source no -o OUT/bwd node dist/bench/kernel/bwd-walk.js --seqlens 16384 --masks full \
 *     --variants cut --iters 1 --warmup 0 --verify-seqlen 0
 *   ncu -i OUT/bwd.ncu-rep --page source --csv --print-source sass > OUT/bwd-sass.csv
 * Then, here or there:
 *   node --import tsx bench/kernel/ncu-source.ts OUT/bwd-sass.csv [--top 30] [--executions N]
 *     [--region NAME=FROM-TO ...] [--listing FILE] [--json FILE]
 *
 * Prints the samples per stall reason over the whole kernel; the hot loop (the instructions
 * executed within 10% of --executions times, by default the count the most instructions share: a
 * loop body's) with its instruction count per opcode; the --top instructions by samples with
 * their three largest stall reasons; and per --region (a range of SASS line numbers, as numbered
 * in the listing) the samples, their share of all samples and of the loop's, and their reasons. --listing writes every instruction with its line number, samples, executions and stall
 * reasons, to pick regions from. Samples are proportional to the time warps spend on an
 * instruction, stalled or issuing ("selected"); producer warps that spin on a barrier show up too.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { parse } from 'csv-parse/sync';
import { renderTable } from '../../src/cli/table.js';
import { intAtLeast } from '../../src/cli/flags.js';
import { sassSamplesFromCsv, sassSummary, type SassLine } from './ncu-source-parse.js';

const program = new Command()
  .name('ncu-source')
  .argument('<csv>', "ncu's --page source --csv --print-source sass export")
  .option('--top <n>', 'instructions listed by samples', intAtLeast(1), 30)
  .option('--executions <n>', "the hot loop's execution count (default: the count the most instructions share)", intAtLeast(1))
  .option('--region <spec>', 'NAME=FROM-TO: SASS lines FROM..TO summed (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
  .option('--listing <file>', 'write the annotated listing here')
  .option('--json <file>', 'write the summary as JSON here')
  .parse();
const opts = program.opts<{ top: number; executions?: number; region: string[]; listing?: string; json?: string }>();

const rows = parse(readFileSync(program.args[0], 'utf8'), { relax_column_count: true }) as string[][];
const lines = sassSamplesFromCsv(rows);
const regions = opts.region.map((spec) => {
  const m = /^(.+)=(\d+)-(\d+)$/.exec(spec);
  if (m === null) throw new Error(`--region ${spec}: expected NAME=FROM-TO (SASS line numbers)`);
  return { name: m[1], from: Number(m[2]), to: Number(m[3]) };
});
const s = sassSummary(lines, { ...(opts.executions === undefined ? {} : { executions: opts.executions }), regions });

const pct = (x: number): string => `${((100 * x) / s.totalSamples).toFixed(1)}%`;
const reasons = (r: Record<string, number>, n: number): string =>
  Object.entries(r)
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
console.log(`${lines.length} SASS instructions, ${s.totalSamples} warp-state samples`);
console.log(renderTable(['stall reason', 'samples', 'share'], Object.entries(s.byReason).sort((a, b) => b[1] - a[1]).filter(([, v]) => v > 0).map(([k, v]) => [k, String(v), pct(v)])));
console.log(`\nhot loop: ${s.loop.instructions} instructions executed about ${s.loop.executions} times (lines ${s.loop.first}-${s.loop.last}), ${pct(s.loop.samples)} of the samples`);
console.log(`opcodes: ${Object.entries(s.loop.opcodes).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`);
const top = [...lines].sort((a, b) => b.samples - a.samples).slice(0, opts.top);
console.log(`\ntop ${opts.top} instructions by samples`);
const byLine = (l: SassLine): string[] => [String(l.line), String(l.samples), pct(l.samples), String(l.executed), l.sass.slice(0, 70), reasons(l.stalls, 3)];
console.log(renderTable(['line', 'samples', 'share', 'executed', 'SASS', 'largest stall reasons'], top.map(byLine)));
if (s.regions.length > 0) {
  console.log('\nregions');
  const ofLoop = (x: number): string => (s.loop.samples > 0 ? `${((100 * x) / s.loop.samples).toFixed(1)}%` : '—');
  console.log(renderTable(['region', 'lines', 'samples', 'share', 'of the loop', 'largest stall reasons'], s.regions.map((r) => [r.name, `${r.from}-${r.to}`, String(r.samples), pct(r.samples), ofLoop(r.samples), reasons(r.stalls, 4)])));
}
if (opts.listing !== undefined) {
  writeFileSync(opts.listing, lines.map((l) => `${String(l.line).padStart(5)} ${String(l.samples).padStart(8)} ex=${String(l.executed).padStart(10)}  ${l.sass.padEnd(80)} ${reasons(l.stalls, 3)}`).join('\n') + '\n');
  console.log(`wrote ${opts.listing}`);
}
if (opts.json !== undefined) {
  writeFileSync(opts.json, JSON.stringify({ source: program.args[0], ...s, top }, null, 1));
  console.log(`wrote ${opts.json}`);
}
