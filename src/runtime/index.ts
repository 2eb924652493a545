/**
 * The distributed runtime: runtime keys and their per-group cache, dispatch / undispatch /
 * position ids, and the calcAttn forward / backward pipeline. Browser-safe: the transport comes
 * in as a ProcessGroup, the kernel as a KernelBackend.
 */
export {
  DistAttnRuntimeKey,
  DEFAULT_KEY_CACHE_SIZE,
  magiAttnFlexKey,
  magiAttnVarlenKey,
  makeKeyForNewMaskAfterDispatch,
  makeVarlenKeyForNewMaskAfterDispatch,
  getMostRecentKey,
  clearKeyCache,
  cachedKeyCount,
  setKeyCacheCapacity,
  type KeyShapeOptions,
  type FlexKeyOptions,
  type VarlenKeyOptions,
  type NewMaskOptions,
  type VarlenNewMaskOptions,
} from './key.js';
export { dispatch, undispatch, dispatchBackward, undispatchBackward, roll, getPositionIds, type UndispatchBackwardOptions } from './shard.js';
export {
  calcAttn,
  calcAttnBackward,
  type CalcAttnOptions,
  type CalcAttnBackwardOptions,
  type CalcAttnResult,
  type CalcAttnGrads,
} from './calc-attn.js';
export { AttnTrace, profileOf, type TraceSpan, type SpanKind, type CalcAttnProfile, type StageProfile } from './trace.js';
export { registerDeviceAttnOps, type AttnOps, type DeviceAttnOpsFactory, type Lane, type TimeMark } from './attn-ops.js';
