/**
 * Errors of the communication layer. Each names the group, the rank that raised it and the
 * collective by its sequence number (the i-th collective of every rank is the same call), so that
 * a message from any one rank says where the group went wrong. Browser-safe.
 */

/** Base class: a collective could not complete on this rank. */
export class CommError extends Error {
  override name = 'CommError';
}

/** A collective did not complete in time; `missingRanks` are the peers it was still waiting for. */
export class CommTimeoutError extends CommError {
  override name = 'CommTimeoutError';
  constructor(
    readonly collective: string,
    readonly rank: number,
    readonly missingRanks: readonly number[],
    message: string,
  ) {
    super(message);
  }
}

/** The group was torn down under a pending collective: another rank failed, or close() was called. */
export class CommAbortedError extends CommError {
  override name = 'CommAbortedError';
  constructor(
    /** The rank whose failure caused the abort; -1 when this rank closed the group itself. */
    readonly failedRank: number,
    message: string,
  ) {
    super(message);
  }
}

/** Ranks disagree about a collective: a different call, element count or element type. */
export class CommMismatchError extends CommError {
  override name = 'CommMismatchError';
}

/** An error as it crosses a thread or process boundary (class identity does not survive). */
export interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly stack?: string;
  /** For an abort caused by another rank: that rank (so a launcher blames it, not this one). */
  readonly causeRank?: number;
}

export function serializeError(e: unknown): SerializedError {
  if (e instanceof CommAbortedError && e.failedRank >= 0) return { name: e.name, message: e.message, stack: e.stack, causeRank: e.failedRank };
  if (e instanceof Error) return { name: e.name, message: e.message, stack: e.stack };
  return { name: 'Error', message: `non-Error value thrown: ${String(e)}` };
}

/** How one rank of a launch ended. `aborted`: stopped because another rank failed. */
export type RankOutcome<R> =
  | { readonly rank: number; readonly status: 'ok'; readonly value: R }
  | { readonly rank: number; readonly status: 'failed' | 'aborted'; readonly error: SerializedError };

/** A launch ran past its deadline: `running` are the ranks that had not finished (all were ended). */
export class RunDeadlineError extends Error {
  override name = 'RunDeadlineError';
  constructor(
    readonly deadlineMs: number,
    readonly running: readonly number[],
    readonly outcomes: readonly RankOutcome<unknown>[],
  ) {
    super(`the run passed its deadline of ${deadlineMs / 1000} s with rank${running.length === 1 ? '' : 's'} ${running.join(', ')} still running; every rank was ended`);
  }
}

/** A launch failed: `rank` is the first rank that failed on its own; `outcomes` has every rank. */
export class RankFailedError extends Error {
  override name = 'RankFailedError';
  constructor(
    readonly rank: number,
    readonly outcomes: readonly RankOutcome<unknown>[],
  ) {
    const root = outcomes[rank];
    const why = root.status === 'ok' ? 'unknown error' : `${root.error.name}: ${root.error.message}`;
    const aborted = outcomes.filter((o) => o.status === 'aborted').map((o) => o.rank);
    const alsoFailed = outcomes.filter((o) => o.status === 'failed' && o.rank !== rank).map((o) => o.rank);
    let msg = `rank ${rank} failed: ${why}`;
    if (alsoFailed.length > 0) msg += `; ranks ${alsoFailed.join(', ')} failed too`;
    if (aborted.length > 0) msg += `; ranks ${aborted.join(', ')} were stopped`;
    super(msg);
  }
}

/**
 * The rank a failure is blamed on: a rank that failed because a peer left names that peer
 * (its own exit event may arrive later, but it failed first); otherwise the rank itself.
 */
export function blamedRank(outcome: RankOutcome<unknown>, rank: number, size: number): number {
  const cause = outcome.status === 'ok' ? undefined : outcome.error.causeRank;
  return cause !== undefined && cause >= 0 && cause < size && cause !== rank ? cause : rank;
}
