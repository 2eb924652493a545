/**
 * The planner's charts, each a short Observable Plot spec over the numbers the worker sent:
 * mask at scale with the dispatch on both axes, per-rank area, traffic matrix, bytes per rank
 * against ring and Ulysses, overlap timelines, memory per rank, and the dispatch algorithms side
 * by side. No drawing code: marks over data.
 */
import * as Plot from '@observablehq/plot';
import type { CompareRow, PlanView, TimelineData } from './protocol.js';

/** A colour per rank that keeps neighbouring ranks apart (golden-angle hue steps). */
export function rankColor(rank: number): string {
  return `hsl(${(rank * 137.508) % 360}, 62%, 52%)`;
}

const fmtTokens = (x: number): string => (x >= 1e6 ? `${(x / 1e6).toFixed(x >= 1e7 ? 0 : 1)}M` : x >= 1e3 ? `${(x / 1e3).toFixed(x >= 1e4 ? 0 : 1)}k` : String(Math.round(x)));

export function maskPlot(v: PlanView, width: number): Element {
  const [v0, v1] = v.view;
  const span = v1 - v0;
  const strip = span * 0.035;
  const n = v.rasterSize;
  const pixels = Array.from(v.raster, (c) => {
    const g = Math.round(255 - 200 * c);
    return `rgb(${g},${g},${g + Math.round(20 * c)})`;
  });
  const chunks: Array<{ c: number; s: number; e: number; rank: number }> = [];
  const first = Math.floor(v0 / v.chunkSize);
  const last = Math.min(v.numChunks, Math.ceil(v1 / v.chunkSize));
  for (let c = first; c < last; c++) chunks.push({ c, s: Math.max(v0, c * v.chunkSize), e: Math.min(v1, (c + 1) * v.chunkSize), rank: v.chunkOwner[c] });
  const grid = chunks.length <= 256 ? chunks.slice(1).map((c) => c.s) : [];
  const size = Math.min(width, 640);
  return Plot.plot({
    width: size,
    height: size,
    marginLeft: 56,
    marginTop: 34,
    x: { domain: [v0 - strip, v1], label: 'key (k) →', axis: 'top', tickFormat: fmtTokens },
    y: { domain: [v0 - strip, v1], reverse: true, label: '↓ query (q)', tickFormat: fmtTokens },
    color: { type: 'identity' },
    marks: [
      Plot.raster(pixels, { width: n, height: n, x1: v0, x2: v1, y1: v0, y2: v1, imageRendering: 'pixelated' }),
      Plot.ruleX(grid, { y1: v0, y2: v1, stroke: '#b44', strokeOpacity: 0.25 }),
      Plot.ruleY(grid, { x1: v0, x2: v1, stroke: '#b44', strokeOpacity: 0.25 }),
      Plot.rect(chunks, { x1: 's', x2: 'e', y1: v0 - strip, y2: v0 - strip * 0.2, fill: (d: { rank: number }) => rankColor(d.rank), title: (d: { c: number; rank: number }) => `chunk ${d.c} → rank ${d.rank}` }),
      Plot.rect(chunks, { y1: 's', y2: 'e', x1: v0 - strip, x2: v0 - strip * 0.2, fill: (d: { rank: number }) => rankColor(d.rank), title: (d: { c: number; rank: number }) => `chunk ${d.c} → rank ${d.rank}` }),
      Plot.frame({ stroke: '#999' }),
    ],
  });
}

/** Whole-number rank ticks, at most about 16 of them. */
function rankTicks(P: number): number[] {
  const step = Math.max(1, 2 ** Math.ceil(Math.log2(P / 16)));
  return Array.from({ length: Math.floor((P - 1) / step) + 1 }, (_, i) => i * step);
}

function perRank(values: ArrayLike<number>): Array<{ rank: number; value: number }> {
  return Array.from({ length: values.length }, (_, rank) => ({ rank, value: values[rank] }));
}

