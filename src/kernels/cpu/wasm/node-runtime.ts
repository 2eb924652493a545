/**
 * What the WebAssembly kernel takes from Node, and only from Node: its built-ins (worker threads,
 * os, v8), reached through `process.getBuiltinModule` (Node >= 20.16) instead of imports, so no
 * module of the kernel imports a Node built-in and a browser build pulls none; the environment's
 * opt-out; and V8's relaxed-SIMD flag. Everywhere else (a browser, an older Node) these find
 * nothing and change nothing.
 *
 * Relaxed SIMD is a finished, standardised WebAssembly feature, on by default in V8 since 11.4
 * (Chrome 114) and so in Node 22 and later; Node 20's V8 (11.3) has it complete but behind
 * `--experimental-wasm-relaxed-simd`. Its f32x4.relaxed_madd is the one fused multiply-add
 * WebAssembly has, and the kernel's tile products are chains of multiply-adds: where mul and add
 * compete for the same ports (Intel cores) the plain SIMD build runs at about half the FMA peak.
 * So where the relaxed build does not validate as is, the loader turns the flag on, once, before
 * it compiles the kernel, with `v8.setFlagsFromString`. That flag is process-wide: every
 * WebAssembly module the process compiles afterwards, ours or not, may use relaxed SIMD. It
 * only widens what validates (no module valid before changes meaning); MAGI_ATTN_NO_RELAXED_SIMD=1
 * leaves V8's flags alone and runs the plain SIMD build.
 */

import { envVar } from '../../../util/env.js';

type GetBuiltin = (id: string) => unknown;

/** A Node built-in module, or undefined where the runtime has no `process.getBuiltinModule`. */
export function builtin<T>(id: string): T | undefined {
  const proc = (globalThis as { process?: { getBuiltinModule?: GetBuiltin } }).process;
  return typeof proc?.getBuiltinModule === 'function' ? (proc.getBuiltinModule(id) as T | undefined) : undefined;
}

/** Node's `require` (createRequire), or undefined where there is no `node:module` (a browser, Node < 20.16). */
export function nodeRequire(): (((id: string) => unknown) & { resolve(id: string): string }) | undefined {
  return builtin<{ createRequire(from: string): ((id: string) => unknown) & { resolve(id: string): string } }>('node:module')?.createRequire(import.meta.url);
}

/** The environment variable that keeps the plain SIMD build (any value but '' and '0'). */
export const NO_RELAXED_SIMD_ENV = 'MAGI_ATTN_NO_RELAXED_SIMD';

/** Whether the environment opts out of the relaxed-SIMD build (and of V8's flag). */
export function relaxedSimdOptedOut(): boolean {
  const value = envVar(NO_RELAXED_SIMD_ENV);
  return value !== undefined && value !== '' && value !== '0';
}

let flagSet = false;

/**
 * Turns on V8's relaxed-SIMD flag (once per process; a no-op without `node:v8`). Returns whether
 * this process has set it: the caller validates again to learn whether that was enough.
 */
export function setRelaxedSimdFlag(): boolean {
  if (flagSet) return true;
  const v8 = builtin<{ setFlagsFromString(flags: string): void }>('node:v8');
  if (v8 === undefined) return false;
  v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
  return (flagSet = true);
}
