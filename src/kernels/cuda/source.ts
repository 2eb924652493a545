/**
 * Where the CUDA kernel sources are at run time. They ship as .cu/.cuh files in the package's
 * src/kernels/cuda/ and are compiled by NVRTC on the user's machine; the TypeScript build does
 * not copy them, so from dist/src/kernels/cuda/ they are read from the package's src/ (four
 * levels up), and from src/ they are next door.
 *
 * Local headers (`#include "name.cuh"`) are inlined into the text handed to NVRTC, so NVRTC needs
 * no include path for them and the compile cache, keyed by the source text, sees header changes.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function readRaw(fileName: string): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, fileName), join(here, '..', '..', '..', '..', 'src', 'kernels', 'cuda', fileName)];
  for (const path of candidates) if (existsSync(path)) return readFileSync(path, 'utf8');
  throw new Error(`cuda kernel source ${fileName} not found (looked in ${candidates.join(', ')})`);
}

/** The source of `fileName` with its local headers inlined (each once). */
export function readKernelSource(fileName: string, inlined: Set<string> = new Set()): string {
  return readRaw(fileName).replace(/^#include "([\w.-]+\.cuh)"\s*$/gm, (_line, header: string) => {
    if (inlined.has(header)) return `// ${header}: already inlined above`;
    inlined.add(header);
    const body = readKernelSource(header, inlined).replace(/^#pragma once\s*$/m, '');
    return `// ---- begin ${header} ----\n${body}\n// ---- end ${header} ----`;
  });
}
