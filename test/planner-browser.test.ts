/**
 * The planner page in a real browser: `magi-attn planner`'s server serves the built page
 * (dist/web, from `npm run build`), headless Chromium (Debian's, at CHROMIUM_PATH or
 * /usr/bin/chromium; nothing downloads a browser) loads presets and changes cp, and the numbers
 * the page shows, and the plan JSON it exports, must equal what `magi-attn plan --json` gives for
 * the same input. A screenshot of every view lands in test/artifacts/planner/.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Server } from 'node:http';
import { chromium, type Browser, type Page } from 'playwright-core';
import { runCli } from '../src/cli/program.js';
import { plannerRoot, servePlanner } from '../src/cli/planner.js';
import { packageRoot } from '../src/cli/package-root.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(packageRoot(), 'test', 'artifacts', 'planner');

let server: Server;
let base: string;
let browser: Browser;
let page: Page;

before(async () => {
  assert.ok(existsSync(join(plannerRoot(), 'index.html')), `the built page is missing in ${plannerRoot()}: run npm run build`);
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)`);
  ({ server, url: base } = await servePlanner({ port: 0, host: '127.0.0.1' }));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('pageerror', (e) => console.error('page error:', e.message));
  mkdirSync(ARTIFACTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await new Promise((r) => server?.close(r));
});

/** What `magi-attn plan --json` prints for these options, parsed. */
async function cliPlan(args: Record<string, string>): Promise<PlanJson> {
  let text = '';
  const argv = ['plan', ...Object.entries(args).flatMap(([k, v]) => [`--${k}`, v]), '--json'];
  const code = await runCli(argv, { out: (t) => (text += t), err: (t) => (text += t) });
  assert.equal(code, 0, text);
  return JSON.parse(text) as PlanJson;
}

interface PlanJson {
  cpSize: number;
  overlapDegree: number;
  dispatch: { chunkSize: number };
  perRank: Array<{ hostArea: number; stages: Array<{ remoteArea: number; stageBufferLength: number; groupCast: { inputSplitSizes: number[]; dstIndices: number[][] } }> }>;
}

/** Waits until the page has shown the plan of a request made after `previousId`. */
async function waitForPlan(previousId: number): Promise<number> {
  await page.waitForFunction(`(() => { const s = document.querySelector('#status'); return s.dataset.state === 'ready' && Number(s.dataset.id) > ${previousId}; })()`, undefined, { timeout: 30000 });
  return Number(await page.getAttribute('#status', 'data-id'));
}

/** Moves a slider as a user would: sets its value and fires the input event. */
async function setRange(id: string, value: number): Promise<void> {
  await page.evaluate(`(() => { const el = document.getElementById('${id}'); el.value = '${value}'; el.dispatchEvent(new Event('input', { bubbles: true })); })()`);
}

async function pageNumbers(): Promise<{ area: number[]; recv: number[]; send: number[]; imbalance: number; comm: number; cp: number; chunk: string; degree: number }> {
  return page.evaluate(`(() => {
    const rows = [...document.querySelectorAll('[data-testid=rank-table] tr[data-rank]')];
    const col = (i) => rows.map((r) => Number(r.children[i].dataset.value));
    const q = (id) => document.querySelector('[data-testid=' + id + ']');
    return {
      area: col(1),
      recv: col(2),
      send: col(3),
      imbalance: Number(q('imbalance').dataset.value),
      comm: Number(q('total-comm-tokens').dataset.value),
      cp: Number(q('cp').textContent),
      chunk: q('chunk-size').textContent,
      degree: Number(q('degree').textContent),
    };
  })()`);
}

async function assertPageMatchesCli(args: Record<string, string>, label: string): Promise<void> {
  const want = await cliPlan(args);
  const got = await pageNumbers();
  const area = want.perRank.map((r) => r.hostArea + r.stages.reduce((a, s) => a + s.remoteArea, 0));
  const recv = want.perRank.map((r) => r.stages.reduce((a, s) => a + s.stageBufferLength, 0));
  const send = want.perRank.map((r) => r.stages.reduce((a, s) => a + s.groupCast.inputSplitSizes.reduce((b, n, i) => b + n * s.groupCast.dstIndices[i].length, 0), 0));
  const mean = area.reduce((a, b) => a + b, 0) / area.length;
  assert.equal(got.cp, want.cpSize, `${label}: cp`);
  assert.equal(got.degree, want.overlapDegree, `${label}: overlap degree`);
  assert.equal(got.chunk.replace(/,/g, ''), String(want.dispatch.chunkSize), `${label}: chunk size`);
  assert.deepEqual(got.area, area, `${label}: area per rank`);
  assert.deepEqual(got.recv, recv, `${label}: received k/v tokens per rank`);
  assert.deepEqual(got.send, send, `${label}: sent copies per rank`);
  assert.equal(got.imbalance, Math.max(...area) / mean, `${label}: imbalance`);
  assert.equal(got.comm, recv.reduce((a, b) => a + b, 0), `${label}: total k/v tokens`);
  // The exported plan is the very plan the CLI writes.
  await page.click('#export');
  await page.waitForFunction(`document.querySelector('#planJson').value.length > 0 && !document.querySelector('#exportCard').hidden`);
  const exported = JSON.parse(await page.inputValue('#planJson')) as unknown;
  assert.deepEqual(exported, want, `${label}: exported plan JSON`);
}

