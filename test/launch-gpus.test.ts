/**
 * The one-process-per-GPU launcher and its TCP rendezvous, without a GPU (a dry launch skips
 * CUDA and NCCL: each rank gets rank 0's rendezvous payload instead of an NCCL unique id), and
 * the clear error when libnccl is missing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launchGpuRanks, freePort } from '../src/comm/launch/launch-gpus.js';
import { rendezvous } from '../src/comm/launch/rendezvous.js';
import { CommTimeoutError, RankFailedError, RunDeadlineError } from '../src/comm/errors.js';
import { NcclLib } from '../src/comm/device/nccl-lib.js';
import { CudaUnavailableError } from '../src/device/cuda-driver.js';
import { repoFile, runnablePath } from './util/paths.js';
import { fileURLToPath } from 'node:url';

const script = runnablePath('test/launch-ranks/dry-rank');
const dry = { env: { MAGI_ATTN_LAUNCH_DRY: '1' }, output: () => undefined, timeoutMs: 30_000 };

test('a dry launch of 3 rank processes: torchrun variables set, one rendezvous payload for all', async () => {
  const results = await launchGpuRanks<{ rank: number; size: number; env: string[]; id: string }>(3, script, ['ok'], dry);
  assert.deepEqual(results.map((r) => r.rank), [0, 1, 2]);
  results.forEach((r, i) => assert.deepEqual(r.env, [String(i), '3', String(i), '127.0.0.1', '0']));
  assert.equal(new Set(results.map((r) => r.id)).size, 1);
  assert.equal(results[0].id.length, 256);
});

test('a TypeScript rank script runs from the launcher as it is published (compiled): the rank processes load tsx', async () => {
  // npm test runs this file compiled, so the launcher here is dist/src/comm/launch/launch-gpus.js
  // with no tsx in its own flags, as `npx magi-attn run --gpus N script.ts` is.
  const results = await launchGpuRanks<{ rank: number }>(2, fileURLToPath(repoFile('test/launch-ranks/dry-rank.ts')), ['ok'], dry);
  assert.deepEqual(results.map((r) => r.rank), [0, 1]);
});

test('a rank that throws or exits fails the launch naming it; the others are stopped', async () => {
  for (const [mode, who, pattern] of [
    ['throw', 1, /^rank 1 failed: Error: rank 1 throws on purpose/],
    ['exit', 2, /^rank 2 failed: Exit: the process exited with code 7/],
  ] as const) {
    const err = await launchGpuRanks(3, script, [mode, String(who)], { ...dry, abortGraceMs: 2000 }).then(
      () => assert.fail('resolved'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof RankFailedError, String(err));
    assert.equal(err.rank, who);
    assert.match(err.message, pattern);
    for (const o of err.outcomes) if (o.rank !== who) assert.equal(o.status, 'aborted', `rank ${o.rank}`);
  }
});

test('a launch past its deadline names the ranks still running', async () => {
  // Both ranks report reaching their wait (rank 1 hangs, rank 0 waits for it), so the deadline
  // ends ranks that run the script, not ones still starting (a rank process starts in well under
  // a second here; the deadline leaves room for a loaded machine).
  const reached: string[] = [];
  const output = (rank: number, _stream: 'out' | 'err', line: string): void => void reached.push(`${rank} ${line}`);
  const err = await launchGpuRanks(2, script, ['hang', '1'], { ...dry, output, deadlineMs: 3000 }).then(
    () => assert.fail('resolved'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof RunDeadlineError, String(err));
  assert.deepEqual(err.running, [0, 1]);
  assert.deepEqual(reached.sort(), ['0 waiting', '1 hanging']);
});

test('a rendezvous that a rank never joins times out on rank 0 naming it', async () => {
  const port = await freePort();
  const payload = new Uint8Array(128).fill(7);
  // Rank 1 joins at once and its own timeout ends after rank 0's (both run on this process's
  // event loop), so when rank 0 gives up, rank 2 is the only one missing.
  const [got, err] = await Promise.all([
    rendezvous({ rank: 1, size: 3, addr: '127.0.0.1', port, timeoutMs: 2000 }).catch((e: unknown) => e),
    rendezvous({ rank: 0, size: 3, addr: '127.0.0.1', port, timeoutMs: 1500, payload }).catch((e: unknown) => e),
  ]);
  assert.ok(err instanceof CommTimeoutError, String(err));
  assert.deepEqual(err.missingRanks, [2]);
  assert.match(err.message, /ranks 2 did not join/);
  assert.ok(got instanceof Error);
});

test('libnccl not found: the error lists every path tried and how to point at it', () => {
  assert.throws(
    () => new NcclLib(['/nonexistent/libnccl.so.2', '/also/missing/libnccl.so.2']),
    (e: unknown) => e instanceof CudaUnavailableError && /\/nonexistent\/libnccl\.so\.2: no such file/.test(e.message) && /MAGI_ATTN_LIBNCCL/.test(e.message) && e.tried.length === 2,
  );
});
