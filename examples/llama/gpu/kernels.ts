/**
 * The example's CUDA kernels (examples/llama/kernels/*.cu), compiled at first use by NVRTC through
 * the package's device layer (CudaDevice.compile: arch of the GPU found, disk cache), one module
 * per layer file. Local headers are inlined into the source handed to NVRTC, so the cache key
 * sees them. The TypeScript build does not copy .cu files: from dist/ they are read from the
 * source tree.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CudaDevice, Kernel, Module } from 'magi-attention/device';

const here = dirname(fileURLToPath(import.meta.url));

function kernelDir(): string {
  const candidates = [join(here, '..', 'kernels'), join(here, '..', '..', '..', '..', 'examples', 'llama', 'kernels')];
  for (const d of candidates) if (existsSync(join(d, 'llama_common.cuh'))) return d;
  throw new Error(`the Llama example's CUDA sources were not found (looked in ${candidates.join(', ')})`);
}

/** `file` with its `#include "x.cuh"` lines replaced by the headers' text (each once). */
export function kernelSource(file: string, inlined: Set<string> = new Set()): string {
  const text = readFileSync(join(kernelDir(), file), 'utf8');
  return text.replace(/^#include "([\w.-]+\.cuh)"\s*$/gm, (_line, header: string) => {
    if (inlined.has(header)) return `// ${header}: already inlined`;
    inlined.add(header);
    return kernelSource(header, inlined).replace(/^#pragma once\s*$/m, '');
  });
}

export const KERNEL_FILES = ['embedding.cu', 'rmsnorm.cu', 'rope.cu', 'swiglu.cu', 'cross_entropy.cu', 'adamw.cu', 'convert.cu', 'naive_attention.cu'] as const;
export type KernelFile = (typeof KERNEL_FILES)[number];

/** Compiled modules of one device, loaded lazily. */
export class LlamaKernels {
  private readonly modules = new Map<KernelFile, Module>();

  constructor(
    readonly device: CudaDevice,
    private readonly cacheDir?: string,
  ) {}

  /** Compiles (or loads from the disk cache) every module now; returns the milliseconds it took per file. */
  compileAll(): Record<string, number> {
    const ms: Record<string, number> = {};
    for (const f of KERNEL_FILES) {
      const t0 = performance.now();
      this.module(f);
      ms[f] = performance.now() - t0;
    }
    return ms;
  }

  module(file: KernelFile): Module {
    let m = this.modules.get(file);
    if (m === undefined) {
      const opts: { name: string; cacheDir?: string } = { name: file };
      if (this.cacheDir !== undefined) opts.cacheDir = this.cacheDir;
      m = this.device.compile(kernelSource(file), opts);
      this.modules.set(file, m);
    }
    return m;
  }

  kernel(file: KernelFile, name: string): Kernel {
    return this.module(file).kernel(name);
  }
}
