#!/usr/bin/env bash
# Compiles every CUDA kernel source of the package and of the Llama example for sm_90a with nvcc,
# so that a kernel that does not build cannot land (the GPU tests themselves run on the device
# machine, not in CI).
# Prints ptxas's register and spill report per kernel, and its performance advisories (wgmma
# serialized for want of registers).
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
if [ ! -x "$NVCC" ]; then
  echo "check-cuda: nvcc not found (set NVCC or put it on PATH); the CUDA kernels cannot be checked" >&2
  exit 1
fi
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$NVCC")")")}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for src in src/kernels/cuda/*.cu examples/llama/kernels/*.cu; do
  echo "check-cuda: $src (sm_90a)"
  if ! "$NVCC" -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I"$CUDA_HOME/include" -Xptxas -v -c "$src" -o "$out/$(basename "$src" .cu).o" 2>"$out/log"; then
    cat "$out/log" >&2
    status=1
  else
    grep -E "Compiling entry|registers|spill" "$out/log" | sed 's/^ptxas info *: //' | paste - - - | awk '{print "  " $0}'
    grep -h "Performance Loss" "$out/log" | sed 's/^/  /' || true # ptxas advisories: serialized wgmma
  fi
done
exit $status
