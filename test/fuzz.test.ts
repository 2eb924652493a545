/**
 * Seeded fuzzing of every entry a user feeds (fast-check; the seed is printed, replay with
 * MAGI_SEED=<seed>): malformed masks and option sets to flexFlashAttn and magiAttnFlexKey,
 * mutated plan files to planFromJSON and checkPlan, and random flags and mask files to the CLI.
 * The property is always the same: the input is accepted, or it is refused with a typed error
 * (InvalidArgumentError or a subclass) that names an argument; never a TypeError, a RangeError, a
 * hang or a stack trace. A second property: checkPlan proves every plan of random valid masks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { InvalidArgumentError } from '../src/errors.js';
import { Tensor } from '../src/tensor.js';
import { flexFlashAttn } from '../src/kernels/flex-flash-attn.js';
import { magiAttnFlexKey } from '../src/runtime/key.js';
import { createLocalGroups } from '../src/comm/local-group.js';
import { planDistAttn } from '../src/solver/solve.js';
import { planFromJSON, planToJSON } from '../src/solver/plan-json.js';
import { checkPlan } from '../src/solver/check-plan.js';
import { runCli } from '../src/cli/program.js';
import { MASK_FAMILIES, randomMask } from './util/solver-masks.js';
import { Rng, freshSeed } from '../src/util/rng.js';

const seed = freshSeed();
// Printed before anything runs, so that a run that never finishes can be replayed too.
process.stderr.write(`fuzz.test.ts: seed ${seed} (replay with MAGI_SEED=${seed})\n`);

/** Runs `f`; passes if it returns, or throws a typed error that names an argument. */
function acceptedOrTyped(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof InvalidArgumentError)) throw new Error(`untyped error: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    assert.ok(e.argument.length > 0, 'the error names an argument');
  }
}

// Values that stress a validator: wrong types, non-integers, negatives, huge numbers, NaN.
const junkNumber = fc.oneof(fc.integer({ min: -5, max: 40 }), fc.constantFrom(NaN, Infinity, -Infinity, 2 ** 31, 2 ** 53, 0.5, -0), fc.double());
const junk = fc.oneof(junkNumber, fc.string({ maxLength: 4 }), fc.constantFrom(null, undefined, true, {}, [], 'causal', 'full', 'sideways'), fc.array(junkNumber, { maxLength: 3 }));
const junkPair = fc.oneof(fc.tuple(junkNumber, junkNumber), fc.array(junkNumber, { maxLength: 3 }), junk);
const junkRanges = fc.oneof(fc.array(junkPair, { maxLength: 4 }), junk, fc.array(fc.tuple(fc.integer({ min: 0, max: 32 }), fc.integer({ min: 0, max: 32 })), { maxLength: 4 }).map((a) => Int32Array.from(a.flat())));
const junkTypes = fc.oneof(junk, fc.array(fc.oneof(junk, fc.constantFrom('full', 'causal', 'inv_causal', 'bi_causal', 0, 1, 2, 3, 4)), { maxLength: 4 }));

test(`fuzz: malformed masks and options to flexFlashAttn get typed errors (seed ${seed})`, () => {
  const q = Tensor.zeros('float32', [24, 2, 8]);
  const k = Tensor.zeros('float32', [24, 1, 8]);
  const extra = fc.dictionary(fc.constantFrom('softcap', 'softmaxScale', 'sink', 'types', 'causal', 'out', 'lse', 'maxLogits', 'returnMaxLogits', 'backend', 'deterministic'), junk, { maxKeys: 2 });
  fc.assert(
    fc.property(junkRanges, junkRanges, junkTypes, extra, (qRanges, kRanges, maskTypes, more) => {
      acceptedOrTyped(() => flexFlashAttn(q, k, k, { qRanges, kRanges, maskTypes, ...more } as never));
    }),
    { seed, numRuns: 600 },
  );
});

test(`fuzz: malformed keys (mask, shape, configs) to magiAttnFlexKey get typed errors (seed ${seed})`, () => {
  const [group] = createLocalGroups(1);
  const config = fc.oneof(junk, fc.record({ chunkSize: junk, minChunksPerRank: junk, alg: fc.oneof(junk, fc.record({ type: fc.oneof(junk, fc.constantFrom('min-heap', 'topp-heap', 'contiguous-runs')), topP: junk })) }, { requiredKeys: [] }));
  const overlap = fc.oneof(junk, fc.record({ degree: junk, mode: fc.oneof(junk, fc.constantFrom('static', 'dynamic')), minChunkSize: junk, alg: junk }, { requiredKeys: [] }));
  fc.assert(
    fc.property(junkRanges, junkRanges, junkTypes, junkNumber, junkNumber, config, overlap, (qRanges, kRanges, maskTypes, total, heads, dispatchConfig, overlapConfig) => {
      acceptedOrTyped(() =>
        magiAttnFlexKey({ qRanges, kRanges, maskTypes, totalSeqlenQ: total, numHeadsQ: heads, numHeadsKv: 1, headDim: 8, group, dispatchConfig, overlapConfig } as never),
      );
    }),
    { seed, numRuns: 400 },
  );
});

test(`fuzz: mutated plan files are refused by path or proven wrong by checkPlan, never a crash (seed ${seed})`, () => {
  const plan = planToJSON(planDistAttn({ mask: randomMask(new Rng(seed), 'varlen-causal', 300), totalSeqlenQ: 300, cpSize: 3, overlapConfig: { degree: 2, minChunkSize: 8 } }));
  // Every path to a leaf of the plan, to mutate one at a time.
  const leaves: Array<Array<string | number>> = [];
  const walk = (x: unknown, path: Array<string | number>): void => {
    if (Array.isArray(x)) x.forEach((v, i) => walk(v, [...path, i]));
    else if (x !== null && typeof x === 'object') for (const [k, v] of Object.entries(x)) walk(v, [...path, k]);
    else leaves.push(path);
  };
  walk(plan, []);
  const mutation = fc.tuple(fc.integer({ min: 0, max: leaves.length - 1 }), fc.oneof(junk, fc.integer({ min: 0, max: 400 })));
  let refused = 0;
  let parsedWrong = 0;
  fc.assert(
    fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (edits) => {
      const j = structuredClone(plan) as unknown as Record<string | number, unknown>;
      for (const [leaf, value] of edits) {
        const path = leaves[leaf];
        let at = j as Record<string | number, unknown>;
        for (const p of path.slice(0, -1)) at = at[p] as Record<string | number, unknown>;
        at[path[path.length - 1]] = value;
      }
      let parsed;
      try {
        parsed = planFromJSON(JSON.parse(JSON.stringify(j)));
      } catch (e) {
        if (!(e instanceof InvalidArgumentError) || !e.argument.startsWith('plan')) throw e;
        refused++;
        return;
      }
      // Structurally valid: checkPlan must give a verdict (and a wrong plan must fail it), not throw.
      const verdict = checkPlan(parsed);
      if (!verdict.ok) parsedWrong++;
    }),
    { seed, numRuns: 400 },
  );
  assert.ok(refused > 0 && parsedWrong > 0, `${refused} refused, ${parsedWrong} parsed but proven wrong`);
});

test(`fuzz: random flags and mask files to magi-attn plan exit 0, 1 or 2 with one line, never a stack trace (seed ${seed})`, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'magi-fuzz-'));
  try {
    const flagValue = fc.oneof(fc.constantFrom('0', '-1', '1.5', '1e3', 'abc', '', '4', '8', '64', '1024,0', '-1,-1', 'auto', 'min-heap', 'greedy'), fc.integer({ min: -3, max: 5000 }).map(String));
    const flag = fc.tuple(fc.constantFrom('--seqlen', '--cp', '--chunk', '--degree', '--alg', '--overlap-alg', '--docs', '--seed', '--block', '--window', '--heads-q', '--heads-kv', '--head-dim', '--bogus'), flagValue);
    const maskJson = fc.oneof(
      junk,
      fc.record({ qRanges: junkRanges, kRanges: junkRanges, maskTypes: junkTypes }, { requiredKeys: [] }),
      fc.record({ slices: fc.oneof(junk, fc.array(fc.tuple(junkPair, junkPair, junk), { maxLength: 3 })), totalSeqlen: junk }, { requiredKeys: [] }),
    );
    const maskArg = fc.oneof(fc.constantFrom('causal', 'varlen-causal', 'block-causal', 'sliding-window', 'nope'), maskJson.map((m) => {
      const f = join(dir, `m${Math.floor(Math.random() * 1e9)}.json`);
      writeFileSync(f, JSON.stringify(m) ?? 'undefined');
      return f;
    }));
    await fc.assert(
      fc.asyncProperty(maskArg, fc.array(flag, { maxLength: 4 }), async (mask, flags) => {
        let err = '';
        const argv = ['plan', '--mask', mask, '--seqlen', '512', '--cp', '2', ...flags.flat()];
        const code = await runCli(argv, { out: () => undefined, err: (t) => (err += t) });
        assert.ok(code === 0 || code === 1 || code === 2, `exit ${code}`);
        assert.doesNotMatch(err, /internal error|\n\s+at /, `${argv.join(' ')}\n${err}`);
        if (code === 2) assert.ok(err.trim().length > 0, 'a usage error says why');
      }),
      { seed, numRuns: 250 },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test(`property: checkPlan proves the plan of every random valid mask, cp size and config (seed ${seed})`, () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...MASK_FAMILIES),
      fc.integer({ min: 16, max: 400 }),
      fc.integer({ min: 1, max: 6 }),
      fc.integer({ min: 0, max: 3 }),
      fc.constantFrom('min-heap', 'sequential', 'sorted-sequential', 'topp-heap', 'contiguous-runs'),
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      (family, n, cp, degree, alg, maskSeed) => {
        const mask = randomMask(new Rng(maskSeed), family, n);
        let plan;
        try {
          plan = planDistAttn({ mask, totalSeqlenQ: n, cpSize: cp, dispatchConfig: { alg: { type: alg } }, overlapConfig: { degree, minChunkSize: 4 } });
        } catch (e) {
          // Refusals are typed (e.g. too few tokens for cp ranks, a mask with no cells).
          if (e instanceof InvalidArgumentError) return;
          throw e;
        }
        const verdict = checkPlan(plan);
        assert.ok(verdict.ok, `${family} n=${n} cp=${cp} degree=${degree} ${alg} mask seed ${maskSeed}:\n${verdict.errors.join('\n')}`);
      },
    ),
    { seed, numRuns: 150 },
  );
});
