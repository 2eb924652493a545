/**
 * The pure part of bench/kernel/ncu-source.ts: Nsight Compute's source page (`--page source --csv
 * --print-source sass`), already split into rows, as one record per SASS instruction, and its
 * summary. The export's first row names the kernel, the second holds the column names; the
 * columns used are "Source" (the SASS text), "Warp Stall Sampling (All Samples)", "Instructions
 * Executed" and the per-reason `stall_*` columns (not their "(Not Issued)" twins, which count the
 * subset of samples where no instruction issued).
 */

export interface SassLine {
  /** 0-based position in the listing (the line numbers regions refer to). */
  line: number;
  address: string;
  sass: string;
  /** Warp-state samples on this instruction, all reasons. */
  samples: number;
  /** Warp-level executions. */
  executed: number;
  /** Samples per stall reason, the `stall_` prefix dropped (`long_sb`, `wait`, `selected`, ...). */
  stalls: Record<string, number>;
}

const SAMPLES = 'Warp Stall Sampling (All Samples)';
const EXECUTED = 'Instructions Executed';

/** Rows of the CSV (header rows included) to one record per instruction. */
export function sassSamplesFromCsv(rows: readonly (readonly string[])[]): SassLine[] {
  const h = rows.findIndex((r) => r.includes('Source') && r.includes(SAMPLES));
  if (h < 0) throw new Error(`not an ncu source-page export: no header row with "Source" and "${SAMPLES}" (export with --page source --csv --print-source sass, from a report with --section SourceCounters)`);
  const header = rows[h];
  const col = (name: string): number => header.indexOf(name);
  const iAddr = col('Address');
  const iSrc = col('Source');
  const iSamples = col(SAMPLES);
  const iExec = col(EXECUTED);
  if (iExec < 0) throw new Error(`ncu export has no "${EXECUTED}" column`);
  const stallCols = header.map((name, i) => ({ name, i })).filter((c) => c.name.startsWith('stall_') && !c.name.includes('Not Issued'));
  const num = (s: string | undefined): number => {
    const n = Number((s ?? '').replace(/,/g, ''));
    return Number.isFinite(n) ? n : 0;
  };
  return rows.slice(h + 1).filter((r) => r.length > iSrc && r[iSrc] !== undefined).map((r, line) => ({
    line,
    address: iAddr >= 0 ? r[iAddr] : '',
    sass: r[iSrc].trim(),
    samples: num(r[iSamples]),
    executed: num(r[iExec]),
    stalls: Object.fromEntries(stallCols.map((c) => [c.name.slice('stall_'.length), num(r[c.i])])),
  }));
}

export interface SassRegion {
  name: string;
  from: number;
  to: number;
}

export interface SassSummary {
  totalSamples: number;
  byReason: Record<string, number>;
  /**
   * The kernel's hot loop: the instructions executed within 10% of `executions` times, by default
   * the execution count the most instructions share (a loop body's instructions run equally often;
   * the most executed instructions are usually a producer warp spinning on a barrier instead).
   */
  loop: { executions: number; instructions: number; first: number; last: number; samples: number; opcodes: Record<string, number> };
  regions: Array<SassRegion & { samples: number; stalls: Record<string, number> }>;
}

/** The opcode of a SASS line without its predicate and modifiers: `@!P0 BRA 0x...` -> `BRA`, `HGMMA.64x64x16.F32.BF16 ...` -> `HGMMA`. */
export function sassOpcode(sass: string): string {
  const body = sass.replace(/^@!?U?P[T\d]+\s+/, '');
  return body.split(/\s/)[0].split('.')[0];
}

function addInto(acc: Record<string, number>, r: Record<string, number>): void {
  for (const [k, v] of Object.entries(r)) acc[k] = (acc[k] ?? 0) + v;
}

/** The execution count the most instructions share (ties: the larger count); 0 when nothing ran. */
export function modalExecutions(lines: readonly SassLine[]): number {
  const counts = new Map<number, number>();
  for (const l of lines) if (l.executed > 0) counts.set(l.executed, (counts.get(l.executed) ?? 0) + 1);
  let best = 0;
  let bestN = 0;
  for (const [e, n] of counts) if (n > bestN || (n === bestN && e > best)) [best, bestN] = [e, n];
  return best;
}

/** Totals per stall reason, the hot loop (see SassSummary.loop) and the regions' sums. */
export function sassSummary(lines: readonly SassLine[], opts: { executions?: number; regions?: readonly SassRegion[] } = {}): SassSummary {
  const byReason: Record<string, number> = {};
  for (const l of lines) addInto(byReason, l.stalls);
  const executions = opts.executions ?? modalExecutions(lines);
  const hot = lines.filter((l) => executions > 0 && l.executed >= 0.9 * executions && l.executed <= 1.1 * executions);
  const opcodes: Record<string, number> = {};
  for (const l of hot) opcodes[sassOpcode(l.sass)] = (opcodes[sassOpcode(l.sass)] ?? 0) + 1;
  const regions = (opts.regions ?? []).map((r) => {
    if (!(r.from <= r.to)) throw new Error(`region ${r.name}: FROM ${r.from} is past TO ${r.to}`);
    const inside = lines.filter((l) => l.line >= r.from && l.line <= r.to);
    const stalls: Record<string, number> = {};
    for (const l of inside) addInto(stalls, l.stalls);
    return { ...r, samples: inside.reduce((a, l) => a + l.samples, 0), stalls };
  });
  return {
    totalSamples: lines.reduce((a, l) => a + l.samples, 0),
    byReason,
    loop: {
      executions,
      instructions: hot.length,
      first: hot.length > 0 ? hot[0].line : -1,
      last: hot.length > 0 ? hot[hot.length - 1].line : -1,
      samples: hot.reduce((a, l) => a + l.samples, 0),
      opcodes,
    },
    regions,
  };
}
