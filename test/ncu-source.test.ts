/**
 * bench/kernel/ncu-source-parse.ts (no GPU needed): an ncu source-page export in the layout ncu
 * 2025.3 writes (a kernel-name row, a header row, every field quoted, SASS operands with commas)
 * read back per instruction, and the summary's sums, hot loop and regions on numbers chosen so
 * each could come out wrong.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'csv-parse/sync';
import { sassOpcode, sassSamplesFromCsv, sassSummary } from '../bench/kernel/ncu-source-parse.js';

const HEADER = ['Address', 'Source', 'Warp Stall Sampling (All Samples)', 'Warp Stall Sampling (Not-issued Samples)', '# Samples', 'Instructions Executed', 'stall_long_sb', 'stall_short_sb', 'stall_wait', 'stall_long_sb (Not Issued)'];
const row = (addr: string, sass: string, samples: number, executed: number, longSb: number, shortSb: number, wait: number): string[] =>
  [addr, sass, String(samples), '0', '0', String(executed), String(longSb), String(shortSb), String(wait), '999'];
const EXPORT = [
  ['Kernel Name', 'ffa_bwd_sm90_bf16_d128'],
  HEADER,
  row('0x10', '      LDC R1, c[0x0][0x28]', 5, 100, 0, 0, 5),
  row('0x20', '      LDS.64 R12, [R12+0x28000]', 30, 1000, 0, 10, 20),
  row('0x30', '      FFMA R184, R184, UR14, -R12', 400, 1000, 0, 390, 10),
  row('0x40', '@!P0  BRA 0x7f8f297c1150', 600, 5000, 600, 0, 0),
  row('0x48', '      ISETP.NE.AND P4, PT, RZ, UR12, PT', 0, 950, 0, 0, 0),
  row('0x50', '      HGMMA.64x64x16.F32.BF16 R152, gdesc[UR24], R152, gsb0', 70, 1000, 0, 0, 70),
  row('0x60', '      EXIT', 1, 100, 0, 0, 1),
]
  .map((r) => r.map((f) => `"${f.replace(/"/g, '""')}"`).join(','))
  .join('\n');

test('ncu source: the export read per instruction (quoted fields, commas in SASS, the Not Issued twins ignored)', () => {
  const lines = sassSamplesFromCsv(parse(EXPORT, { relax_column_count: true }) as string[][]);
  assert.equal(lines.length, 7);
  assert.deepEqual(lines[2], { line: 2, address: '0x30', sass: 'FFMA R184, R184, UR14, -R12', samples: 400, executed: 1000, stalls: { long_sb: 0, short_sb: 390, wait: 10 } });
  assert.equal(lines[5].sass, 'HGMMA.64x64x16.F32.BF16 R152, gdesc[UR24], R152, gsb0');
});

test('ncu source: summary sums per reason, the hot loop around the most shared execution count (not the spin loop), and regions by line', () => {
  const lines = sassSamplesFromCsv(parse(EXPORT, { relax_column_count: true }) as string[][]);
  const s = sassSummary(lines, { regions: [{ name: 'p', from: 1, to: 2 }, { name: 'tail', from: 4, to: 5 }] });
  assert.equal(s.totalSamples, 1106);
  assert.deepEqual(s.byReason, { long_sb: 600, short_sb: 400, wait: 106 });
  // 1000 is the count three instructions share; 950 is within 10% of it and joins; the spin
  // loop's 5000 and the prologue's 100s do not
  assert.deepEqual({ ...s.loop, opcodes: undefined }, { executions: 1000, instructions: 4, first: 1, last: 5, samples: 500, opcodes: undefined });
  assert.deepEqual(s.loop.opcodes, { LDS: 1, FFMA: 1, ISETP: 1, HGMMA: 1 });
  assert.deepEqual(s.regions.map((r) => [r.name, r.samples, r.stalls.short_sb]), [['p', 430, 400], ['tail', 70, 0]]);
  const spin = sassSummary(lines, { executions: 5000 });
  assert.deepEqual([spin.loop.instructions, spin.loop.first, spin.loop.samples], [1, 3, 600]);
  assert.throws(() => sassSummary(lines, { regions: [{ name: 'bad', from: 3, to: 2 }] }), /FROM 3 is past TO 2/);
});

test('ncu source: opcodes without predicates and modifiers; a file that is not a source export is refused', () => {
  assert.equal(sassOpcode('@!P0  BRA 0x7f8f297c1150'), 'BRA');
  assert.equal(sassOpcode('@UP1 UIADD3 UR4, UR4, 0x1, URZ'), 'UIADD3');
  assert.equal(sassOpcode('HGMMA.64x128x16.F32.BF16 R24, R228, gdesc[UR20].tnspB, R24'), 'HGMMA');
  assert.throws(() => sassSamplesFromCsv([['ID', 'Kernel Name'], ['0', 'k']]), /not an ncu source-page export/);
});
