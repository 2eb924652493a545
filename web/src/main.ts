/**
 * The planner page: controls → state (mirrored in the URL) → the solver worker → views. The page
 * thread only draws; every number comes from the worker, which runs the library's own solvers and
 * cost model.
 */
import { isMaskPreset } from '../../src/mask/presets.js';
import type { CompareRow, PlannerState, PlanView, WorkerRequest, WorkerResponse } from './protocol.js';
import { stateFromQuery, stateToQuery } from './state.js';
import { areaPlot, bytesPlot, comparePlot, maskPlot, memoryPlot, timelinePlot, timelineRanks, trafficPlot } from './views.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`missing #${id}`);
  return el as T;
};
const input = (id: string): HTMLInputElement => $<HTMLInputElement>(id);
const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');
const fmtMs = (s: number): string => (s * 1e3).toFixed(s * 1e3 >= 100 ? 0 : 2);
const fmtBytes = (x: number): string => {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (x >= 1024 && i < u.length - 1) {
    x /= 1024;
    i++;
  }
  return `${x.toFixed(i === 0 ? 0 : 2)} ${u[i]}`;
};
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
let state: PlannerState = stateFromQuery(location.search);
let nextId = 1;
let latestPlanId = 0;
let latest: PlanView | null = null;
const pending = new Map<number, (r: WorkerResponse) => void>();

function ask(req: WorkerRequest, onAnswer: (r: WorkerResponse) => void): void {
  pending.set(req.id, onAnswer);
  worker.postMessage(req);
}

worker.onmessage = (e: MessageEvent<WorkerResponse>): void => {
  const r = e.data;
  const handler = pending.get(r.id);
  pending.delete(r.id);
  handler?.(r);
};

// ---------------------------------------------------------------------------------------------
// controls <-> state

function showFieldsFor(mask: string): void {
  const visible: Record<string, boolean> = {
    preset: isMaskPreset(mask),
    docs: mask.startsWith('varlen') || mask === 'block-causal' || mask === 'sliding-window',
    block: mask === 'block-causal',
    window: mask === 'sliding-window',
    cu: mask === 'cu-seqlens',
    file: mask === 'json' || mask === 'plan',
    bw: ($<HTMLSelectElement>('linkPreset').value === 'user'),
  };
  document.querySelectorAll<HTMLElement>('[data-for]').forEach((el) => (el.hidden = !visible[el.dataset.for ?? '']));
}

function writeControls(s: PlannerState): void {
  $<HTMLSelectElement>('mask').value = s.mask;
  input('seqlen').value = String(s.seqlen);
  input('docs').value = s.docs === null ? '' : String(s.docs);
  input('seed').value = String(s.seed);
  input('block').value = String(s.block);
  input('window').value = s.window.join(',');
  $<HTMLTextAreaElement>('cuSeqlens').value = s.cuSeqlens;
  $<HTMLSelectElement>('cuType').value = s.cuType;
  input('cp').value = String(Math.round(Math.log2(s.cp)));
  $('cpOut').textContent = String(s.cp);
  input('degree').value = s.degree === 'auto' ? '9' : String(Math.min(8, s.degree));
  $('degreeOut').textContent = s.degree === 'auto' ? 'auto' : String(s.degree);
  input('chunk').value = s.chunk === null ? '' : String(s.chunk);
  $<HTMLSelectElement>('alg').value = s.alg;
  input('headsQ').value = String(s.headsQ);
  input('headsKv').value = String(s.headsKv);
  input('headDim').value = String(s.headDim);
  const isPreset = ['nvlink-ib', 'nvlink', 'ib'].includes(s.link);
  $<HTMLSelectElement>('linkPreset').value = isPreset ? s.link : 'user';
  input('bandwidth').value = isPreset ? '' : s.link;
  input('view').value = s.view[1] > s.view[0] ? s.view.join(',') : '';
  showFieldsFor(s.mask);
}

