/**
 * bench/kernel/timing.ts on a stand-in device (no GPU): the warm-up / timed-call counts rule shared
 * with baselines.py, and settle(), the idle pause every method's forward timing of a cell starts
 * with (synchronizes first, then blocks the host for the given time, launching nothing), and
 * timeLaunches on a simulated stream whose launches cost host time: queued (bench:kernel's and
 * baselines.py's method) the launch hides behind the call before it, with waitEach it does not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SETTLE_S_DEFAULT, settle, timeLaunches, timingCounts, type DeviceLike, type EventLike } from '../bench/kernel/timing.js';

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

/**
 * One in-order stream in simulated time: the host clock advances by `launchMs` per call queued, the
 * GPU runs each call for `kernelMs` from when it is both queued and free; an event completes when
 * the GPU reaches it, and waiting on it (or synchronizing) moves the host clock up to then.
 */
function simulatedStream(launchMs: number, kernelMs: number): { dev: DeviceLike; run: () => void; waits: () => number } {
  let host = 0;
  let gpuFree = 0;
  let waits = 0;
  const dev: DeviceLike = {
    synchronize: () => {
      waits++;
      host = Math.max(host, gpuFree);
    },
    createEvent: (): EventLike & { at: number } => {
      const e = {
        at: Number.NaN,
        record: () => {
          e.at = Math.max(host, gpuFree);
          gpuFree = e.at;
        },
        elapsedSince: (start: EventLike) => {
          host = Math.max(host, e.at);
          return e.at - (start as EventLike & { at: number }).at;
        },
        destroy: () => {},
      };
      return e;
    },
  };
  const run = (): void => {
    host += launchMs;
    gpuFree = Math.max(host, gpuFree) + kernelMs;
  };
  return { dev, run, waits: () => waits };
}

test('timeLaunches: queued calls read the kernel alone, waitEach adds the launch; one wait at the end when queued', () => {
  const queued = simulatedStream(0.015, 0.25);
  const q = timeLaunches(queued.dev, queued.run, 10, 3, { fixed: true });
  assert.equal(q.n, 10);
  assert.ok(Math.abs(q.ms - 0.25) < 1e-9, `queued read ${q.ms} ms, expected the kernel's 0.25`);
  assert.equal(queued.waits(), 3, 'untimed call, sizing call, one wait after the timed calls');
  const waited = simulatedStream(0.015, 0.25);
  const w = timeLaunches(waited.dev, waited.run, 10, 3, { fixed: true, waitEach: true });
  assert.ok(Math.abs(w.ms - 0.265) < 1e-9, `waited read ${w.ms} ms, expected 0.25 + the 0.015 launch`);
  // a launch slower than the kernel shows in queued readings too (the GPU waits for the host)
  const hostBound = simulatedStream(0.4, 0.25);
  assert.ok(Math.abs(timeLaunches(hostBound.dev, hostBound.run, 10, 3, { fixed: true }).ms - 0.4) < 1e-9);
});
