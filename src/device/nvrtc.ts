/**
 * NVRTC, reached through koffi: compiles CUDA C++ source to a cubin for the GPU found (PTX when
 * no cubin can be made), at first use, and keeps the result in a disk cache keyed by a hash of
 * everything that decides the binary: source, options, NVRTC version, driver version and arch.
 * A failed compile throws `NvrtcError` carrying NVRTC's log. Node-only.
 */

import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';
import {
  CudaUnavailableError,
  cudaHome,
  defaultLibnvrtcCandidates,
  loadFirstLibrary,
  type LibrarySearchOptions,
} from './cuda-driver.js';

/** NVRTC failed: `call` names the call; for a compile, `log` holds the compiler's messages. */
export class NvrtcError extends Error {
  override name = 'NvrtcError';
  constructor(
    readonly call: string,
    readonly code: number,
    readonly description: string,
    readonly log: string = '',
  ) {
    super(`${call} failed: ${description} (nvrtcResult ${code})${log ? `\n${log}` : ''}`);
  }
}

type Fn = (...args: unknown[]) => unknown;

/** The loaded NVRTC library; get the process-wide one with `nvrtc()`. */
export class Nvrtc {
  readonly libraryPath: string;
  /** [major, minor] of this NVRTC. */
  readonly version: readonly [number, number];
  private readonly f: Record<string, Fn> = {};

  constructor(options: LibrarySearchOptions = {}) {
    const { lib, path } = loadFirstLibrary(
      'libnvrtc',
      options.libnvrtcCandidates ?? defaultLibnvrtcCandidates(),
      'the CUDA toolkit runtime compiler is missing (install CUDA, set CUDA_HOME, or set MAGI_ATTN_LIBNVRTC to its path)',
    );
    this.libraryPath = path;
    const func = lib.func.bind(lib) as unknown as (name: string, ret: string, args: unknown[]) => Fn;
    const OP = koffi.out(koffi.pointer('void *'));
    const OI = koffi.out(koffi.pointer('int'));
    const OSZ = koffi.out(koffi.pointer('size_t'));
    const defs: Array<[string, string, unknown[]]> = [
      ['nvrtcGetErrorString', 'const char *', ['int']],
      ['nvrtcVersion', 'int', [OI, OI]],
      ['nvrtcCreateProgram', 'int', [OP, 'const char *', 'const char *', 'int', 'const char **', 'const char **']],
      ['nvrtcDestroyProgram', 'int', [koffi.pointer('void *')]],
      ['nvrtcCompileProgram', 'int', ['void *', 'int', 'const char **']],
      ['nvrtcGetProgramLogSize', 'int', ['void *', OSZ]],
      ['nvrtcGetProgramLog', 'int', ['void *', 'void *']],
      ['nvrtcGetCUBINSize', 'int', ['void *', OSZ]],
      ['nvrtcGetCUBIN', 'int', ['void *', 'void *']],
      ['nvrtcGetPTXSize', 'int', ['void *', OSZ]],
      ['nvrtcGetPTX', 'int', ['void *', 'void *']],
    ];
    try {
      for (const [name, ret, args] of defs) this.f[name] = func(name, ret, args);
    } catch (e) {
      throw new CudaUnavailableError('libnvrtc', `${path} is missing an NVRTC entry point: ${(e as Error).message}`);
    }
    const major: [number] = [0];
    const minor: [number] = [0];
    this.check('nvrtcVersion', this.f.nvrtcVersion!(major, minor));
    this.version = [major[0], minor[0]];
  }

  private check(call: string, rc: unknown, log = ''): void {
    if (rc === 0) return;
    const code = Number(rc);
    const desc = this.f.nvrtcGetErrorString!(code);
    throw new NvrtcError(call, code, typeof desc === 'string' ? desc : 'unknown error', log);
  }

  private getBytes(prog: unknown, sizeCall: string, getCall: string): Buffer {
    const size: [number] = [0];
    this.check(sizeCall, this.f[sizeCall]!(prog, size));
    const buf = Buffer.alloc(Number(size[0]));
    if (buf.length > 0) this.check(getCall, this.f[getCall]!(prog, buf));
    return buf;
  }

