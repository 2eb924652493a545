#!/usr/bin/env bash
# Compiles every CUDA kernel source of the package and of the Llama example for sm_90a with nvcc,
# so that a kernel that does not build cannot land (the GPU tests themselves run on the device
# machine, not in CI).
# Prints ptxas's register and spill report per kernel, and its performance advisories (wgmma
# serialized for want of registers). ptxas's "Used N registers" of a kernel that hands registers
# over with setmaxnreg (the Hopper ones) is only the launch cap: for those sources it also prints
# what the machine code really uses (scripts/cubin-registers.ts: the highest register written,
# spills, wgmma count), read from the cubin.
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
# check SRC [DEFINE]: one nvcc build of SRC to a cubin, with its reports
check() {
  local src=$1 define=${2:-}
  local cubin
  cubin="$out/$(basename "$src" .cu)${define:+_${define##*=}}.cubin"
  echo "check-cuda: $src${define:+ $define} (sm_90a)"
  if ! "$NVCC" -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I"$CUDA_HOME/include" ${define:+"$define"} -Xptxas -v -cubin "$src" -o "$cubin" 2>"$out/log"; then
    cat "$out/log" >&2
    status=1
    return
  fi
  grep -E "Compiling entry|registers|spill" "$out/log" | sed 's/^ptxas info *: //' | paste - - - | awk '{print "  " $0}'
  grep -h "Performance Loss" "$out/log" | sed 's/^/  /' || true # ptxas advisories: serialized wgmma
  if grep -q 'regs_inc<' "$src"; then
    node --import tsx scripts/cubin-registers.ts "$cubin" | sed 's/^/  after setmaxnreg: /'
  fi
}
for src in src/kernels/cuda/*.cu examples/llama/kernels/*.cu; do
  check "$src"
done
# the Hopper forward's persistent schedule (its own module, picked per plan by the host)
check src/kernels/cuda/ffa_fwd_sm90.cu -DFFA_SM90_FWD_PERSISTENT=1
# the Hopper forward's 176-key k tiles (its own module, picked per plan for full slices)
check src/kernels/cuda/ffa_fwd_sm90.cu -DFFA_SM90_FWD_BN=176
# the Hopper backward's ordered deterministic entry points (a module of their own at run time)
check src/kernels/cuda/ffa_bwd_sm90.cu -DFFA_BWD_SM90_ORDERED=1
# the Hopper backward's step-trace build (a diagnostic module: bench/kernel/bwd-trace.ts); it must
# not serialize the wgmma, or its timeline would describe another schedule (its one 4-byte spill
# at head dim 128 is printed here and described in ffa_bwd_sm90.cu's trace note)
check src/kernels/cuda/ffa_bwd_sm90.cu -DFFA_BWD_SM90_TRACE=1
exit $status