function readControls(): PlannerState {
  const num = (id: string, fallback: number): number => {
    const n = Number(input(id).value);
    return input(id).value.trim() !== '' && Number.isFinite(n) ? n : fallback;
  };
  const optional = (id: string): number | null => (input(id).value.trim() === '' ? null : Number(input(id).value));
  const pair = (text: string, fallback: [number, number]): [number, number] => {
    const p = text.split(',').map((x) => Number(x.trim()));
    return p.length === 2 && p.every(Number.isFinite) ? [p[0], p[1]] : fallback;
  };
  const degreeIndex = Number(input('degree').value);
  const linkPreset = $<HTMLSelectElement>('linkPreset').value;
  return {
    mask: $<HTMLSelectElement>('mask').value,
    seqlen: num('seqlen', state.seqlen),
    cp: 2 ** Number(input('cp').value),
    degree: degreeIndex === 9 ? 'auto' : degreeIndex,
    chunk: optional('chunk'),
    alg: $<HTMLSelectElement>('alg').value,
    docs: optional('docs'),
    seed: num('seed', state.seed),
    block: num('block', state.block),
    window: pair(input('window').value, state.window),
    cuSeqlens: $<HTMLTextAreaElement>('cuSeqlens').value,
    cuType: $<HTMLSelectElement>('cuType').value === 'full' ? 'full' : 'causal',
    headsQ: num('headsQ', state.headsQ),
    headsKv: num('headsKv', state.headsKv),
    headDim: num('headDim', state.headDim),
    link: linkPreset === 'user' ? String(num('bandwidth', 100)) : linkPreset,
    view: input('view').value.trim() === '' ? [0, 0] : pair(input('view').value, [0, 0]),
  };
}

// ---------------------------------------------------------------------------------------------
// planning

let timer: number | undefined;
function schedulePlan(): void {
  window.clearTimeout(timer);
  timer = window.setTimeout(plan, 120);
}

function plan(): void {
  const id = nextId++;
  latestPlanId = id;
  const query = stateToQuery(state);
  history.replaceState(null, '', query === '' ? location.pathname : `?${query}`);
  $<HTMLAnchorElement>('share').href = location.href;
  const status = $('status');
  status.dataset.state = 'planning';
  status.textContent = 'planning…';
  const t0 = performance.now();
  const fileText = state.mask === 'json' || state.mask === 'plan' ? $<HTMLTextAreaElement>('fileText').value : null;
  ask({ kind: 'plan', id, state, fileText }, (r) => {
    if (id !== latestPlanId) return; // a newer request is on its way
    const err = $('error');
    if (r.kind === 'error') {
      err.hidden = false;
      err.textContent = r.message;
      status.dataset.state = 'error';
      status.textContent = 'error';
      return;
    }
    if (r.kind !== 'plan') return;
    err.hidden = true;
    latest = r.view;
    const roundTrip = performance.now() - t0;
    render(r.view);
    status.textContent = `planned in ${r.view.planMs.toFixed(1)} ms, predicted in ${r.view.predictMs.toFixed(1)} ms (${roundTrip.toFixed(0)} ms with the worker round trip)`;
    status.dataset.planMs = String(r.view.planMs);
    status.dataset.roundTripMs = String(roundTrip);
    status.dataset.state = 'ready';
    status.dataset.id = String(id);
    $('verdict').textContent = '';
    $('exportCard').hidden = true;
    if (r.view.totalSeqlen <= 4 * 1024 * 1024 && r.view.cpSize <= 256) runCheck();
    if ($<HTMLDetailsElement>('compare').open) runCompare();
  });
}

function runCheck(): void {
  const verdict = $('verdict');
  verdict.textContent = 'checking…';
  verdict.dataset.state = 'checking';
  ask({ kind: 'check', id: nextId++ }, (r) => {
    if (r.kind === 'check') {
      verdict.innerHTML = r.ok
        ? `<span class="ok">checkPlan: ok</span> — every cell of the mask is computed exactly once and every GroupCast delivers what its slices read (${r.ms.toFixed(0)} ms)`
        : `<span class="bad">checkPlan FAILED</span><br>${r.errors.map(esc).join('<br>')}`;
      verdict.dataset.state = r.ok ? 'ok' : 'failed';
    } else if (r.kind === 'error') {
      verdict.textContent = r.message;
    }
  });
}