export function areaPlot(v: PlanView, width: number): Element {
  const data = perRank(v.areaPerRank);
  const mean = data.reduce((a, d) => a + d.value, 0) / data.length;
  return Plot.plot({
    width,
    height: 220,
    marginLeft: 60,
    x: { label: 'rank', type: 'linear', ticks: rankTicks(v.cpSize), tickFormat: 'd' },
    y: { label: 'area (cells)', grid: true, tickFormat: 's' },
    color: { type: 'identity' },
    marks: [
      Plot.rectY(data, { x1: 'rank', x2: (d: { rank: number }) => d.rank + 1, y: 'value', fill: (d: { rank: number }) => rankColor(d.rank), title: (d: { rank: number; value: number }) => `rank ${d.rank}: ${d.value.toLocaleString()} cells` }),
      Plot.ruleY([mean], { stroke: 'black', strokeDasharray: '4 3' }),
      Plot.text([`max / mean ${v.imbalance.toFixed(4)}`], { frameAnchor: 'top-right', dy: 4, dx: -4 }),
    ],
  });
}

export function comparePlot(rows: CompareRow[], width: number): Element {
  const data = rows.flatMap((r) => Array.from(r.areaPerRank, (value, rank) => ({ alg: r.alg, rank, value })));
  return Plot.plot({
    width,
    height: 200,
    marginLeft: 60,
    fx: { label: null, domain: rows.map((r) => r.alg) },
    x: { axis: null, type: 'band' },
    y: { label: 'area per rank', grid: true, tickFormat: 's' },
    color: { type: 'identity' },
    marks: [
      Plot.barY(data, { fx: 'alg', x: 'rank', y: 'value', fill: (d: { rank: number }) => rankColor(d.rank), inset: 0 }),
      Plot.text(rows, { fx: 'alg', text: (r: CompareRow) => `imbalance ${r.imbalance.toFixed(3)}`, frameAnchor: 'top', dy: 4 }),
      Plot.frame({ stroke: '#ddd' }),
    ],
  });
}

export function trafficPlot(v: PlanView, width: number): Element {
  const P = v.cpSize;
  const bytes = Array.from(v.trafficTokens, (t) => (t > 0 ? t * v.kvTokenBytes : NaN));
  const size = Math.min(width, 420);
  return Plot.plot({
    width: size,
    height: size,
    marginLeft: 50,
    marginTop: 30,
    x: { domain: [0, P], label: 'receiver (dst) →', axis: 'top' },
    y: { domain: [0, P], reverse: true, label: '↓ sender (src)' },
    color: { type: 'sqrt', scheme: 'YlOrRd', label: 'bytes', legend: true, tickFormat: 's' },
    marks: [Plot.raster(bytes, { width: P, height: P, x1: 0, x2: P, y1: 0, y2: P, imageRendering: 'pixelated' }), Plot.frame({ stroke: '#999' })],
  });
}

export function bytesPlot(v: PlanView, width: number): Element {
  const magi = v.recvBytes[0];
  const others = v.recvBytes.slice(1).map((b) => ({ method: b.method + (b.note !== undefined ? ' (n/a)' : ''), bytes: Math.max(...b.perRank) }));
  return Plot.plot({
    width,
    height: 220,
    marginLeft: 60,
    marginRight: 110,
    x: { label: 'rank', type: 'linear', ticks: rankTicks(v.cpSize), tickFormat: 'd' },
    y: { label: 'bytes received, forward', grid: true, tickFormat: 's', domain: [0, Math.max(...magi.perRank, ...others.map((o) => o.bytes)) * 1.05] },
    color: { type: 'identity' },
    marks: [
      Plot.rectY(perRank(magi.perRank), { x1: 'rank', x2: (d: { rank: number }) => d.rank + 1, y: 'value', fill: '#1f77b4', title: (d: { rank: number; value: number }) => `rank ${d.rank}: ${d.value.toLocaleString()} bytes` }),
      Plot.ruleY(others, { y: 'bytes', stroke: (_: unknown, i: number) => ['#ff7f0e', '#2ca02c'][i], strokeWidth: 2 }),
      Plot.text(others, { y: 'bytes', text: 'method', frameAnchor: 'right', textAnchor: 'start', dx: 6, fill: (_: unknown, i: number) => ['#ff7f0e', '#2ca02c'][i] }),
      Plot.text(['magi-attention'], { frameAnchor: 'top-left', dx: 4, dy: 4, fill: '#1f77b4' }),
    ],
  });
}

/** The ranks a timeline shows: all up to `limit`, else the ones that finish last. */
export function timelineRanks(t: TimelineData, limit: number): number[] {
  const P = t.endSeconds.length;
  const ranks = Array.from({ length: P }, (_, r) => r);
  if (P <= limit) return ranks;
  return ranks.sort((a, b) => t.endSeconds[b] - t.endSeconds[a] || a - b).slice(0, limit).sort((a, b) => a - b);
}

