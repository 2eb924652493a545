/**
 * The worker-thread backend (Node only): the launcher and the process group it hands each rank.
 */
export { spawnRanks, DEFAULT_TIMEOUT_MS, type SpawnOptions, type RankMain } from './spawn.js';
export { ThreadProcessGroup, INLINE_MAX_BYTES } from './thread-group.js';
