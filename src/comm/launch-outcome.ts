/**
 * How a launch ends, for both launchers (thread ranks, threads/spawn.ts; rank processes,
 * launch/launch-gpus.ts): the rank its first failure is blamed on, and the launch's result once
 * every rank has ended. What each launcher tells the other ranks, and when it stops them, stays
 * its own.
 */
import { blamedRank, RankFailedError, type RankOutcome } from './errors.js';
import { unwrapTensors } from './threads/transfer.js';

type RankFailure = Exclude<RankOutcome<unknown>, { status: 'ok' }>;

/**
 * The launch's first failure, reported by `rank`: the rank it is blamed on (blamedRank) and the
 * outcome to record for `rank`, 'aborted' when a peer is blamed (it failed because that peer left).
 */
export function blameFirstFailure(outcome: RankFailure, rank: number, size: number): { root: number; outcome: RankFailure } {
  const root = blamedRank(outcome, rank, size);
  return { root, outcome: root === rank ? outcome : { ...outcome, status: 'aborted' } };
}

/** Ends a launch whose every rank has an outcome: their values in rank order, or RankFailedError blaming `rootCause` (-1: none failed). */
export function settleLaunch<R>(outcomes: readonly RankOutcome<R>[], rootCause: number, resolve: (values: R[]) => void, reject: (error: RankFailedError) => void): void {
  if (rootCause < 0) resolve(outcomes.map((o) => unwrapTensors((o as { value: R }).value) as R));
  else reject(new RankFailedError(rootCause, outcomes));
}
