/**
 * The communication layer, browser-safe part: the ProcessGroup interface, GroupCast /
 * GroupReduce on top of it, the in-process backend and the errors. The worker-thread backend
 * (Node only) is in ./threads/index.js so that a browser bundle never pulls it in.
 */
export type { AllReduceOptions, CommWork, Counts, GroupInfo, HalfType, HostArray, ProcessGroup, ReduceOp } from './process-group.js';
export { lowerGroupCast, lowerGroupReduce, matchGroupCast, toGroupReduceArgs, type A2AVLowering, type GroupCastArgs, type GroupReduceArgs } from './group-collective-args.js';
export { groupCast, groupReduce, prepareGroupCast, prepareGroupReduce, type GroupReduceOp, type GroupReduceOptions, type PreparedGroupCollective } from './group-collective.js';
export { createLocalGroups, runLocalRanks, runRanksOf, LocalExchangeGroup, LocalWorld, type LocalProcessGroup, type LocalRunOptions } from './local-group.js';
export { createProcessMesh, isProcessMesh, type ProcessMesh } from './mesh.js';
export { CommAbortedError, CommError, CommMismatchError, CommTimeoutError, RankFailedError, RunDeadlineError, type RankOutcome, type SerializedError } from './errors.js';
