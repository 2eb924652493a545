/**
 * The pass bars of the loss-alignment experiments (issue 14), as pure functions of the recorded
 * numbers, so the CPU runs, the GPU runs and the PyTorch twin's results are judged by one rule:
 *   step-1 gradients: cosine similarity >= 0.999 for every parameter tensor;
 *   A and B: mean |Δloss| <= 0.01 over the compared steps;
 *   C: the mean |Δloss| over every window of `window` consecutive steps <= 0.02, reporting the
 *      first step where it is exceeded, the worst window, and max and mean |Δloss|.
 */

export const GRAD_COSINE_BAR = 0.999;
export const MEAN_DELTA_BAR = 0.01;
export const WINDOW_DELTA_BAR = 0.02;

export interface TensorComparison {
  name: string;
  elements: number;
  cosine: number;
  /** ‖a − b‖ / ‖b‖ */
  relL2: number;
  normA: number;
  normB: number;
}

export function compareTensors(name: string, a: ArrayLike<number>, b: ArrayLike<number>): TensorComparison {
  if (a.length !== b.length) throw new Error(`${name}: ${a.length} vs ${b.length} elements`);
  let ab = 0;
  let aa = 0;
  let bb = 0;
  let dd = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
    dd += (a[i] - b[i]) ** 2;
  }
  const cosine = aa === 0 && bb === 0 ? 1 : ab / Math.sqrt(aa * bb);
  return { name, elements: a.length, cosine, relL2: bb === 0 ? Math.sqrt(dd) : Math.sqrt(dd / bb), normA: Math.sqrt(aa), normB: Math.sqrt(bb) };
}

export interface GradientVerdict {
  tensors: TensorComparison[];
  minCosine: number;
  worst: string;
  pass: boolean;
}

/** Per-tensor comparison of two gradient sets with the same names. */
export function compareGradients(a: ReadonlyMap<string, ArrayLike<number>>, b: ReadonlyMap<string, ArrayLike<number>>): GradientVerdict {
  const tensors: TensorComparison[] = [];
  for (const [name, x] of a) {
    const y = b.get(name);
    if (y === undefined) throw new Error(`gradient ${name} is missing from the second set`);
    tensors.push(compareTensors(name, x, y));
  }
  for (const name of b.keys()) if (!a.has(name)) throw new Error(`gradient ${name} is missing from the first set`);
  const worst = tensors.reduce((w, t) => (t.cosine < w.cosine ? t : w), tensors[0]);
  return { tensors, minCosine: worst.cosine, worst: worst.name, pass: tensors.every((t) => t.cosine >= GRAD_COSINE_BAR) };
}

export interface LossVerdict {
  steps: number;
  meanAbsDelta: number;
  maxAbsDelta: number;
  /** Largest mean |Δ| over any `window` consecutive steps. */
  worstWindow: number;
  window: number;
  /** 1-based step that ends the first window over the bar, or null. */
  firstExceeded: number | null;
  bar: number;
  pass: boolean;
}

/**
 * Compares two loss curves step by step. `mode` 'mean' judges the mean |Δ| over all steps
 * (experiments A and B), 'window' judges every moving window (experiment C).
 */
export function compareLosses(a: readonly number[], b: readonly number[], mode: 'mean' | 'window', window = 50): LossVerdict {
  const n = Math.min(a.length, b.length);
  if (n === 0) throw new Error('no steps to compare');
  const d = Array.from({ length: n }, (_, i) => Math.abs(a[i] - b[i]));
  const meanAbsDelta = d.reduce((s, x) => s + x, 0) / n;
  const maxAbsDelta = Math.max(...d);
  const w = Math.min(window, n);
  let sum = 0;
  let worstWindow = 0;
  let firstExceeded: number | null = null;
  const bar = mode === 'mean' ? MEAN_DELTA_BAR : WINDOW_DELTA_BAR;
  for (let i = 0; i < n; i++) {
    sum += d[i];
    if (i >= w) sum -= d[i - w];
    if (i >= w - 1) {
      const m = sum / w;
      worstWindow = Math.max(worstWindow, m);
      if (mode === 'window' && firstExceeded === null && m > bar) firstExceeded = i + 1;
    }
  }
  const pass = !Number.isNaN(meanAbsDelta) && (mode === 'mean' ? meanAbsDelta <= bar : firstExceeded === null);
  return { steps: n, meanAbsDelta, maxAbsDelta, worstWindow, window: w, firstExceeded, bar, pass };
}
