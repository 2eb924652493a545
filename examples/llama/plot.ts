/**
 * The experiments' charts, as Observable Plot specs over their result JSON (the library the
 * project draws every chart with), written to standalone SVG through a linkedom document:
 *   llama-a-*.json, llama-b-*.json  loss curves of the runs, and |Δloss| against the first run with the bar;
 *   llama-c.json                    ours and the twin's loss curves, and the moving mean of |Δloss| with the bar;
 *   llama-throughput.json           tokens/s of ours and of each twin variant per sequence length.
 * `npm run example:llama -- plot --dir <results>` redraws them from the JSON files alone (the GPU
 * machine may not carry these packages; the JSON is the result, the SVG its picture).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import * as Plot from '@observablehq/plot';
import { parseHTML } from 'linkedom';

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];

/** A chart as a bare <svg> document (legends and titles are marks inside it). */
function svgOf(options: Plot.PlotOptions): string {
  const { document } = parseHTML('<!DOCTYPE html><html><body></body></html>');
  const svg = Plot.plot({ ...options, document }) as unknown as { tagName: string; outerHTML: string; setAttribute(k: string, v: string): void };
  if (svg.tagName.toLowerCase() !== 'svg') throw new Error(`plot: expected a bare <svg>, got <${svg.tagName}>`);
  svg.setAttribute('xmlns', 'http://www.w3.org/2000/svg');
  svg.setAttribute('style', 'background: white');
  return `<?xml version="1.0" encoding="UTF-8"?>\n${svg.outerHTML}\n`;
}

interface Curve {
  name: string;
  values: readonly number[];
}

/** Title, subtitle and a legend row, as marks in the top margin. */
function heading(title: string, subtitle: string, names: readonly string[]): Plot.Markish[] {
  return [
    Plot.text([title], { frameAnchor: 'top-left', dy: -58, fontSize: 14, fontWeight: 'bold' }),
    Plot.text([subtitle], { frameAnchor: 'top-left', dy: -40, fontSize: 11, fill: '#555' }),
    ...names.map((n, i) => Plot.text([`\u25a0 ${n}`], { frameAnchor: 'top-left', dy: -22, dx: 190 * i, fill: COLORS[i % COLORS.length], fontSize: 12 })),
  ];
}

/** Loss per step of each run. */
export function lossCurvesSvg(title: string, subtitle: string, curves: readonly Curve[]): string {
  const names = curves.map((c) => c.name);
  const data = curves.flatMap((c) => c.values.map((loss, i) => ({ run: c.name, step: i + 1, loss })).filter((d) => Number.isFinite(d.loss)));
  return svgOf({
    width: 960,
    height: 440,
    marginTop: 70,
    marginLeft: 70,
    x: { label: 'step' },
    y: { label: 'loss (nats)', labelAnchor: 'center', labelArrow: 'none', grid: true },
    color: { domain: names, range: names.map((_, i) => COLORS[i % COLORS.length]) },
    marks: [...heading(title, subtitle, names), Plot.lineY(data, { x: 'step', y: 'loss', stroke: 'run', strokeWidth: 1.1, strokeOpacity: 0.85 })],
  });
}

/** |Δloss| per step (or its moving mean) of each comparison, with the pass bar as a dashed rule. */
export function deltaSvg(title: string, subtitle: string, curves: readonly Curve[], bar: number, barLabel: string, firstStep = 1): string {
  const names = curves.map((c) => c.name);
  const data = curves.flatMap((c) => c.values.map((d, i) => ({ pair: c.name, step: i + firstStep, d })).filter((x) => Number.isFinite(x.d)));
  return svgOf({
    width: 960,
    height: 300,
    marginTop: 70,
    marginLeft: 70,
    x: { label: 'step' },
    y: { label: '|Δloss| (nats)', labelAnchor: 'center', labelArrow: 'none', grid: true, domain: [0, Math.max(bar * 1.15, ...data.map((x) => x.d))] },
    color: { domain: names, range: names.map((_, i) => COLORS[(i + 1) % COLORS.length]) },
    marks: [
      ...heading(title, subtitle, []),
      ...names.map((n, i) => Plot.text([`\u25a0 ${n}`], { frameAnchor: 'top-left', dy: -22, dx: 260 * i, fill: COLORS[(i + 1) % COLORS.length], fontSize: 12 })),
      Plot.ruleY([bar], { stroke: '#d62728', strokeDasharray: '6,4' }),
      Plot.text([barLabel], { x: data.length > 0 ? data[data.length - 1].step : firstStep, y: bar, textAnchor: 'end', dy: -6, fill: '#d62728' }),
      Plot.lineY(data, { x: 'step', y: 'd', stroke: 'pair', strokeWidth: 1 }),
      Plot.ruleY([0]),
    ],
  });
}

