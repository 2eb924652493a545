/**
 * Flag parsers for commander: each turns the string a user typed into a value or throws
 * commander's InvalidArgumentError, which commander reports as one line naming the flag
 * ("option '--cp <p>' argument '0' is invalid. must be an integer >= 1") before any work starts.
 */
import { InvalidArgumentError } from 'commander';

/** An integer >= min (decimal digits only: '1e3', '0x10', '4.0' and '' are refused). */
export function intAtLeast(min: number): (value: string) => number {
  return (value: string) => {
    const n = /^-?\d+$/.test(value.trim()) ? Number(value) : NaN;
    if (!Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`must be an integer >= ${min}`);
    return n;
  };
}

/** A finite number > 0. */
export function positiveNumber(value: string): number {
  const n = value.trim() === '' ? NaN : Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a number > 0');
  return n;
}

/** "left,right" with integers >= -1 (-1: unbounded). */
export function windowPair(value: string): [number, number] {
  const parts = value.split(',');
  const ints = parts.map((p) => (/^-?\d+$/.test(p.trim()) ? Number(p) : NaN));
  if (parts.length !== 2 || !ints.every((x) => Number.isSafeInteger(x) && x >= -1)) {
    throw new InvalidArgumentError('must be "left,right" with integers >= -1 (-1: unbounded)');
  }
  return [ints[0], ints[1]];
}

/** An integer >= min, or one of the given words. */
export function intOrWord<W extends string>(min: number, words: readonly W[]): (value: string) => number | W {
  const asInt = intAtLeast(min);
  return (value: string) => {
    if ((words as readonly string[]).includes(value)) return value as W;
    try {
      return asInt(value);
    } catch {
      throw new InvalidArgumentError(`must be an integer >= ${min} or ${words.join(' / ')}`);
    }
  };
}

/** A comma-separated list of the given words (each trimmed; at least one; any other word refused). */
export function wordList<W extends string>(allowed: readonly W[]): (value: string) => W[] {
  return (value: string) => {
    const items = value.split(',').map((s) => s.trim());
    const bad = items.find((s) => !(allowed as readonly string[]).includes(s));
    if (bad !== undefined) throw new InvalidArgumentError(`'${bad}' is not one of ${allowed.join(', ')}`);
    return items as W[];
  };
}
