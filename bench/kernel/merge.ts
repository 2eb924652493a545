/**
 * One kernel-benchmark result from runs over disjoint sequence lengths (run.ts --merge): with the
 * idle pause before every method's cell, the whole 4k-64k run no longer fits one 10-minute
 * device call, so it runs as two (e.g. --seqlens 4096,8192,16384 and 32768,65536). Every cell's
 * methods still ran in the same call; the merge refuses runs whose settings (other than the
 * sequence lengths) or GPU differ, or whose lengths overlap, and keeps each run's env under
 * env.runs.
 */
import type { KernelBenchResult } from './run.js';

export function mergeKernelResults(parts: readonly KernelBenchResult[]): KernelBenchResult {
  if (parts.length < 2) throw new Error(`--merge needs two or more kernel.json files, got ${parts.length}`);
  const [first] = parts;
  const { seqlens: _first, ...same } = first.settings;
  const seen = new Set<number>();
  for (const [i, p] of parts.entries()) {
    if (p.gpu !== first.gpu) throw new Error(`--merge: run ${i + 1} is on ${p.gpu}, run 1 on ${first.gpu}`);
    const { seqlens, ...rest } = p.settings;
    if (JSON.stringify(rest) !== JSON.stringify(same)) throw new Error(`--merge: run ${i + 1}'s settings ${JSON.stringify(rest)} differ from run 1's ${JSON.stringify(same)}`);
    for (const s of seqlens) {
      if (seen.has(s)) throw new Error(`--merge: sequence length ${s} is in more than one run`);
      seen.add(s);
    }
  }
  const seqlens = [...seen].sort((a, b) => a - b);
  const rank = (s: number): number => seqlens.indexOf(s);
  // a stable sort keeps each run's order of masks and methods within a length
  const results = parts.flatMap((p) => p.results).sort((a, b) => rank(a.seqlen) - rank(b.seqlen));
  const masks = parts.flatMap((p) => p.masks).sort((a, b) => rank(a.seqlen) - rank(b.seqlen));
  const { total_wall_s: _t, wall_s: _w, wall_s_by_seqlen: _b, ...env } = first.env;
  return {
    gpu: first.gpu,
    env: { ...env, runs: parts.map((p) => ({ seqlens: p.settings.seqlens, env: p.env })) },
    settings: { ...first.settings, seqlens },
    masks,
    results,
  };
}