interface BarRow {
  group: string;
  name: string;
  value: number | null;
}

/** Grouped bars: one group per `group`, one bar per `name`; null values are marked n/a. */
export function barsSvg(title: string, subtitle: string, yLabel: string, rows: readonly BarRow[]): string {
  const groups = [...new Set(rows.map((r) => r.group))];
  const names = [...new Set(rows.map((r) => r.name))];
  const measured = rows.filter((r): r is BarRow & { value: number } => r.value !== null && Number.isFinite(r.value));
  const missing = rows.filter((r) => r.value === null || !Number.isFinite(r.value));
  // Legend rows of five above the frame; the title block moves up by the extra rows.
  const perRow = 5;
  const extra = 16 * Math.max(0, Math.ceil(names.length / perRow) - 1);
  const top = Math.max(0, ...measured.map((r) => r.value));
  return svgOf({
    width: 960,
    height: 480,
    marginTop: 70 + extra,
    marginLeft: 80,
    fx: { domain: groups, label: null, padding: 0.15 },
    x: { domain: names, axis: null },
    // headroom for the value labels over the tallest bar
    y: { label: yLabel, labelAnchor: 'center', labelArrow: 'none', grid: true, domain: [0, top * 1.08 || 1] },
    color: { domain: names, range: names.map((_, i) => COLORS[i % COLORS.length]) },
    marks: [
      Plot.text([title], { frameAnchor: 'top-left', dy: -58 - extra, fontSize: 14, fontWeight: 'bold', facet: 'super' }),
      Plot.text([subtitle], { frameAnchor: 'top-left', dy: -40 - extra, fontSize: 11, fill: '#555', facet: 'super' }),
      ...names.map((n, i) => Plot.text([`\u25a0 ${n}`], { frameAnchor: 'top-left', dy: -22 - extra + 16 * Math.floor(i / perRow), dx: 175 * (i % perRow), fill: COLORS[i % COLORS.length], fontSize: 12, facet: 'super' })),
      Plot.barY(measured, { fx: 'group', x: 'name', y: 'value', fill: 'name' }),
      Plot.text(measured, { fx: 'group', x: 'name', y: 'value', text: (d: { value: number }) => Math.round(d.value).toLocaleString('en-US'), dy: -6, fontSize: 9 }),
      Plot.text(missing, { fx: 'group', x: 'name', y: 0, text: () => 'n/a', dy: -6, fontSize: 9, fill: '#999' }),
      Plot.ruleY([0]),
    ],
  });
}

// ---------------------------------------------------------------------------------------------
// From result files

interface Provenance {
  machine: string;
  seqLen: number;
  steps: number;
  model: { preset: string; parameters: number };
  data: { corpus: string };
}

interface LossVerdictJson {
  meanAbsDelta: number;
  worstWindow: number;
  window: number;
  firstExceeded: number | null;
  bar: number;
  pass: boolean;
}

/** "CPU" or the GPU's name. */
function machineName(device: string): string {
  return device.split(' (')[0];
}

function describe(p: Provenance, steps = p.steps): string {
  return `${p.model.preset} model (${(p.model.parameters / 1e6).toFixed(1)} M params), ${p.data.corpus}, ${p.seqLen} tokens/step, ${steps} steps, ${machineName(p.machine)}`;
}

function movingMean(d: readonly number[], w: number): number[] {
  const out: number[] = [];
  let sum = 0;
  for (let i = 0; i < d.length; i++) {
    sum += d[i];
    if (i >= w) sum -= d[i - w];
    if (i >= w - 1) out.push(sum / w);
  }
  return out;
}

