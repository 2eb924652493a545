import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { InvalidArgumentError } from '../src/errors.js';
import { registerPlan, runPlanCommand, buildMask } from '../src/cli/plan.js';
import { checkPlan, planFromJSON } from '../src/solver/index.js';

const defaults = { alg: 'min-heap', overlapAlg: 'uniform', headsQ: '48', headsKv: '8', headDim: '128', seed: '42' };

function run(args: Record<string, string | boolean>): { code: number; text: string } {
  let text = '';
  const code = runPlanCommand({ ...defaults, ...args } as Parameters<typeof runPlanCommand>[0], (t) => (text += t));
  return { code, text };
}

test('magi-attn plan prints per-rank area, imbalance, communication, the baselines and the solver time', () => {
  const { code, text } = run({ mask: 'varlen-causal', seqlen: '65536', cp: '8', check: true });
  assert.equal(code, 0);
  for (const want of [/varlen-causal, 65536 tokens in \d+ documents/, /chunk 1024 \(64 chunks, 8 per rank\)/, /imbalance \(max\/mean area\): 1\.0\d\d\d/, /communicated k\/v tokens: [\d,]+ in total/, /magi-attention/, /ring \(zig-zag\)/, /ulysses/, /solver time: [\d.]+ ms \(chunking/, /check: the plan covers the mask exactly/]) {
    assert.match(text, want);
  }
  // One table row per rank.
  assert.equal(text.split('\n').filter((l) => /^[0-7]\s+[\d,]+\s+\d\.\d{3}/.test(l)).length, 8);
});

test('every preset mask plans and checks', () => {
  for (const mask of ['full', 'causal', 'varlen-full', 'varlen-causal', 'block-causal', 'sliding-window']) {
    const { code, text } = run({ mask, seqlen: '10000', cp: '3', chunk: '300', degree: '2', check: true, docs: '7', block: '700', window: '500,20' });
    assert.equal(code, 0, `${mask}\n${text}`);
    assert.match(text, /check: the plan covers/);
  }
  const auto = run({ mask: 'causal', seqlen: '8192', cp: '4', degree: 'auto', check: true });
  assert.equal(auto.code, 0);
  assert.match(auto.text, /\(dynamic, uniform\)/);
});

test('--json writes the full plan; a JSON mask file is accepted', () => {
  const dir = mkdtempSync(join(tmpdir(), 'magi-plan-'));
  const maskFile = join(dir, 'mask.json');
  writeFileSync(maskFile, JSON.stringify({ totalSeqlen: 3000, slices: [[[0, 1000], [0, 1000], 'causal'], [[1000, 3000], [0, 1000], 'full'], [[1000, 3000], [1000, 3000], 'causal']] }));
  const stdout = run({ mask: maskFile, cp: '4', json: true });
  const plan = planFromJSON(JSON.parse(stdout.text));
  assert.equal(plan.totalSeqlenQ, 3000);
  assert.ok(checkPlan(plan).ok);
  const out = join(dir, 'plan.json');
  const both = run({ mask: maskFile, cp: '4', json: out });
  assert.match(both.text, /plan written to/);
  assert.deepEqual(planFromJSON(JSON.parse(readFileSync(out, 'utf8'))), plan);
  // The list form of a mask works too.
  writeFileSync(maskFile, JSON.stringify([[[0, 64], [0, 64], 'full']]));
  assert.equal(buildMask(maskFile, undefined, { seed: 1 }).totalSeqlen, 64);
});

test('bad input gives a clear error naming the flag or argument', () => {
  assert.throws(() => run({ mask: 'causal', seqlen: '4096', cp: '0' }), (e: unknown) => e instanceof InvalidArgumentError && e.argument === '--cp');
  assert.throws(() => run({ mask: 'causal', seqlen: '4096', cp: '4', chunk: '0' }), (e: unknown) => e instanceof InvalidArgumentError && e.argument === '--chunk');
  assert.throws(() => run({ mask: 'causal', cp: '4' }), (e: unknown) => e instanceof InvalidArgumentError && e.argument === '--seqlen');
  assert.throws(() => run({ mask: 'no-such-file.json', cp: '4' }), (e: unknown) => e instanceof InvalidArgumentError && e.argument === '--mask');
  assert.throws(() => run({ mask: 'causal', seqlen: '4096', cp: '4', alg: 'magic' }), (e: unknown) => e instanceof InvalidArgumentError && e.argument === '--alg');
  const dir = mkdtempSync(join(tmpdir(), 'magi-plan-'));
  const outside = join(dir, 'outside.json');
  writeFileSync(outside, JSON.stringify({ totalSeqlen: 100, slices: [[[0, 200], [0, 100], 'full']] }));
  assert.throws(() => run({ mask: outside, cp: '2' }), (e: unknown) => e instanceof InvalidArgumentError && /qRanges\[0\]/.test(e.message));
});

test('registerPlan wires the command into commander; errors exit with code 2 and a message on stderr', async () => {
  let text = '';
  const program = new Command().exitOverride();
  registerPlan(program, (t) => (text += t));
  await program.parseAsync(['node', 'magi-attn', 'plan', '--mask', 'causal', '--seqlen', '4096', '--cp', '2', '--seed', '1']);
  assert.match(text, /imbalance/);
  const err: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  const exitCode = process.exitCode;
  process.stderr.write = ((chunk: string) => (err.push(String(chunk)), true)) as typeof process.stderr.write;
  try {
    await program.parseAsync(['node', 'magi-attn', 'plan', '--mask', 'causal', '--seqlen', '4096', '--cp', '0']);
  } finally {
    process.stderr.write = write;
  }
  assert.equal(process.exitCode, 2);
  process.exitCode = exitCode;
  assert.match(err.join(''), /magi-attn plan: --cp: must be an integer >= 1/);
});
