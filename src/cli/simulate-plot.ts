/**
 * The plot of `magi-attn simulate --plot`: predicted TFLOP/s per GPU against cp. Its own module so
 * that the plotting libraries load only when a plot is asked for.
 */
import * as Plot from '@observablehq/plot';
import { plotToSvg } from './plot-svg.js';
import type { SimulateRow } from './simulate.js';

const METHOD_COLORS: ReadonlyArray<readonly [string, string]> = [
  ['magi-attention', '#1f77b4'],
  ['ring (zig-zag)', '#ff7f0e'],
  ['ulysses', '#2ca02c'],
];

/**
 * TFLOP/s per GPU of a whole step (forward + backward FLOPs over their time) against cp, one
 * panel per mask, one line per method: flat lines scale perfectly.
 */
export function simulatePlotSvg(rows: readonly SimulateRow[], title: string): string {
  const data = rows
    .filter((r) => r.note === undefined)
    .map((r) => ({ ...r, stepTflops: (r.forwardTflopsPerGpu * r.forwardMs + r.backwardTflopsPerGpu * r.backwardMs) / (r.forwardMs + r.backwardMs) }));
  const masks = [...new Set(rows.map((r) => r.mask))];
  return plotToSvg({
    width: Math.max(640, 210 * masks.length + 80),
    height: 330,
    marginTop: 64,
    marginRight: 20,
    marginBottom: 60,
    x: { type: 'log', base: 2, label: 'cp (ranks)', tickFormat: (d: number) => String(d) },
    y: { label: 'TFLOP/s per GPU, forward + backward', grid: true, domain: [0, Math.ceil(Math.max(...data.map((d) => d.stepTflops)) / 100) * 100] },
    fx: { domain: masks, label: null, padding: 0.08 },
    color: { domain: METHOD_COLORS.map((m) => m[0]), range: METHOD_COLORS.map((m) => m[1]) },
    marks: [
      Plot.frame({ stroke: '#ccc' }),
      Plot.lineY(data, { x: 'cp', y: 'stepTflops', fx: 'mask', stroke: 'method', marker: 'circle' }),
      Plot.text([title], { frameAnchor: 'top-left', dy: -58, fontSize: 12, fontWeight: 'bold', facet: 'super' }),
      ...METHOD_COLORS.map(([method, color], i) =>
        Plot.text([`\u25cf ${method}`], { frameAnchor: 'bottom-left', dx: 150 * i, dy: 52, fill: color, fontSize: 12, facet: 'super' }),
      ),
    ],
  });
}