async function screenshotViews(prefix: string): Promise<void> {
  const cards = await page.$$('section.card');
  for (let i = 0; i < cards.length; i++) {
    if (!(await cards[i].isVisible())) continue;
    const title = ((await cards[i].$eval('h2', (h) => h.textContent ?? '').catch(() => 'summary')) || 'summary').toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 40);
    await cards[i].screenshot({ path: join(ARTIFACTS, `${prefix}-${i}-${title}.png`) });
  }
  await page.screenshot({ path: join(ARTIFACTS, `${prefix}-page.png`), fullPage: true });
}

test('a varlen-causal preset: the page shows the numbers and exports the plan of magi-attn plan --json, and follows a cp change', async () => {
  const args = { mask: 'varlen-causal', seqlen: '65536', seed: '42' };
  await page.goto(`${base}?mask=varlen-causal&seqlen=65536&seed=42&cp=8`);
  let id = await waitForPlan(0);
  await assertPageMatchesCli({ ...args, cp: '8' }, 'varlen-causal cp 8');
  await page.waitForSelector('[data-testid=verdict][data-state=ok]', { timeout: 30000 });
  await page.click('#compare summary');
  await page.waitForSelector('#compareTable table', { timeout: 30000 });
  await screenshotViews('varlen-causal-cp8');

  // The cp slider holds log2(cp).
  await setRange('cp', 4);
  id = await waitForPlan(id);
  assert.match(page.url(), /cp=16/);
  await assertPageMatchesCli({ ...args, cp: '16' }, 'varlen-causal cp 16');
});

test('block-causal and sliding-window presets with several overlap stages, and causal with degree auto, match the CLI too', async () => {
  await page.goto(`${base}?mask=block-causal&seqlen=131072&cp=8&degree=3&block=4096`);
  let id = await waitForPlan(0);
  await assertPageMatchesCli({ mask: 'block-causal', seqlen: '131072', cp: '8', degree: '3', block: '4096', seed: '42' }, 'block-causal');
  await screenshotViews('block-causal-cp8');
  await page.goto(`${base}?mask=sliding-window&seqlen=100000&cp=4&degree=2&alg=contiguous-runs&window=2000,0`);
  id = await waitForPlan(0);
  await assertPageMatchesCli({ mask: 'sliding-window', seqlen: '100000', cp: '4', degree: '2', alg: 'contiguous-runs', window: '2000,0', seed: '42' }, 'sliding-window');
  // degree auto: page and CLI weigh the stages with the same cost model (measured throughput, links).
  await page.goto(`${base}?mask=causal&seqlen=65536&cp=16&degree=auto&link=ib`);
  id = await waitForPlan(0);
  await assertPageMatchesCli({ mask: 'causal', seqlen: '65536', cp: '16', degree: 'auto', link: 'ib', seed: '42' }, 'causal, degree auto');
  assert.ok(id > 0);
});

test('a 1M-token varlen-causal mask re-plans at cp 64 and a 10M-token mask draws', async () => {
  await page.goto(`${base}?mask=varlen-causal&seqlen=1048576&cp=32`);
  let id = await waitForPlan(0);
  await setRange('cp', 6);
  id = await waitForPlan(id);
  const planMs = Number(await page.getAttribute('#status', 'data-plan-ms'));
  const roundTripMs = Number(await page.getAttribute('#status', 'data-round-trip-ms'));
  console.log(`# 1M-token varlen-causal at cp 64: solver ${planMs.toFixed(1)} ms in the worker, ${roundTripMs.toFixed(0)} ms request to drawn`);
  assert.equal((await pageNumbers()).area.length, 64);

  await page.goto(`${base}?mask=varlen-causal&seqlen=10485760&cp=64`);
  await waitForPlan(0);
  // The mask is a raster of the slices' coverage: an <image> inside the mask plot.
  assert.ok(await page.$('#maskPlot svg image'), 'the 10M-token mask is drawn');
  assert.equal(await page.textContent('[data-testid=cp]'), '64');
  await screenshotViews('varlen-causal-10M-cp64');
});
