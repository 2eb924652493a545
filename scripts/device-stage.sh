#!/usr/bin/env bash
# Stages what a GPU-machine run needs into .gpu-run/ (ignored by git): the compiled tree (tsc
# -p tsconfig.gpu.json: src, bench, test/device, examples) and the runtime dependencies from the
# lockfile (no dev dependencies: the machine has no use for compilers and test runners).
# Carry it with the device tool as [".device", ".gpu-run"] and start the command with
#   source .device/boot.sh && ln -sfn .gpu-run/node_modules node_modules && ln -sfn .gpu-run/dist dist &&
set -euo pipefail
cd "$(dirname "$0")/.."
npm run -s build:wasm # the CPU kernel's WebAssembly module, which tsc compiles in as generated source
npx tsc -p tsconfig.gpu.json
rm -rf .gpu-run && mkdir -p .gpu-run
cp -r dist .gpu-run/dist
rm -rf .gpu-run/dist/web
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp package.json package-lock.json "$tmp/"
(cd "$tmp" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null)
cp -r "$tmp/node_modules" .gpu-run/node_modules
# NVRTC compiles the kernel sources on the machine: they are read from src/ next to dist/.
mkdir -p .gpu-run/src/kernels/cuda
cp src/kernels/cuda/*.cu src/kernels/cuda/*.cuh .gpu-run/src/kernels/cuda/
# The Llama example's kernels likewise, next to its compiled files (dist/ is a link into .gpu-run there).
mkdir -p .gpu-run/examples/llama/kernels
cp examples/llama/kernels/*.cu examples/llama/kernels/*.cuh .gpu-run/examples/llama/kernels/
exclude=$(git rev-parse --git-path info/exclude) # a worktree's .git is a file
grep -qx '/.gpu-run/' "$exclude" || echo '/.gpu-run/' >> "$exclude"
echo "staged .gpu-run ($(du -sh .gpu-run | cut -f1)); with .device ($(du -sh .device | cut -f1))"
