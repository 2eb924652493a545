/**
 * Timing launches with CUDA events, in one place for the benches and the GPU test scripts:
 * timeLaunches is how bench:kernel times a launch (the baselines the same way in baselines.py's
 * time_calls: the same counts, events and queuing); bench/kernel/fwd-gap.ts sets it beside the
 * other two.
 */
import { median } from '../../src/util/stats.js';

export interface EventLike {
  record(): void;
  elapsedSince(start: EventLike): number;
  destroy(): void;
}
export interface DeviceLike {
  synchronize(): void;
  createEvent(): EventLike;
}

/**
 * Warm-up and timed call counts for a call of `perCallMs` (baselines.py timing_counts, the same
 * rule): `warmup` warm-ups, fewer when they would take over 1 s (at least 1); `iters` timed calls,
 * fewer when they would take over 2 s (at least 5).
 */
export function timingCounts(perCallMs: number, iters: number, warmup: number): { warmup: number; iters: number } {
  const per = Math.max(perCallMs, 1e-3);
  return { warmup: Math.max(1, Math.min(warmup, Math.floor(1000 / per))), iters: Math.max(5, Math.min(iters, Math.floor(2000 / per))) };
}

/** How timeLaunches runs: `fixed` takes the counts as given (warm-ups counted with the sizing call); `waitEach` waits for each timed call before queuing the next. */
export interface TimeLaunchesOptions {
  fixed?: boolean;
  waitEach?: boolean;
}

/**
 * Median ms of `run`: one untimed call (first use: module load, lazy allocations), one call timed
 * on the host to size the counts (timingCounts), the rest of the warm-ups, then the timed calls,
 * each between its own pair of CUDA events on the legacy default stream, all queued before the
 * host waits once at the end: baselines.py's time_calls, and how torch harnesses time a call. So
 * the host's launch of a call overlaps the call before it, as in a training step. `waitEach` makes
 * the host wait for each call's second event before queuing the next, so that the GPU idles from
 * the first event until the call is queued and the host's launch time is inside the reading
 * (bench:kernel timed ours that way until 2026-12-04, the baselines never: launch-gap.ts).
 */
export function timeLaunches(dev: DeviceLike, run: () => void, iters: number, warmup: number, options: TimeLaunchesOptions = {}): { ms: number; n: number } {
  run();
  dev.synchronize();
  const t0 = performance.now();
  run();
  dev.synchronize();
  const counts = options.fixed === true ? { warmup, iters } : timingCounts(performance.now() - t0, iters, warmup);
  for (let i = 1; i < counts.warmup; i++) run();
  const n = counts.iters;
  const starts = Array.from({ length: n }, () => dev.createEvent());
  const ends = Array.from({ length: n }, () => dev.createEvent());
  for (let i = 0; i < n; i++) {
    starts[i]!.record();
    run();
    ends[i]!.record();
    if (options.waitEach === true) dev.synchronize();
  }
  dev.synchronize();
  const times = starts.map((start, i) => ends[i]!.elapsedSince(start));
  for (const e of [...starts, ...ends]) e.destroy();
  return { ms: median(times), n };
}

/**
 * Seconds every method's forward timing of a cell waits, GPU idle, before it starts (run.ts
 * --settle-s, baselines.py --settle-s). The H200 runs attention at its 700 W power limit: a kernel
 * timed right after other work reads lower than after an idle pause (fwd-gap.ts, 16k causal
 * forward: 688 TFLOP/s after 3 s idle, 591 after 3 s of forwards, 568 after 1 s of backwards), so
 * every method gets the same pause instead of whatever its harness happened to run before it.
 */
export const SETTLE_S_DEFAULT = 2;

/** Waits for the GPU to finish, then `seconds` more with the host blocked (nothing is launched meanwhile). */
export function settle(dev: Pick<DeviceLike, 'synchronize'>, seconds: number): void {
  dev.synchronize();
  if (seconds > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, seconds * 1000);
}

/** Milliseconds per launch: `warmup` launches, then `reps` launches back to back between one pair of CUDA events (no host wait between them), averaged. */
export function meanEventMs(dev: DeviceLike, launch: () => void, warmup: number, reps: number): number {
  for (let i = 0; i < warmup; i++) launch();
  const start = dev.createEvent();
  const end = dev.createEvent();
  start.record();
  for (let i = 0; i < reps; i++) launch();
  end.record();
  const ms = end.elapsedSince(start) / reps;
  start.destroy();
  end.destroy();
  return ms;
}

/** `warmup` launches, then `reps` launches each between its own CUDA events: median and min ms. */
export function medianEventMs(dev: DeviceLike, launch: () => void, warmup = 3, reps = 10): { median: number; min: number } {
  for (let i = 0; i < warmup; i++) launch();
  dev.synchronize();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const start = dev.createEvent();
    const end = dev.createEvent();
    start.record();
    launch();
    end.record();
    times.push(end.elapsedSince(start));
    start.destroy();
    end.destroy();
  }
  times.sort((a, b) => a - b);
  return { median: median(times), min: times[0] };
}
