/**
 * Reading the environment from modules that must also load in a browser, where there is no
 * `process`: a global lookup instead of Node's typings.
 */

/** The process environment (writable, as Node's), or undefined where there is none. */
export function environment(): Record<string, string | undefined> | undefined {
  return (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
}

/** The environment variable `name`, or undefined where it is unset or there is no environment. */
export function envVar(name: string): string | undefined {
  return environment()?.[name];
}
