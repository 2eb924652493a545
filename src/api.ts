/**
 * The distributed public surface, in the reference's vocabulary: build a key for a mask once
 * (magiAttnFlexKey / magiAttnVarlenKey), dispatch the full sequence to the local shard, run
 * calcAttn (and calcAttnBackward) on the shards, undispatch the result. Every call that takes a
 * key is a collective over the key's ProcessGroup except dispatch and getPositionIds.
 */
export * from './runtime/index.js';
export { computePadSize } from './solver/chunking.js';
