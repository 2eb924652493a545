/**
 * `magi-attn plan` driven through the real command line (runCli, in-process): the report, every
 * preset, JSON masks and plans, and errors that name the flag or field.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../src/cli/program.js';
import { buildMask } from '../src/cli/plan.js';
import { defaultKernelJson, loadThroughput } from '../src/cli/cost-model.js';
import { autoOverlapConfig, kernelShapeOf, parseLink } from '../src/cost/index.js';
import { causalMask } from '../src/mask/helpers.js';
import { BENCH_HEAD_SHAPE, checkPlan, planDistAttn, planFromJSON } from '../src/solver/index.js';
import { repoFile } from './util/paths.js';

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

const plan = (...argv: string[]) => cli('plan', '--heads-q', '48', '--heads-kv', '8', '--head-dim', '128', '--seed', '42', ...argv);

function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'magi-plan-'));
  return body(dir).finally(() => rmSync(dir, { recursive: true, force: true }));
}

test('magi-attn plan prints per-rank area, imbalance, communication, the baselines and the solver time, planning once', async () => {
  const { code, out } = await plan('--mask', 'varlen-causal', '--seqlen', '65536', '--cp', '8', '--check');
  assert.equal(code, 0);
  for (const want of [/varlen-causal, 65536 tokens in \d+ documents/, /chunk 1024 \(64 chunks, 8 per rank\)/, /imbalance \(max\/mean area\): 1\.0\d\d\d/, /communicated k\/v tokens: [\d,]+ in total/, /magi-attention/, /ring \(zig-zag\)/, /ulysses/, /solver time: [\d.]+ ms \(chunking/, /check: the plan covers the mask exactly/]) {
    assert.match(out, want);
  }
  assert.match(out, /a first call; --timing adds the warm time/);
  // One table row per rank.
  assert.equal(out.split('\n').filter((l) => /^ [0-7]\s+[\d,]+\s+\d\.\d{3}/.test(l)).length, 8);
  const timed = await plan('--mask', 'causal', '--seqlen', '8192', '--cp', '4', '--timing');
  assert.match(timed.out, /once warm \(median of 5 more calls\)/);
});

test('above cp 32 the ranks are summarised (min, median, max) unless --per-rank', async () => {
  const { code, out } = await plan('--mask', 'causal', '--seqlen', '65536', '--cp', '64');
  assert.equal(code, 0);
  assert.match(out, /over 64 ranks/);
  for (const row of ['min', 'median', 'max']) assert.match(out, new RegExp(`^ ${row}\\s`, 'm'));
  assert.match(out, /--per-rank prints every rank/);
  const all = await plan('--mask', 'causal', '--seqlen', '65536', '--cp', '64', '--per-rank');
  assert.equal(all.out.split('\n').filter((l) => /^ \d+\s+[\d,]+\s+\d\.\d{3}/.test(l)).length, 64);
});

test('every preset mask plans and checks', async () => {
  for (const mask of ['full', 'causal', 'varlen-full', 'varlen-causal', 'block-causal', 'sliding-window']) {
    const { code, out } = await plan('--mask', mask, '--seqlen', '10000', '--cp', '3', '--chunk', '300', '--degree', '2', '--check', '--docs', '7', '--block', '700', '--window', '500,20');
    assert.equal(code, 0, `${mask}\n${out}`);
    assert.match(out, /check: the plan covers/);
  }
  const auto = await plan('--mask', 'causal', '--seqlen', '8192', '--cp', '4', '--degree', 'auto', '--check');
  assert.equal(auto.code, 0);
  assert.match(auto.out, /\(dynamic, uniform\)/);
});

test('--degree auto plans with the cost model of magi-attn simulate and the page: measured kernel throughput and the --link preset', async () => {
  const throughput = loadThroughput(defaultKernelJson());
  const factors: number[] = [];
  for (const link of ['nvlink', 'ib']) {
    const { code, out } = await plan('--mask', 'causal', '--seqlen', '65536', '--cp', '16', '--degree', 'auto', '--link', link, '--json');
    assert.equal(code, 0, out);
    const got = planFromJSON(JSON.parse(out));
    const config = autoOverlapConfig({ throughput, shape: kernelShapeOf(causalMask(65536), 'causal'), link: parseLink(link), heads: BENCH_HEAD_SHAPE }, 65536, 16);
    assert.deepEqual(got, planDistAttn({ mask: causalMask(65536), totalSeqlenQ: 65536, cpSize: 16, overlapConfig: config }), link);
    assert.equal(got.overlapConfig.mode, 'dynamic');
    factors.push(got.overlapConfig.commCostFactor);
  }
  // InfiniBand moves a token 9x slower than NVLink (50 vs 450 GB/s).
  assert.ok(Math.abs(factors[1] / factors[0] - 9) < 1e-9, `comm cost factors ${factors.join(', ')}`);
  const bad = await cli('plan', '--mask', 'causal', '--seqlen', '4096', '--cp', '2', '--degree', 'auto', '--kernel-json', 'no-such.json');
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--kernel-json: must be a readable kernel benchmark JSON/);
});

test('--json writes the full plan; a JSON mask file is planned with its types, which the report names', () =>
  withTempDir(async (dir) => {
    const maskFile = join(dir, 'mask.json');
    writeFileSync(maskFile, JSON.stringify({ totalSeqlen: 3000, slices: [[[0, 1000], [0, 1000], 'causal'], [[1000, 3000], [0, 1000], 'full'], [[1000, 3000], [1000, 3000], 'causal']] }));
    const stdout = await plan('--mask', maskFile, '--cp', '4', '--json');
    const p = planFromJSON(JSON.parse(stdout.out));
    assert.equal(p.totalSeqlenQ, 3000);
    assert.deepEqual(Array.from(p.globalMask.maskTypes), [1, 0, 1]);
    assert.ok(checkPlan(p).ok);
    const out = join(dir, 'plan.json');
    const both = await plan('--mask', maskFile, '--cp', '4', '--json', out);
    assert.match(both.out, /3 slices \(2 causal, 1 full\), 3000 tokens/);
    assert.match(both.out, /plan written to/);
    assert.deepEqual(planFromJSON(JSON.parse(readFileSync(out, 'utf8'))), p);
    // The qRanges/kRanges/maskTypes form and the list form work too.
    writeFileSync(maskFile, JSON.stringify({ qRanges: [[0, 64]], kRanges: [[0, 64]], maskTypes: 'causal' }));
    const spec = buildMask(maskFile, undefined, { seed: 1 });
    assert.equal(spec.totalSeqlen, 64);
    assert.deepEqual(Array.from(spec.mask.maskTypes), [1]);
    writeFileSync(maskFile, JSON.stringify([[[0, 64], [0, 64], 'full']]));
    assert.equal(buildMask(maskFile, undefined, { seed: 1 }).totalSeqlen, 64);
  }));

test('bad input: one line naming the flag or field, exit status 2, no stack trace', () =>
  withTempDir(async (dir) => {
    const expectUsage = async (argv: string[], pattern: RegExp): Promise<void> => {
      const r = await cli(...argv);
      assert.equal(r.code, 2, `${argv.join(' ')}: ${r.err}`);
      assert.match(r.err, pattern, argv.join(' '));
      assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace');
      assert.equal(r.out, '', 'no work done');
    };
    await expectUsage(['plan', '--mask', 'causal', '--seqlen', '4096', '--cp', '0'], /--cp <p>' argument '0' is invalid\. must be an integer >= 1/);
    await expectUsage(['plan', '--mask', 'causal', '--seqlen', '4096', '--cp', '4', '--chunk', '0'], /--chunk/);
    await expectUsage(['plan', '--mask', 'causal', '--seqlen', '4096', '--cp', '4', '--alg', 'magic'], /--alg <name>' argument 'magic' is invalid/);
    await expectUsage(['plan', '--mask', 'causal', '--cp', '4'], /magi-attn plan: --seqlen: is required for the causal mask/);
    await expectUsage(['plan', '--mask', 'no-such-file.json', '--cp', '4'], /magi-attn plan: --mask: must be one of/);
    const write = (name: string, json: unknown): string => {
      const f = join(dir, name);
      writeFileSync(f, JSON.stringify(json));
      return f;
    };
    await expectUsage(['plan', '--mask', write('null.json', null), '--cp', '2'], /--mask: .*null\.json: mask/);
    await expectUsage(['plan', '--mask', write('five.json', { slices: 5 }), '--cp', '2'], /--mask: .*five\.json: mask\.slices/);
    await expectUsage(['plan', '--mask', write('types.json', { qRanges: [[0, 8]], kRanges: [[0, 8]], types: ['causal'] }), '--cp', '2'], /mask\.types: is not a field here/);
    await expectUsage(['plan', '--mask', write('outside.json', { totalSeqlen: 100, slices: [[[0, 200], [0, 100], 'full']] }), '--cp', '2'], /qRanges\[0\]/);
    await expectUsage(['plan', '--mask', 'causal', '--seqlen', '4096', '--cp', '2', '--json', join(dir, 'no', 'such', 'dir', 'p.json')], /--json: must be a writable file path/);
  }));

test('--version prints the package version; --help exits 0', async () => {
  const v = await cli('--version');
  assert.equal(v.code, 0);
  assert.equal(v.out.trim(), JSON.parse(readFileSync(repoFile('package.json'), 'utf8')).version);
  const h = await cli('plan', '--help');
  assert.equal(h.code, 0);
  assert.match(h.out, /--mask <kind\|file>/);
});
