/**
 * The mask model's public surface: ranges, slice types and their geometry, slice lists, mask
 * builders, dense views and the disjointness check. Everything here is pure and runs in a browser.
 */
export * from './mask-type.js';
export { isCellUnmasked, rowKeyInterval, sliceArea, visibleRows, SliceBuffer, type MaskTypeOrCode } from './geometry.js';
export * from './slice-list.js';
export * from './range.js';
export * from './ranges.js';
export * from './helpers.js';
export * from './dense.js';
export * from './disjoint.js';
export * from './doc-length-histogram.js';
export * from './presets.js';
