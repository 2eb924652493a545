/**
 * Option objects are checked by name: a misspelt or foreign field (`types` for `maskTypes`,
 * `causal: true` on a slice mask) is an error that names it, never silently ignored, because an
 * ignored mask field turns into a different mask without a word.
 */
import { InvalidArgumentError } from '../errors.js';

/** Throws unless `options` is a plain object whose every own key is in `known`. */
export function requireKnownOptions<O>(options: O, argument: string, known: readonly string[]): asserts options is O & object {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidArgumentError(argument, 'must be an options object', `got ${options === null ? 'null' : Array.isArray(options) ? 'an array' : typeof options}`);
  }
  for (const name of Object.keys(options)) {
    if (!known.includes(name)) {
      throw new InvalidArgumentError(`${argument}.${name}`, 'is not an option here', `known: ${known.join(', ')}`);
    }
  }
}