const KIND_COLORS: Record<string, string> = {
  'host compute': '#2a7fb8',
  'remote compute': '#6baed6',
  'exposed wait': '#d62728',
  transfer: '#31a354',
  'waiting for peers': '#c7e9c0',
  reduce: '#8c6bb1',
};

export function timelinePlot(t: TimelineData, title: string, ranks: number[], width: number): Element {
  const bars: Array<{ lane: string; x1: number; x2: number; kind: string; label: string }> = [];
  const ms = (s: number): number => s * 1e3;
  for (const r of ranks) {
    const lane = `rank ${r}`;
    const comm = `rank ${r} comm`;
    for (let i = 0; i < t.computeStart.length; i++) {
      const s = t.computeStart[i][r];
      const e = t.computeEnd[i][r];
      if (i > 0) {
        const prev = t.computeEnd[i - 1][r];
        if (s > prev) bars.push({ lane, x1: ms(prev), x2: ms(s), kind: 'exposed wait', label: `waits ${ms(s - prev).toFixed(3)} ms for stage ${i - 1}'s k/v` });
      }
      if (e > s) bars.push({ lane, x1: ms(s), x2: ms(e), kind: i === 0 ? 'host compute' : 'remote compute', label: `${i === 0 ? 'host stage' : `stage ${i - 1}`}: ${ms(e - s).toFixed(3)} ms` });
    }
    for (const c of t.collectives) {
      if (c.end <= c.start) continue;
      const own = c.start + c.rankSeconds[r];
      const kind = c.kind === 'fetch' ? 'transfer' : 'reduce';
      if (own > c.start) bars.push({ lane: comm, x1: ms(c.start), x2: ms(own), kind, label: `${c.kind} stage ${c.stage}: ${ms(c.rankSeconds[r]).toFixed(3)} ms` });
      if (c.end > own) bars.push({ lane: comm, x1: ms(own), x2: ms(c.end), kind: 'waiting for peers', label: `${c.kind} stage ${c.stage}: waits for slower peers` });
    }
  }
  const lanes = ranks.flatMap((r) => [`rank ${r}`, `rank ${r} comm`]);
  return Plot.plot({
    width,
    height: 30 + lanes.length * 13,
    marginLeft: 90,
    x: { label: `${title} (ms)`, grid: true },
    y: { domain: lanes, label: null, tickSize: 0 },
    color: { domain: Object.keys(KIND_COLORS), range: Object.values(KIND_COLORS), legend: true },
    marks: [Plot.barX(bars, { x1: 'x1', x2: 'x2', y: 'lane', fill: 'kind', title: 'label', inset: 0.5 })],
  });
}

export function memoryPlot(v: PlanView, width: number): Element {
  const data = v.memory.flatMap((m, rank) => [
    { rank, part: 'activations', bytes: m.activations },
    { rank, part: 'remote k/v stage buffers', bytes: m.stageBuffers },
    { rank, part: m.backwardAccumulators >= m.forwardAccumulators ? 'float32 backward (dq, dk, dv, partial dk/dv)' : 'float32 forward (out, lse)', bytes: Math.max(m.forwardAccumulators, m.backwardAccumulators) },
  ]);
  return Plot.plot({
    width,
    height: 240,
    marginLeft: 60,
    x: { label: 'rank', type: 'linear', ticks: rankTicks(v.cpSize), tickFormat: 'd' },
    y: { label: 'bytes per rank (peak)', grid: true, tickFormat: 's' },
    color: { legend: true, domain: ['activations', 'remote k/v stage buffers', 'float32 forward (out, lse)', 'float32 backward (dq, dk, dv, partial dk/dv)'], range: ['#9ecae1', '#fd8d3c', '#74c476', '#9e9ac8'] },
    marks: [Plot.rectY(data, Plot.stackY({ x1: 'rank', x2: (d: { rank: number }) => d.rank + 1, y: 'bytes', fill: 'part', title: (d: { rank: number; part: string; bytes: number }) => `rank ${d.rank} ${d.part}: ${(d.bytes / 2 ** 20).toFixed(1)} MiB` }))],
  });
}