/** The SVGs of one result file, by file name; [] for files that have no chart. */
export function chartsFor(file: string, json: unknown): Array<[string, string]> {
  const name = basename(file, '.json');
  const stem = (suffix: string): string => `${name}${suffix}.svg`;
  if (/^llama-[ab]-/.test(name)) {
    const r = json as Provenance & { comparison: string; losses: Record<string, number[]>; verdict?: LossVerdictJson; verdicts?: Record<string, LossVerdictJson>; pass?: boolean };
    const curves = Object.entries(r.losses).map(([n, values]) => ({ name: n, values }));
    const pass = r.verdict?.pass ?? r.pass ?? false;
    const what = name.startsWith('llama-a') ? 'Experiment A' : 'Experiment B';
    const summary = r.verdict ? `mean |Δloss| ${r.verdict.meanAbsDelta.toExponential(2)}` : Object.entries(r.verdicts ?? {}).map(([k, v]) => `${k} ${v.meanAbsDelta.toExponential(2)}`).join(', ');
    const base = curves[0];
    return [
      [stem(''), lossCurvesSvg(`${what}: ${r.comparison} (${pass ? 'pass' : 'FAIL'})`, describe(r), curves)],
      [stem('-delta'), deltaSvg(`${what}: |Δloss| against ${base.name} (${summary}; bar: mean ≤ 0.01)`, describe(r), curves.slice(1).map((c) => ({ name: `|${c.name} − ${base.name}|`, values: c.values.map((l, i) => Math.abs(l - base.values[i])) })), 0.01, 'bar 0.01')],
    ];
  }
  if (/^llama-c(-|$)/.test(name)) {
    const r = json as { ours: Provenance & { losses: number[] }; twin: { losses: number[]; attention: string; versions: Record<string, string> }; verdict: LossVerdictJson };
    const v = r.verdict;
    const twinNote = `twin: ${r.twin.attention}, torch ${r.twin.versions.torch ?? '?'}, transformers ${r.twin.versions.transformers ?? '?'}`;
    const d = r.ours.losses.map((l, i) => Math.abs(l - r.twin.losses[i]));
    return [
      [stem(''), lossCurvesSvg(`Experiment C: ours vs transformers' LlamaForCausalLM (${v.pass ? 'pass' : 'FAIL'})`, `${describe(r.ours, v.window > 0 ? r.ours.losses.length : 0)}; ${twinNote}`, [{ name: 'ours (TypeScript, FFA)', values: r.ours.losses }, { name: 'PyTorch twin', values: r.twin.losses }])],
      [
        stem('-delta'),
        deltaSvg(
          `Experiment C: ${v.window}-step moving mean of |Δloss| (worst ${v.worstWindow.toExponential(2)}, first over the bar: ${v.firstExceeded ?? 'none'})`,
          describe(r.ours),
          [{ name: `${v.window}-step mean of |ours − twin|`, values: movingMean(d, v.window) }],
          v.bar,
          `bar ${v.bar}`,
          v.window,
        ),
      ],
    ];
  }
  if (/^llama-throughput(-|$)/.test(name)) {
    const r = json as { ours: { rows: Array<{ seqLen: number; tokensPerSecond: number }>; machine: string; model: { preset: string; parameters: number } }; twin: { rows: Array<{ seqLen: number; variant: string; tokensPerSecond: number | null }>; versions: Record<string, string> } };
    const variants = [...new Set(r.twin.rows.map((t) => t.variant))];
    const rows: BarRow[] = r.ours.rows.flatMap((o) => [
      { group: `${o.seqLen / 1024}k tokens`, name: 'ours (TypeScript, FFA)', value: o.tokensPerSecond },
      ...variants.map((v) => ({ group: `${o.seqLen / 1024}k tokens`, name: `twin ${v}`, value: r.twin.rows.find((t) => t.seqLen === o.seqLen && t.variant === v)?.tokensPerSecond ?? null })),
    ]);
    return [[stem(''), barsSvg('Training throughput: ours vs the PyTorch twin', `${r.ours.model.preset} model (${(r.ours.model.parameters / 1e6).toFixed(1)} M params), ${machineName(r.ours.machine)}; twin: torch ${r.twin.versions.torch ?? '?'}, transformers ${r.twin.versions.transformers ?? '?'}`, 'tokens / s (full training step)', rows)]];
  }
  return [];
}

/** Writes the SVGs of every llama-*.json in `dir`; returns the files written. */
export function plotDirectory(dir: string): string[] {
  const written: string[] = [];
  for (const f of readdirSync(dir).filter((x) => /^llama-.*\.json$/.test(x))) {
    for (const [svgName, svg] of chartsFor(f, JSON.parse(readFileSync(join(dir, f), 'utf8')))) {
      writeFileSync(join(dir, svgName), svg);
      written.push(join(dir, svgName));
    }
  }
  return written;
}
