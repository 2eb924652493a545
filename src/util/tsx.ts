/**
 * TypeScript rank scripts: both launchers (worker threads, and one process per GPU) run a `.ts`
 * rank script through tsx when it is installed. A launcher that itself runs through tsx passes
 * its loader on (process flags and, for threads, the boot below); a compiled one (the published
 * `magi-attn` binary) must add it. This module holds the test for "TypeScript" and the lookup,
 * with the one error a user sees when tsx is missing.
 */
import { InvalidArgumentError } from '../errors.js';

/** Whether a rank script needs a TypeScript loader. */
export function isTypeScriptScript(path: string): boolean {
  return /\.[mc]?ts$/.test(path);
}

/** The resolved URL of a tsx entry (`tsx`: the `--import` loader; `tsx/esm/api`: register()), or the error naming the script. */
export function resolveTsx(entry: 'tsx' | 'tsx/esm/api', script: string): string {
  try {
    return import.meta.resolve(entry);
  } catch {
    throw new InvalidArgumentError('script', 'a TypeScript rank script needs the tsx package (npm i -D tsx), or compile it to JavaScript', script);
  }
}
