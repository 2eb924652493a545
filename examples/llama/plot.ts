/**
 * SVG charts for the experiments' result files, as data in and a string out: loss curves (one
 * line per run, an optional second panel for their difference) and grouped bars (throughput).
 * No dependencies, so the GPU machine (which has no npm) draws them too.
 */

export interface Series {
  name: string;
  /** [x, y] points in x order. */
  points: ReadonlyArray<readonly [number, number]>;
  color?: string;
}

export interface LineChart {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** A second panel below (e.g. |Δloss|), with its own y axis and optional horizontal bar. */
  lower?: { yLabel: string; series: Series[]; bar?: { y: number; label: string } };
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];

/** The colour of series i when none is given (so a second panel can match the first). */
export function seriesColor(i: number): string {
  return COLORS[i % COLORS.length];
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function extent(values: number[]): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  if (lo === Infinity) return [0, 1];
  if (lo === hi) return [lo - 0.5, hi + 0.5];
  const pad = (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
}

function ticks(lo: number, hi: number, n = 5): number[] {
  const step = 10 ** Math.floor(Math.log10((hi - lo) / n));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => (hi - lo) / s <= n) ?? step * 10;
  const out: number[] = [];
  for (let v = Math.ceil(lo / nice) * nice; v <= hi + 1e-12; v += nice) out.push(Number(v.toPrecision(6)));
  return out;
}

function panel(parts: string[], x0: number, y0: number, w: number, h: number, xr: [number, number], series: Series[], yLabel: string, xLabel: string | null, bar?: { y: number; label: string }): void {
  const yr = extent([...series.flatMap((s) => s.points.map((p) => p[1])), ...(bar ? [bar.y, 0] : [])]);
  const sx = (x: number): number => x0 + ((x - xr[0]) / (xr[1] - xr[0] || 1)) * w;
  const sy = (y: number): number => y0 + h - ((y - yr[0]) / (yr[1] - yr[0])) * h;
  parts.push(`<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="none" stroke="#999"/>`);
  for (const t of ticks(yr[0], yr[1])) {
    parts.push(`<line x1="${x0}" x2="${x0 + w}" y1="${sy(t)}" y2="${sy(t)}" stroke="#eee"/>`);
    parts.push(`<text x="${x0 - 6}" y="${sy(t) + 4}" text-anchor="end">${t}</text>`);
  }
  for (const t of ticks(xr[0], xr[1])) parts.push(`<text x="${sx(t)}" y="${y0 + h + 16}" text-anchor="middle">${t}</text>`);
  parts.push(`<text transform="translate(${x0 - 48} ${y0 + h / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
  if (xLabel !== null) parts.push(`<text x="${x0 + w / 2}" y="${y0 + h + 34}" text-anchor="middle">${esc(xLabel)}</text>`);
  if (bar) {
    parts.push(`<line x1="${x0}" x2="${x0 + w}" y1="${sy(bar.y)}" y2="${sy(bar.y)}" stroke="#d62728" stroke-dasharray="6 4"/>`);
    parts.push(`<text x="${x0 + w - 4}" y="${sy(bar.y) - 4}" text-anchor="end" fill="#d62728">${esc(bar.label)}</text>`);
  }
  series.forEach((s, i) => {
    const color = s.color ?? COLORS[i % COLORS.length];
    const d = s.points.filter((p) => Number.isFinite(p[1])).map((p, j) => `${j === 0 ? 'M' : 'L'}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join('');
    parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.3" opacity="0.85"/>`);
    parts.push(`<rect x="${x0 + 10}" y="${y0 + 10 + i * 16}" width="12" height="3" fill="${color}"/><text x="${x0 + 28}" y="${y0 + 15 + i * 16}">${esc(s.name)}</text>`);
  });
}

export function lineChartSvg(c: LineChart): string {
  const [left, top, w, h, gap] = [70, c.subtitle ? 62 : 44, 820, 300, 60];
  const lowerH = c.lower ? 160 : 0;
  const width = left + w + 30;
  const height = top + h + (c.lower ? gap + lowerH : 0) + 50;
  const all = [...c.series, ...(c.lower?.series ?? [])].flatMap((s) => s.points.map((p) => p[0]));
  const xr = extent(all);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(c.title)}</text>`,
  ];
  if (c.subtitle) parts.push(`<text x="${width / 2}" y="42" text-anchor="middle" fill="#555">${esc(c.subtitle)}</text>`);
  panel(parts, left, top, w, h, xr, c.series, c.yLabel, c.lower ? null : c.xLabel);
  if (c.lower) panel(parts, left, top + h + gap, w, lowerH, xr, c.lower.series, c.lower.yLabel, c.xLabel, c.lower.bar);
  parts.push('</svg>');
  return parts.join('\n');
}

export interface BarGroup {
  label: string;
  bars: Array<{ name: string; value: number | null }>;
}

/** Grouped bars (null: not measured, drawn as "n/a"). */
export function barChartSvg(title: string, subtitle: string, yLabel: string, groups: BarGroup[]): string {
  const names = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.name)))];
  const [left, top, h] = [70, 62, 300];
  const groupW = Math.max(160, names.length * 36 + 30);
  const width = left + groups.length * groupW + 30;
  const height = top + h + 60 + names.length * 16;
  const max = Math.max(1, ...groups.flatMap((g) => g.bars.map((b) => b.value ?? 0))) * 1.1;
  const sy = (v: number): number => top + h - (v / max) * h;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<text x="${width / 2}" y="42" text-anchor="middle" fill="#555">${esc(subtitle)}</text>`,
    `<text transform="translate(${left - 50} ${top + h / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`,
  ];
  for (const t of ticks(0, max)) {
    parts.push(`<line x1="${left}" x2="${width - 30}" y1="${sy(t)}" y2="${sy(t)}" stroke="#eee"/><text x="${left - 6}" y="${sy(t) + 4}" text-anchor="end">${t}</text>`);
  }
  const barW = (groupW - 30) / names.length;
  groups.forEach((g, gi) => {
    const gx = left + gi * groupW + 15;
    g.bars.forEach((b) => {
      const i = names.indexOf(b.name);
      const x = gx + i * barW;
      if (b.value === null) parts.push(`<text x="${x + barW / 2}" y="${top + h - 4}" text-anchor="middle" font-size="10">n/a</text>`);
      else {
        parts.push(`<rect x="${x}" y="${sy(b.value)}" width="${barW - 2}" height="${top + h - sy(b.value)}" fill="${COLORS[i % COLORS.length]}"/>`);
        parts.push(`<text x="${x + barW / 2}" y="${sy(b.value) - 3}" text-anchor="middle" font-size="10">${Math.round(b.value).toLocaleString('en-US')}</text>`);
      }
    });
    parts.push(`<text x="${gx + (groupW - 30) / 2}" y="${top + h + 16}" text-anchor="middle">${esc(g.label)}</text>`);
  });
  names.forEach((n, i) => parts.push(`<rect x="${left}" y="${top + h + 30 + i * 16}" width="12" height="10" fill="${COLORS[i % COLORS.length]}"/><text x="${left + 18}" y="${top + h + 39 + i * 16}">${esc(n)}</text>`));
  parts.push('</svg>');
  return parts.join('\n');
}
