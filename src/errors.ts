/**
 * Error types. Every check on user input throws one of these before any work starts, with a
 * message that names the offending argument and the rule it broke, so a caller can fix the call
 * without reading our source.
 */

/** Base class: an argument broke a documented rule. `argument` names it; `rule` states the rule. */
export class InvalidArgumentError extends Error {
  override name = 'InvalidArgumentError';
  constructor(
    readonly argument: string,
    readonly rule: string,
    detail?: string,
  ) {
    super(`${argument}: ${rule}${detail === undefined ? '' : ` (${detail})`}`);
  }
}

/** A half-open range or list of ranges is malformed (end < start, non-integer, out of bounds). */
export class AttnRangeError extends InvalidArgumentError {
  override name = 'AttnRangeError';
}

/** A mask (slice list, mask type, helper argument) is malformed. */
export class MaskError extends InvalidArgumentError {
  override name = 'MaskError';
}

/** Tensors disagree with each other or with what the kernel supports (shape, dtype, heads). */
export class ShapeError extends InvalidArgumentError {
  override name = 'ShapeError';
}

/**
 * A native library the caller asked for could not be loaded (the CPU backend's 'blas' engine and
 * its CBLAS): the message says what was looked for and how to install one; `tried` lists each
 * candidate with the reason it failed.
 */
export class BlasUnavailableError extends Error {
  override name = 'BlasUnavailableError';
  constructor(
    message: string,
    readonly tried: readonly string[],
  ) {
    super(message);
  }
}