function runCompare(): void {
  $('compareTable').textContent = 'planning with every dispatch algorithm…';
  ask({ kind: 'compare', id: nextId++ }, (r) => {
    if (r.kind === 'compare') renderCompare(r.rows);
    else if (r.kind === 'error') $('compareTable').textContent = r.message;
  });
}

function exportPlan(): void {
  ask({ kind: 'export', id: nextId++ }, (r) => {
    if (r.kind !== 'export') return;
    $('exportCard').hidden = false;
    $<HTMLTextAreaElement>('planJson').value = r.json;
    const a = $<HTMLAnchorElement>('download');
    if (a.href.startsWith('blob:')) URL.revokeObjectURL(a.href);
    a.href = URL.createObjectURL(new Blob([r.json], { type: 'application/json' }));
  });
}

// ---------------------------------------------------------------------------------------------
// rendering

function place(id: string, el: Element): void {
  $(id).replaceChildren(el);
}

function render(v: PlanView): void {
  const width = Math.max(360, $('views').clientWidth - 40);
  const maxRecv = Math.max(...v.recvTokensPerRank);
  const methods = v.methods
    .map(
      (m) =>
        `<tr data-method="${esc(m.method)}"><td>${esc(m.method)}${m.note === undefined ? '' : ' <span title="' + esc(m.note) + '">(n/a)</span>'}</td><td>${fmtMs(m.forwardSeconds)}</td><td>${fmtMs(m.backwardSeconds)}</td><td>${fmtMs(m.forwardExposedSeconds)} / ${fmtMs(m.backwardExposedSeconds)}</td><td>${m.forwardTflopsPerGpu.toFixed(0)} / ${m.backwardTflopsPerGpu.toFixed(0)}</td></tr>`,
    )
    .join('');
  $('summary').innerHTML = `
    <h2>${esc(v.description)}</h2>
    <p>cp <b data-testid="cp">${v.cpSize}</b> · chunk <b data-testid="chunk-size">${fmt(v.chunkSize)}</b> (${fmt(v.numChunks)} chunks, pad ${fmt(v.padSize)}) ·
      dispatch <b>${esc(v.dispatchAlg)}</b> · overlap degree <b data-testid="degree">${v.overlapDegree}</b> ·
      imbalance (max/mean area) <b data-testid="imbalance" data-value="${v.imbalance}">${v.imbalance.toFixed(4)}</b> ·
      k/v tokens moved <b data-testid="total-comm-tokens" data-value="${v.totalCommTokens}">${fmt(v.totalCommTokens)}</b>
      (max <span data-testid="max-recv-tokens" data-value="${maxRecv}">${fmt(maxRecv)}</span> per rank)</p>
    <table><tr><th>predicted, one attention call</th><th>forward ms</th><th>backward ms</th><th>exposed comm fwd / bwd ms</th><th>TFLOP/s per GPU fwd / bwd</th></tr>${methods}</table>
    <p class="note">Kernels: ${esc(v.kernelGpu)}, measured throughput of the <i>${esc(v.kernelShape)}</i> benchmark mask (bench/results/kernel.json).
      Links: ${esc(v.linkName)} — ${esc(v.linkSource)}. Peak link rates: transfer times are lower bounds.</p>`;

  $('maskNote').textContent = `${fmt(v.sliceCount)} slices, ${fmt(v.totalArea)} cells; drawn ${fmt(v.view[0])}–${fmt(v.view[1])} from the slices' bands (no cells materialised). Strips: the rank of every chunk on both axes.`;
  place('maskPlot', maskPlot(v, width));
  $('slices').innerHTML = `<details><summary>largest slices, exact areas</summary><table><tr><th>#</th><th>q range</th><th>k range</th><th>type</th><th>area</th></tr>${v.topSlices
    .map((s) => `<tr><td>${s.index}</td><td>[${fmt(s.q[0])}, ${fmt(s.q[1])})</td><td>[${fmt(s.k[0])}, ${fmt(s.k[1])})</td><td>${s.type}</td><td>${fmt(s.area)}</td></tr>`)
    .join('')}</table></details>`;
  place('areaPlot', areaPlot(v, width));
  $('trafficNote').textContent = `Forward GroupCast k/v bytes, sender × receiver, all stages (the backward's GroupReduce moves the same rows back in float32). Right: bytes each rank receives, against ring (zig-zag) and Ulysses on the same mask.`;
  place('trafficPlot', trafficPlot(v, width / 2));
  place('bytesPlot', bytesPlot(v, width / 2));
  const ranks = timelineRanks(v.forward, 24);
  $('timelineNote').textContent =
    `${ranks.length < v.cpSize ? `The ${ranks.length} ranks that finish last of ${v.cpSize}. ` : ''}Each rank: its compute stream, then its share of each collective (light green: waiting for slower peers). Red: compute waiting for data (exposed communication). ` +
    `Forward ${fmtMs(v.forward.stepSeconds)} ms (exposed ${fmtMs(v.forward.exposedCommSeconds)}), backward ${fmtMs(v.backward.stepSeconds)} ms (exposed ${fmtMs(v.backward.exposedCommSeconds)}).`;
  place('fwdTimeline', timelinePlot(v.forward, 'forward', ranks, width));
  place('bwdTimeline', timelinePlot(v.backward, 'backward', timelineRanks(v.backward, 24), width));
  place('memoryPlot', memoryPlot(v, width));
  const rows: string[] = [];
  for (let r = 0; r < v.cpSize; r++) {
    rows.push(
      `<tr data-rank="${r}"><td>${r}</td><td data-value="${v.areaPerRank[r]}">${fmt(v.areaPerRank[r])}</td><td data-value="${v.recvTokensPerRank[r]}">${fmt(v.recvTokensPerRank[r])}</td><td data-value="${v.sendTokensPerRank[r]}">${fmt(v.sendTokensPerRank[r])}</td><td>${fmtBytes(v.memory[r].peak)}</td></tr>`,
    );
  }
  $('rankTable').innerHTML = `<table data-testid="rank-table"><tr><th>rank</th><th>area (cells)</th><th>recv k/v tokens</th><th>sent copies</th><th>peak memory</th></tr>${rows.join('')}</table>`;
}

