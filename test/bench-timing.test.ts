/**
 * bench/kernel/timing.ts on a stand-in device (no GPU): the warm-up / timed-call counts rule shared
 * with baselines.py, and settle(), the idle pause every method's forward timing of a cell starts
 * with (synchronizes first, then blocks the host for the given time, launching nothing).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SETTLE_S_DEFAULT, settle, timingCounts } from '../bench/kernel/timing.js';

test('timingCounts: warm-ups capped at ~1 s and timed calls at ~2 s, never below 1 and 5', () => {
  assert.deepEqual(timingCounts(1, 20, 5), { warmup: 5, iters: 20 });
  assert.deepEqual(timingCounts(300, 20, 5), { warmup: 3, iters: 6 });
  assert.deepEqual(timingCounts(5000, 20, 5), { warmup: 1, iters: 5 });
});

test('settle: synchronizes, then waits the given seconds with nothing launched; 0 only synchronizes', () => {
  const calls: string[] = [];
  const dev = { synchronize: () => calls.push('sync') };
  let t0 = performance.now();
  settle(dev, 0.2);
  const waited = performance.now() - t0;
  assert.deepEqual(calls, ['sync']);
  assert.ok(waited >= 195, `waited ${waited.toFixed(0)} ms, expected at least 200`);
  t0 = performance.now();
  settle(dev, 0);
  assert.deepEqual(calls, ['sync', 'sync']);
  assert.ok(performance.now() - t0 < 150);
  assert.equal(SETTLE_S_DEFAULT, 2);
});
