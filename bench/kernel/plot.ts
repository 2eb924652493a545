/**
 * The kernel benchmark's plot: one panel per pass (forward, backward), grouped bars per mask (one
 * bar per method) at one sequence length, TFLOP/s on the y axis; methods with no such mask (N/A)
 * are marked "n/a" under their group. An Observable Plot spec, written to SVG from Node with the
 * same library the planner page draws with.
 */
import * as Plot from '@observablehq/plot';
import { plotToSvg } from '../../src/cli/plot-svg.js';

export interface PlotRow {
  mask: string;
  method: string;
  fwd: number | null;
  bwd: number | null;
}

// Distinct colours for up to 16 methods (a CPU run has 15: three engines at five thread counts).
const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#aec7e8', '#ffbb78', '#98df8a', '#ff9896', '#c5b0d5', '#c49c94'];
// Legend entries per line under the panels, LEGEND_DX px apart (of the 980 px width).
const LEGEND_PER_LINE = 4;
const LEGEND_DX = 225;

export function kernelSvg(rows: readonly PlotRow[], masks: readonly string[], methods: readonly string[], title: string, unit = 'TFLOP/s'): string {
  const passes = [
    { key: 'fwd' as const, label: 'forward' },
    { key: 'bwd' as const, label: 'backward' },
  ];
  const data = passes.flatMap((p) => rows.map((r) => ({ pass: p.label, mask: r.mask, method: r.method, tflops: r[p.key] })));
  const measured = data.filter((d): d is typeof d & { tflops: number } => d.tflops !== null && Number.isFinite(d.tflops));
  const missing = data.filter((d) => d.tflops === null || !Number.isFinite(d.tflops));
  const color = (i: number): string => COLORS[i % COLORS.length];
  const legendLines = Math.ceil(methods.length / LEGEND_PER_LINE);
  return plotToSvg({
    width: 980,
    height: 704 + 16 * legendLines,
    marginTop: 66,
    marginBottom: 44 + 16 * legendLines,
    marginLeft: 60,
    marginRight: 70,
    fy: { domain: passes.map((p) => p.label), label: null, padding: 0.18 },
    fx: { domain: masks, label: null, padding: 0.1 },
    x: { domain: methods, axis: null },
    y: { label: `${unit} (from the mask area)`, labelAnchor: 'center', grid: true },
    color: { domain: methods, range: methods.map((_, i) => color(i)) },
    marks: [
      Plot.text([title], { frameAnchor: 'top-left', dy: -60, fontSize: 14, fontWeight: 'bold', facet: 'super' }),
      Plot.barY(measured, { fx: 'mask', fy: 'pass', x: 'method', y: 'tflops', fill: 'method', title: (d: { mask: string; method: string; pass: string; tflops: number }) => `${d.mask} ${d.method} ${d.pass}: ${d.tflops.toFixed(1)} ${unit}` }),
      Plot.text(measured, { fx: 'mask', fy: 'pass', x: 'method', y: 'tflops', text: (d: { tflops: number }) => String(Math.round(d.tflops)), dy: -5, fontSize: 9 }),
      Plot.text(missing, { fx: 'mask', fy: 'pass', x: 'method', y: 0, text: () => 'n/a', dy: -5, fontSize: 9, fill: '#999' }),
      Plot.ruleY([0]),
      ...methods.map((m, i) =>
        Plot.text([`\u25a0 ${m}`], { frameAnchor: 'bottom-left', dx: LEGEND_DX * (i % LEGEND_PER_LINE), dy: 50 + 16 * Math.floor(i / LEGEND_PER_LINE), fill: color(i), fontSize: 12, facet: 'super' }),
      ),
    ],
  });
}