function renderCompare(rows: CompareRow[]): void {
  const width = Math.max(360, $('views').clientWidth - 40);
  place('comparePlot', comparePlot(rows, width));
  $('compareTable').innerHTML = `<table><tr><th>dispatch</th><th>imbalance</th><th>max recv tokens</th><th>k/v tokens moved</th><th>forward ms</th><th>backward ms</th><th>planner ms</th></tr>${rows
    .map((r) => `<tr><td>${r.alg}</td><td>${r.imbalance.toFixed(4)}</td><td>${fmt(r.maxRecvTokens)}</td><td>${fmt(r.totalCommTokens)}</td><td>${r.forwardMs.toFixed(2)}</td><td>${r.backwardMs.toFixed(2)}</td><td>${r.planMs.toFixed(1)}</td></tr>`)
    .join('')}</table>`;
}

// ---------------------------------------------------------------------------------------------
// wiring

writeControls(state);
$('controls').addEventListener('input', (e) => {
  const target = e.target as HTMLElement;
  if (target.id === 'file') return;
  state = readControls();
  $('cpOut').textContent = String(state.cp);
  $('degreeOut').textContent = String(state.degree);
  showFieldsFor(state.mask);
  schedulePlan();
});
input('file').addEventListener('change', async () => {
  const f = input('file').files?.[0];
  if (f === undefined) return;
  $<HTMLTextAreaElement>('fileText').value = await f.text();
  schedulePlan();
});
$('export').addEventListener('click', exportPlan);
$('check').addEventListener('click', runCheck);
$<HTMLDetailsElement>('compare').addEventListener('toggle', () => {
  if ($<HTMLDetailsElement>('compare').open && latest !== null) runCompare();
});
window.addEventListener('resize', () => {
  if (latest !== null) render(latest);
});
plan();
