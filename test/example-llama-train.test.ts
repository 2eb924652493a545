/**
 * The Llama example trained on the CPU (the CI check of issue 14): the tiny preset on Moby-Dick
 * packed into 256-token varlen-causal batches.
 *   - 20 steps with the FFA attention core and 20 with dense attention, same seed and data:
 *     losses equal within 1e-5 at every step (float32), and the model learns;
 *   - cp 2 (two in-process ranks: dispatch once per step, getPositionIds, calcAttn in every
 *     layer, gradients summed over the group) trains the same model as cp 1;
 *   - a checkpoint with the AdamW moments resumes the run exactly.
 * Both attention cores round differently in float32 (the FFA kernel tiles and rescales, the
 * dense path sums each row once), so the losses differ by float32 noise, which AdamW's
 * normalisation keeps from growing; measured: about 1e-8 after 20 steps.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runLocalRanks, type ProcessGroup, type Tensor } from 'magi-attention';
import { PRESETS } from '../examples/llama/config.js';
import { loadCorpus, type Corpus } from '../examples/llama/data.js';
import { DEFAULT_OPTIM } from '../examples/llama/optim.js';
import { Trainer, cpuBackend, type AttentionKind } from '../examples/llama/train.js';

const STEPS = 20;
const corpus: Corpus = await loadCorpus('moby-dick');

type CpuTrainer = Trainer<Tensor, Int32Array>;

function trainer(attention: AttentionKind, group?: ProcessGroup): CpuTrainer {
  return new Trainer(cpuBackend(), corpus, {
    model: PRESETS.tiny,
    optim: { ...DEFAULT_OPTIM, lr: 3e-3, minLr: 3e-4, warmupSteps: 5, totalSteps: STEPS },
    seqLen: 256,
    seed: 7,
    attention,
    group,
  });
}

async function losses(t: CpuTrainer, steps: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < steps; i++) out.push((await t.step()).loss);
  return out;
}

/**
 * The 20 losses of the FFA model on one device, computed once for the file: the cp 2 test
 * compares with the first 8 of them (a trainer's steps depend only on its seed, data and
 * schedule, all the same here, and the CPU kernel is deterministic).
 */
let ffaRun: Promise<number[]> | undefined;
const ffaLosses = (): Promise<number[]> => (ffaRun ??= losses(trainer('ffa'), STEPS));

test('20 steps of the tiny model: FFA and dense attention give the same losses within 1e-5 (float32), and the loss falls', async () => {
  const ffa = await ffaLosses();
  const dense = await losses(trainer('dense'), STEPS);
  const worst = Math.max(...ffa.map((l, i) => Math.abs(l - dense[i])));
  console.log(`FFA vs dense over ${STEPS} steps: worst |Δloss| ${worst.toExponential(2)}; loss ${ffa[0].toFixed(4)} -> ${ffa[STEPS - 1].toFixed(4)}`);
  for (let i = 0; i < STEPS; i++) assert.ok(Math.abs(ffa[i] - dense[i]) <= 1e-5, `step ${i + 1}: FFA ${ffa[i]} vs dense ${dense[i]}`);
  assert.ok(Math.abs(ffa[0] - Math.log(PRESETS.tiny.vocabSize)) < 0.1, `first loss ${ffa[0]} should be near ln(vocab) = ${Math.log(PRESETS.tiny.vocabSize)}`);
  assert.ok(ffa[STEPS - 1] < ffa[0] - 1, `the loss should fall by more than 1 nat in ${STEPS} steps: ${ffa[0]} -> ${ffa[STEPS - 1]}`);
});

test('cp 2 (dispatch, getPositionIds, calcAttn in every layer, gradients summed) trains the model cp 1 trains', async () => {
  const steps = 8;
  const single = (await ffaLosses()).slice(0, steps);
  const ranks = await runLocalRanks(2, async (group) => losses(trainer('ffa', group), steps));
  assert.deepEqual(ranks[0], ranks[1], 'both ranks report the same (all-reduced) loss');
  for (let i = 0; i < steps; i++) assert.ok(Math.abs(ranks[0][i] - single[i]) <= 1e-5, `step ${i + 1}: cp 2 ${ranks[0][i]} vs cp 1 ${single[i]}`);
});

test('a checkpoint with the AdamW moments resumes the run exactly', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'llama-ckpt-'));
  try {
    const a = trainer('ffa');
    await losses(a, 3);
    const path = join(dir, 'step3.safetensors');
    a.params.save(path, { step: String(a.stepCount) }, true);
    const next = await losses(a, 2);
    const b = trainer('ffa');
    assert.equal(b.load(path), 3);
    for (let i = 0; i < 3; i++) b.packer.nextBatch(); // the same data position
    assert.deepEqual(await losses(b, 2), next);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