  /**
   * Compiles `source` with exactly `options` (no defaults added here; see `compileOptions`).
   * Returns the cubin when one was made (a real `sm_XY` arch), else NUL-terminated PTX.
   */
  compile(source: string, name: string, options: readonly string[]): CompiledKernel {
    const prog: [unknown] = [null];
    this.check('nvrtcCreateProgram', this.f.nvrtcCreateProgram!(prog, source, name, 0, null, null));
    try {
      const rc = this.f.nvrtcCompileProgram!(prog[0], options.length, [...options]);
      const log = this.getBytes(prog[0], 'nvrtcGetProgramLogSize', 'nvrtcGetProgramLog')
        .toString('utf8')
        .replace(/\0+$/, '')
        .trim();
      this.check(`nvrtcCompileProgram(${name})`, rc, log);
      const cubin = this.getBytes(prog[0], 'nvrtcGetCUBINSize', 'nvrtcGetCUBIN');
      if (cubin.length > 0) return { kind: 'cubin', image: cubin, log };
      return { kind: 'ptx', image: this.getBytes(prog[0], 'nvrtcGetPTXSize', 'nvrtcGetPTX'), log };
    } finally {
      this.check('nvrtcDestroyProgram', this.f.nvrtcDestroyProgram!(prog));
    }
  }
}

/** A compiled image ready for cuModuleLoadData, and NVRTC's log (warnings) if any. */
export interface CompiledKernel {
  kind: 'cubin' | 'ptx';
  image: Uint8Array;
  log: string;
}

let instance: Nvrtc | undefined;

/** The process-wide NVRTC, loaded on first use (throws CudaUnavailableError when missing). */
export function nvrtc(options: LibrarySearchOptions = {}): Nvrtc {
  if (options.libnvrtcCandidates !== undefined) return new Nvrtc(options);
  instance ??= new Nvrtc(options);
  return instance;
}

/** The NVRTC arch for a compute capability: sm_90a for 9.0 (Hopper's wgmma/TMA features), else sm_XY. */
export function archFor(major: number, minor: number): string {
  return major === 9 && minor === 0 ? 'sm_90a' : `sm_${major}${minor}`;
}

/** The full option list: arch, CUDA include dir, C++17, device-by-default, then the caller's options. */
export function compileOptions(arch: string, userOptions: readonly string[] = []): string[] {
  return [
    `--gpu-architecture=${arch}`,
    `-I${join(cudaHome(), 'include')}`,
    '--std=c++17',
    '-default-device',
    ...userOptions,
  ];
}

/** Everything that decides a compiled binary. */
export interface KernelCacheKeyInput {
  source: string;
  options: readonly string[];
  nvrtcVersion: readonly [number, number];
  driverVersion: number;
  arch: string;
}

/** sha256 (hex) of the key input; a pure function, stable across processes. */
export function kernelCacheKey(k: KernelCacheKeyInput): string {
  const h = createHash('sha256');
  const field = (name: string, value: string): void => {
    h.update(`${name}:${Buffer.byteLength(value)}:`);
    h.update(value);
    h.update('\n');
  };
  field('magi-attention-kernel-cache', 'v1');
  field('arch', k.arch);
  field('nvrtc', `${k.nvrtcVersion[0]}.${k.nvrtcVersion[1]}`);
  field('driver', String(k.driverVersion));
  field('options', JSON.stringify(k.options));
  field('source', k.source);
  return h.digest('hex');
}

/** The cache folder: $MAGI_ATTN_CACHE_DIR, or ~/.cache/magi-attention/kernels. */
export function kernelCacheDir(): string {
  return process.env.MAGI_ATTN_CACHE_DIR ?? join(homedir(), '.cache', 'magi-attention', 'kernels');
}

/** What `compileCached` did: the image, whether it came from disk, and where it lives. */
export interface CachedCompileResult extends CompiledKernel {
  cacheHit: boolean;
  key: string;
  path: string;
}

/**
 * Compiles through the disk cache: a hit reads `<dir>/<key>.<kind>`; a miss compiles and writes
 * it atomically (temp file + rename), so concurrent processes never read a partial binary.
 * A cache folder that cannot be written only costs the cache, never the compile.
 */
export function compileCached(
  compiler: Nvrtc,
  source: string,
  name: string,
  options: readonly string[],
  ctx: { driverVersion: number; arch: string; cacheDir?: string },
): CachedCompileResult {
  const dir = ctx.cacheDir ?? kernelCacheDir();
  const key = kernelCacheKey({
    source,
    options,
    nvrtcVersion: compiler.version,
    driverVersion: ctx.driverVersion,
    arch: ctx.arch,
  });
  for (const kind of ['cubin', 'ptx'] as const) {
    const path = join(dir, `${key}.${kind}`);
    try {
      const image = readFileSync(path);
      if (image.length > 0) return { kind, image, log: '', cacheHit: true, key, path };
    } catch {
      // not cached as this kind
    }
  }
  const out = compiler.compile(source, name, options);
  const path = join(dir, `${key}.${out.kind}`);
  try {
    mkdirSync(dir, { recursive: true });
    const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(tmp, out.image);
    renameSync(tmp, path);
  } catch {
    // an unwritable cache is not an error
  }
  return { ...out, cacheHit: false, key, path };
}
