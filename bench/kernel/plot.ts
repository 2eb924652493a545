/**
 * A hand-written SVG of the kernel benchmark: one panel per pass (forward, backward), grouped bars
 * per mask (one bar per method) at one sequence length, TFLOP/s on the y axis; N/A bars are left
 * out and marked "n/a" under the group. No dependencies.
 */

export interface PlotRow {
  mask: string;
  method: string;
  fwd: number | null;
  bwd: number | null;
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceMax(v: number): number {
  if (v <= 0) return 100;
  const step = v > 400 ? 100 : v > 100 ? 50 : 10;
  return Math.ceil((v * 1.08) / step) * step;
}

export function kernelSvg(rows: readonly PlotRow[], masks: readonly string[], methods: readonly string[], title: string): string {
  const panelW = 900;
  const panelH = 300;
  const left = 60;
  const top = 50;
  const gap = 70;
  const legendH = 30;
  const width = left + panelW + 20;
  const height = top + 2 * panelH + gap + legendH + 40;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="100%" height="100%" fill="white"/>`);
  parts.push(`<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`);
  const get = (mask: string, method: string, pass: 'fwd' | 'bwd'): number | null => {
    const r = rows.find((x) => x.mask === mask && x.method === method);
    return r ? r[pass] : null;
  };
  (['fwd', 'bwd'] as const).forEach((pass, p) => {
    const y0 = top + p * (panelH + gap);
    let vmax = 0;
    for (const r of rows) vmax = Math.max(vmax, r[pass] ?? 0);
    const ymax = niceMax(vmax);
    const y = (v: number): number => y0 + panelH - (v / ymax) * panelH;
    parts.push(`<text x="${left}" y="${y0 - 8}" font-weight="bold">${pass === 'fwd' ? 'forward' : 'backward'} (TFLOP/s, from the mask area)</text>`);
    const step = ymax / 5;
    for (let i = 0; i <= 5; i++) {
      const v = step * i;
      parts.push(`<line x1="${left}" x2="${left + panelW}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
      parts.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${Math.round(v)}</text>`);
    }
    parts.push(`<line x1="${left}" x2="${left}" y1="${y0}" y2="${y0 + panelH}" stroke="#333"/>`);
    const groupW = panelW / masks.length;
    const barW = (groupW * 0.8) / methods.length;
    masks.forEach((mask, g) => {
      const gx = left + g * groupW + groupW * 0.1;
      const missing: string[] = [];
      methods.forEach((method, b) => {
        const v = get(mask, method, pass);
        const x = gx + b * barW;
        if (v === null || !Number.isFinite(v)) {
          missing.push(method);
          parts.push(`<text x="${x + barW / 2}" y="${y0 + panelH - 4}" text-anchor="middle" font-size="9" fill="#999">n/a</text>`);
          return;
        }
        parts.push(`<rect x="${x.toFixed(1)}" y="${y(v).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(y0 + panelH - y(v)).toFixed(1)}" fill="${COLORS[b % COLORS.length]}"><title>${esc(`${mask} ${method} ${pass}: ${v.toFixed(1)} TFLOP/s`)}</title></rect>`);
        parts.push(`<text x="${x + barW / 2 - 1}" y="${y(v) - 3}" text-anchor="middle" font-size="9">${Math.round(v)}</text>`);
      });
      parts.push(`<text x="${left + g * groupW + groupW / 2}" y="${y0 + panelH + 16}" text-anchor="middle">${esc(mask)}</text>`);
    });
    parts.push(`<line x1="${left}" x2="${left + panelW}" y1="${y0 + panelH}" y2="${y0 + panelH}" stroke="#333"/>`);
  });
  const ly = height - 25;
  methods.forEach((method, b) => {
    const lx = left + b * 150;
    parts.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${COLORS[b % COLORS.length]}"/>`);
    parts.push(`<text x="${lx + 18}" y="${ly}">${esc(method)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
