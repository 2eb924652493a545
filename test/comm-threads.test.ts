/**
 * The worker-thread backend: every collective against a direct computation on P = 1, 2, 3, 4, 8
 * ranks (test/comm-ranks/collective-battery.ts, group-battery.ts: random sizes with zero-length
 * sends, the shared-memory and zero-copy paths, collectives in flight together, the 03 worked
 * examples), fail-fast when a rank throws or dies, timeouts naming the absent rank, mismatched
 * calls, overlap of an exchange with compute, and `magi-attn run`.
 *
 * Random cases print their seed; replay with MAGI_SEED=<seed>. Every thread rank is an isolate
 * that loads and compiles its modules anew (and boots tsx first when this file runs from source),
 * so the heavy random coverage lives in comm-group-collective.test.ts on the in-process backend.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { spawnRanks } from '../src/comm/threads/index.js';
import { maxThreadRanks } from '../src/comm/threads/spawn.js';
import { Tensor } from '../src/tensor.js';
import { RankFailedError, RunDeadlineError, type RankOutcome } from '../src/comm/errors.js';
import { InvalidArgumentError } from '../src/errors.js';
import { runScript } from '../src/cli/run.js';
import { freshSeed } from '../src/util/rng.js';
import type { BatteryResult } from './comm-ranks/collective-battery.js';
import type { Scenario } from './comm-ranks/scenario-rank.js';
import { repoFile, runnable } from './util/paths.js';

const rankScript = (name: string): URL => runnable(`test/comm-ranks/${name}`);

for (const P of [1, 2, 3, 4, 8]) {
  test(`every collective and GroupCast/GroupReduce match a direct computation on ${P} thread rank(s)`, async (t) => {
    const seed = freshSeed();
    t.diagnostic(`seed ${seed}`);
    const light = P === 8;
    const results = await spawnRanks<BatteryResult>(P, rankScript('battery-rank'), { seed, rounds: light ? 2 : 3, cases: light ? 2 : 3 });
    assert.equal(results.length, P);
    assert.deepEqual(results.flatMap((r) => r.failures), [], `seed ${seed}`);
    for (const r of results) assert.ok(r.checks > 20, `only ${r.checks} checks ran`);
  });
}

test('a rank that throws makes spawnRanks reject naming it, long before the collective timeout', async () => {
  const timeoutMs = 20_000;
  const err = await spawnRanks(3, rankScript('scenario-rank'), { mode: 'throw', failRank: 1 } satisfies Scenario, { timeoutMs }).then(
    () => assert.fail('spawnRanks resolved'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof RankFailedError, String(err));
  assert.equal(err.rank, 1);
  assert.match(err.message, /^rank 1 failed: Error: boom on purpose \(rank 1\)/);
  assert.deepEqual(err.outcomes.map((o) => o.status), ['aborted', 'failed', 'aborted']);
  for (const r of [0, 2]) {
    const o: RankOutcome<unknown> = err.outcomes[r];
    if (o.status !== 'aborted') assert.fail(`rank ${r} ${o.status}`);
    assert.equal(o.error.name, 'CommAbortedError');
    // Usually blocked in the allToAllV; the abort can overtake rank 1's barrier message, though.
    assert.match(o.error.message, /^(allToAllV \(collective #1\)|barrier \(collective #0\)) on rank \d of group 'threads' aborted: rank 1 failed: Error: boom/);
  }
  // The others were blocked in a collective with a 20 s timeout: they were aborted (above), not timed out.
});

test('a rank that dies from an uncaught asynchronous error is reported the same way', async () => {
  const err = await spawnRanks(2, rankScript('scenario-rank'), { mode: 'throw-async', failRank: 0 } satisfies Scenario, { timeoutMs: 20_000 }).then(
    () => assert.fail('spawnRanks resolved'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof RankFailedError, String(err));
  assert.equal(err.rank, 0);
  assert.match(err.message, /rank 0 failed: Error: uncaught asynchronous boom \(rank 0\)/);
  assert.equal(err.outcomes[1].status, 'aborted');
});

test('a collective that one rank never joins times out with an error naming that rank', async () => {
  // Long enough that a rank starved of CPU for a while (CI has 2 cores) still joins in time, so
  // only the absent rank is reported missing.
  const timeoutMs = 2000;
  const results = await spawnRanks<Record<string, unknown> | string>(3, rankScript('scenario-rank'), { mode: 'absent', absentRank: 2 } satisfies Scenario, { timeoutMs, name: 'cp' });
  assert.equal(results[2], 'stayed away');
  for (const r of [0, 1]) {
    const res = results[r] as { name: string; message: string; missing: number[]; collective: string; elapsedMs: number };
    assert.equal(res.name, 'CommTimeoutError');
    assert.equal(res.collective, 'barrier');
    assert.deepEqual(res.missing, [2]);
    assert.equal(res.message, `barrier (collective #0) on rank ${r} of group 'cp' timed out after 2000 ms: ranks 2 did not arrive`);
    // Never early (a lower bound holds however loaded the machine is).
    assert.ok(res.elapsedMs >= timeoutMs - 5, `timed out after ${res.elapsedMs} ms`);
  }
});

test('ranks that disagree on counts or on the collective get a mismatch error, not a hang', async () => {
  const results = await spawnRanks<{ countError: string | null; callError: string | null }>(2, rankScript('scenario-rank'), { mode: 'mismatch' } satisfies Scenario, { timeoutMs: 5000 });
  assert.equal(results[0].countError, "allToAllV (collective #0) on rank 0 of group 'threads': rank 1 sends 4 elements to rank 0, which expects 3");
  assert.equal(results[1].countError, null);
  assert.equal(results[0].callError, "barrier (collective #1) on rank 0 of group 'threads': rank 1 called allGatherV as collective #1, rank 0 called barrier");
  assert.equal(results[1].callError, "allGatherV (collective #1) on rank 1 of group 'threads': rank 0 called barrier as collective #1, rank 1 called allGatherV");
});

test('a rank can start an allToAllV, compute while it runs, then wait', async () => {
  const peerDelayMs = 400;
  const workMs = 400;
  const results = await spawnRanks<{ ok: boolean; startMs?: number; completedAtStart?: boolean; totalMs?: number }>(2, rankScript('scenario-rank'), { mode: 'overlap', peerDelayMs, workMs } satisfies Scenario);
  const r0 = results[0];
  assert.ok(r0.ok && results[1].ok, 'wrong data');
  // Starting returned before the exchange could complete (the peer joins 400 ms later), so the
  // rank computed while it was in flight.
  assert.equal(r0.completedAtStart, false);
});

test('spawnRanks rejects a bad size and a script without a default export', async () => {
  await assert.rejects(spawnRanks(0, rankScript('cli-rank')), InvalidArgumentError);
  const err = await spawnRanks(1, rankScript('collective-battery')).then(
    () => assert.fail('resolved'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof RankFailedError);
  assert.match(err.message, /rank 0 failed: TypeError: .*collective-battery\.[jt]s must export a default function/);
});

test('magi-attn run prints one line per rank and exits non-zero when a rank fails', async () => {
  const lines: string[] = [];
  // A TypeScript rank script, as a user may pass one: the ranks boot through tsx even when this
  // suite runs compiled (the other tests here start compiled rank scripts).
  const ok = await runScript(fileURLToPath(repoFile('test/comm-ranks/cli-rank.ts')), ['a', 'b'], { ranks: 3, timeoutMs: 10_000, json: false }, (l) => lines.push(l));
  assert.equal(ok, 0);
  assert.deepEqual(lines.slice(0, 3), [0, 1, 2].map((r) => `rank ${r}: ok {"rank":${r},"size":3,"args":["a","b"],"sum":6}`));
  assert.match(lines[3], /^3 ranks ok in \d+\.\d\d s$/);

  lines.length = 0;
  const bad = await runScript(rankScript('cli-rank').pathname, ['fail', '1'], { ranks: 2, timeoutMs: 10_000, json: true }, (l) => lines.push(l));
  assert.equal(bad, 1);
  const parsed = JSON.parse(lines[0]) as Array<{ rank: number; status: string; error?: { message: string } }>;
  assert.deepEqual(parsed.map((o) => o.status), ['aborted', 'failed']);
  assert.equal(parsed[1].error?.message, 'rank 1 was told to fail');
});

test('a rank that calls process.exit is blamed for the failure, not the peers that saw it leave', async () => {
  for (const exitRank of [0, 2]) {
    const err = await spawnRanks(3, rankScript('scenario-rank'), { mode: 'exit', exitRank } satisfies Scenario, { timeoutMs: 20_000 }).then(
      () => assert.fail('spawnRanks resolved'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof RankFailedError, String(err));
    assert.equal(err.rank, exitRank, err.message);
    assert.match(err.message, new RegExp(`^rank ${exitRank} failed: Exit: the thread exited \\(code 1\\) before returning`));
    for (const o of err.outcomes) if (o.rank !== exitRank) assert.equal(o.status, 'aborted', `rank ${o.rank}`);
  }
});

test('a run past its deadline ends every rank and names the ones still running', async () => {
  const err = await spawnRanks(3, rankScript('scenario-rank'), { mode: 'stuck', stuckRanks: [0, 2] } satisfies Scenario, { deadlineMs: 1500 }).then(
    () => assert.fail('spawnRanks resolved'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof RunDeadlineError, String(err));
  assert.deepEqual(err.running, [0, 2]);
  assert.match(err.message, /deadline of 1\.5 s with ranks 0, 2 still running/);
  assert.equal(err.outcomes[1].status, 'ok');
  await assert.rejects(spawnRanks(2, rankScript('cli-rank'), [], { deadlineMs: 0 }), InvalidArgumentError);
});

test('Tensors cross into thread ranks and back as Tensors, wherever they sit in the arguments', async () => {
  const x = Tensor.fromValues('bfloat16', [2, 3], [1, 2, 3, 4, 5, 6]);
  const results = await spawnRanks<{ doubled: Tensor; count: number } | string>(2, rankScript('scenario-rank'), { mode: 'tensors', x, nested: { list: [x, x] } } satisfies Scenario);
  results.forEach((r, rank) => {
    assert.ok(typeof r !== 'string', String(r));
    assert.ok(r.doubled instanceof Tensor);
    assert.deepEqual(r.doubled.shape, [2, 3]);
    assert.equal(r.doubled.dtype, 'bfloat16');
    assert.deepEqual(Array.from(r.doubled.toFloat32()), [1, 2, 3, 4, 5, 6].map((v) => 2 * v + rank));
    assert.equal(r.count, 2);
  });
});

test('more thread ranks than the machine can hold is refused up front, naming the limit', async () => {
  const { limit } = maxThreadRanks();
  const err = await spawnRanks(limit + 1, rankScript('cli-rank')).then(
    () => assert.fail('resolved'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof InvalidArgumentError && err.argument === 'size', String(err));
  assert.match(err.message, new RegExp(`must be at most ${limit}`));
});
