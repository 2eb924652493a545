/**
 * The page state and its URL form: every field that differs from the default becomes a query
 * parameter, so a link reproduces the plan exactly (the masks are seeded).
 */
import type { PlannerState } from './protocol.js';

export const DEFAULT_STATE: PlannerState = {
  mask: 'varlen-causal',
  seqlen: 1048576,
  cp: 64,
  degree: 1,
  chunk: null,
  alg: 'min-heap',
  docs: null,
  seed: 42,
  block: 2048,
  window: [1024, 0],
  cuSeqlens: '',
  cuType: 'causal',
  headsQ: 48,
  headsKv: 8,
  headDim: 128,
  link: 'nvlink-ib',
  view: [0, 0],
};

type Key = keyof PlannerState;

function encodeValue(v: PlannerState[Key]): string {
  if (v === null) return '';
  if (Array.isArray(v)) return v.join(',');
  return String(v);
}

function intOr(value: string, fallback: number, min: number): number {
  const n = Number(value);
  return Number.isSafeInteger(n) && n >= min ? n : fallback;
}

export function stateToQuery(state: PlannerState): string {
  const p = new URLSearchParams();
  for (const key of Object.keys(DEFAULT_STATE) as Key[]) {
    const v = encodeValue(state[key]);
    if (v !== encodeValue(DEFAULT_STATE[key])) p.set(key, v);
  }
  return p.toString();
}

export function stateFromQuery(query: string): PlannerState {
  const p = new URLSearchParams(query);
  const s: PlannerState = { ...DEFAULT_STATE, window: [...DEFAULT_STATE.window], view: [...DEFAULT_STATE.view] };
  const get = (k: Key): string | null => p.get(k);
  const pair = (v: string, min: number): [number, number] | null => {
    const parts = v.split(',').map(Number);
    return parts.length === 2 && parts.every((x) => Number.isSafeInteger(x) && x >= min) ? [parts[0], parts[1]] : null;
  };
  let v: string | null;
  if ((v = get('mask')) !== null) s.mask = v;
  if ((v = get('seqlen')) !== null) s.seqlen = intOr(v, s.seqlen, 1);
  if ((v = get('cp')) !== null) s.cp = intOr(v, s.cp, 1);
  if ((v = get('degree')) !== null) s.degree = v === 'auto' ? 'auto' : intOr(v, 1, 0);
  if ((v = get('chunk')) !== null) s.chunk = v === '' ? null : intOr(v, 0, 1) || null;
  if ((v = get('alg')) !== null) s.alg = v;
  if ((v = get('docs')) !== null) s.docs = v === '' ? null : intOr(v, 0, 1) || null;
  if ((v = get('seed')) !== null) s.seed = intOr(v, s.seed, 0);
  if ((v = get('block')) !== null) s.block = intOr(v, s.block, 1);
  if ((v = get('window')) !== null) s.window = pair(v, -1) ?? s.window;
  if ((v = get('cuSeqlens')) !== null) s.cuSeqlens = v;
  if ((v = get('cuType')) !== null) s.cuType = v === 'full' ? 'full' : 'causal';
  if ((v = get('headsQ')) !== null) s.headsQ = intOr(v, s.headsQ, 1);
  if ((v = get('headsKv')) !== null) s.headsKv = intOr(v, s.headsKv, 1);
  if ((v = get('headDim')) !== null) s.headDim = intOr(v, s.headDim, 1);
  if ((v = get('link')) !== null) s.link = v;
  if ((v = get('view')) !== null) s.view = pair(v, 0) ?? s.view;
  return s;
}
