/**
 * The context-parallel baselines run for real (not only priced by the planner): ring attention
 * with per-document zig-zag sharding and Ulysses, over the same kernels, AttnOps and process
 * groups as calcAttn, so a benchmark compares distribution strategies and nothing else.
 */
export {
  ringAttnKey,
  ringAttn,
  ringAttnBackward,
  ringDispatch,
  ringUndispatch,
  documentsOf,
  RingAttnKey,
  type RingAttnKeyOptions,
} from './ring-attn.js';
export {
  ulyssesAttnKey,
  ulyssesAttn,
  ulyssesAttnBackward,
  ulyssesDispatch,
  ulyssesUndispatch,
  UlyssesAttnKey,
  type UlyssesAttnKeyOptions,
  type UlyssesAttnOptions,
  type UlyssesAttnBackwardOptions,
  type UlyssesAttnResult,
  type UlyssesSaved,
} from './ulysses-attn.js';
export { restrictMask, type BaselineLayout, type BaselineAttnOptions, type BaselineAttnResult, type BaselineAttnGrads } from './common.js';
