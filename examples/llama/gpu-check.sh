#!/usr/bin/env bash
# The Llama example's GPU run, in one command (issue 14): smoke checks first, then the step-1
# gradient checks, experiment A (FFA vs naive attention), B (cp 1 vs cp 2/4 ranks on one GPU),
# C (ours vs the PyTorch twin), and the throughput measurement. It stops at the first failing
# step with a message naming it.
#
#   bash examples/llama/gpu-check.sh [stage ...]       stages: smoke grads a b c throughput (default: all, in that order)
#
# Before it, on a machine with npm (the GPU machine has none):
#   npm ci && npm run build:gpu                                  # dist/ with the example
#   npm run example:llama -- prepare-data --dataset sotu         # examples/llama/.data/sotu-r50k.safetensors (8 MB)
#   bash examples/llama/carry.sh DEST                            # what the run needs, into DEST (43 MB)
# On the GPU machine, in DEST, it needs node (the project's .device/boot.sh puts one on PATH),
# CUDA 13 with cuBLASLt, and python3 with torch, transformers and safetensors.
#
# Results (JSON, and SVG where @observablehq/plot and linkedom were carried; else draw them later
# with `npm run example:llama -- plot --dir <results>`) go to $OUT/llama when OUT is set, else
# bench/out/llama/ (copy them to bench/results/ to publish them); every step's log goes to
# <results>/logs/. Large exchange files with the twin (checkpoints, batches) go to $LLAMA_WORK
# (default /tmp/llama-work). Knobs: LLAMA_SEQ (16384), LLAMA_SEED (1234), LLAMA_A_STEPS (200),
# LLAMA_B_STEPS (200), LLAMA_B_CP (2,4), LLAMA_C_STEPS (1000), LLAMA_THROUGHPUT_SEQS (16384,65536), LLAMA_TWIN_VARIANTS
# (sdpa-eager,flex-eager,sdpa-compiled,flex-compiled), LLAMA_PRESET (gpu).
#
# Time on one H200 (2026-12-02): smoke 3 s, grads 5 min (the twin 4 of them, likely torch.compile of its FlexAttention;
# not profiled), a 3.6 min (the naive float32 attention is 0.9 s a step at 16k
# tokens), b 2.4 min, c 7.9 min (ours 1.6 min, the twin 6.2 min), throughput 4.5 min (ours 36 s,
# the twin's eight variants 3.8 min). Each stage fits a 10-minute call and makes its own inputs,
# so stages can run in separate calls on separate machines.
set -euo pipefail
cd "$(dirname "$0")/../.."
export NCCL_NVLS_ENABLE=0

RESULTS=${OUT:+$OUT/llama}
RESULTS=${RESULTS:-bench/out/llama}
LOGS=$RESULTS/logs
WORK=${LLAMA_WORK:-/tmp/llama-work}
SEQ=${LLAMA_SEQ:-16384}
SEED=${LLAMA_SEED:-1234}
PRESET=${LLAMA_PRESET:-gpu}
MAIN=dist/examples/llama/main.js
TWIN=examples/llama/twin/llama_twin.py
mkdir -p "$RESULTS" "$LOGS" "$WORK"
# The corpus this script checks for below, also where dist/ is a link to a build elsewhere (the
# example looks next to its own compiled files otherwise).
[ -f examples/llama/.data/sotu-r50k.safetensors ] && export LLAMA_DATA_DIR=${LLAMA_DATA_DIR:-$PWD/examples/llama/.data}

fail() {
  echo "gpu-check: FAILED: $*" >&2
  exit 1
}

# step NAME CMD...: runs CMD, its output shown and kept in $LOGS/NAME.log; stops the run if it fails.
step() {
  local name=$1
  shift
  echo "== gpu-check: $name: $*"
  local t0=$SECONDS rc=0
  "$@" 2>&1 | tee "$LOGS/$name.log" || rc=$?
  if [ "$rc" -ne 0 ]; then
    fail "step '$name' exited $rc after $((SECONDS - t0)) s; its log: $LOGS/$name.log"
  fi
  echo "== gpu-check: $name: ok ($((SECONDS - t0)) s)"
}

ours() { node "$MAIN" experiment "$@" --device gpu --preset "$PRESET" --seed "$SEED" --out "$RESULTS" --work "$WORK"; }
twin() { python3 "$TWIN" "$@" --work "$WORK"; }

preflight() {
  command -v node >/dev/null || fail "node is not on PATH (source the project's .device/boot.sh first)"
  [ -f "$MAIN" ] || fail "$MAIN is missing: run 'npm run build:gpu' on a machine with npm and carry dist/"
  [ -f examples/llama/.data/sotu-r50k.safetensors ] || [ -n "${LLAMA_DATA_DIR:-}" ] ||
    fail "examples/llama/.data/sotu-r50k.safetensors is missing: run 'npm run example:llama -- prepare-data --dataset sotu' where npm is, and carry examples/llama/.data"
  [ -d node_modules/koffi ] || fail "node_modules/koffi is missing (carry it)"
  echo "gpu-check: node $(node --version), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'nvidia-smi unavailable')"
  echo "gpu-check: results -> $RESULTS, logs -> $LOGS, exchange files -> $WORK"
}

# The values gpu/cublaslt.ts hard-codes, read from this machine's cublasLt.h (empty when no header or compiler).
lt_abi() {
  local cuda=${CUDA_HOME:-/usr/local/cuda} inc=""
  for d in "$cuda/include" "$cuda/targets/x86_64-linux/include" /usr/include; do
    if [ -f "$d/cublasLt.h" ]; then inc=$d; break; fi
  done
  local cxx=${CXX:-$(command -v g++ || command -v c++ || true)}
  if [ -z "$inc" ] || [ -z "$cxx" ]; then
    echo "gpu-check: cublasLt.h or a C++ compiler not found; the cuBLASLt constants are checked by the GEMM results only" >&2
    return 0
  fi
  "$cxx" -I"$inc" -o "$WORK/cublaslt_probe" examples/llama/gpu/cublaslt_probe.cpp || fail "the cuBLASLt probe did not compile against $inc/cublasLt.h (see above): gpu/cublaslt.ts may not match this cuBLASLt"
  "$WORK/cublaslt_probe" > "$WORK/cublaslt-abi.json"
  echo "$WORK/cublaslt-abi.json"
}

stage_smoke() {
  local abi
  abi=$(lt_abi)
  if [ -n "$abi" ]; then step smoke ours smoke --lt-abi "$abi"; else step smoke ours smoke; fi
}
stage_grads() {
  step grads-ours ours grads --seq-len "$SEQ"
  step grads-twin twin grads
  step grads-compare node "$MAIN" experiment twin-grads --out "$RESULTS" --work "$WORK"
}
stage_a() { step experiment-a ours a --seq-len "$SEQ" --steps "${LLAMA_A_STEPS:-200}"; }
stage_b() { step experiment-b ours b --seq-len "$SEQ" --steps "${LLAMA_B_STEPS:-200}" --cp-sizes "${LLAMA_B_CP:-2,4}"; }
stage_c() {
  step experiment-c-ours ours c --seq-len "$SEQ" --steps "${LLAMA_C_STEPS:-1000}"
  step experiment-c-twin twin train
  step experiment-c-compare node "$MAIN" experiment c-compare --out "$RESULTS" --work "$WORK"
}
stage_throughput() {
  local seqs=${LLAMA_THROUGHPUT_SEQS:-16384,65536}
  step throughput-ours ours throughput --seq-lens "$seqs"
  step throughput-twin twin bench --seq-lens "$seqs" --variants "${LLAMA_TWIN_VARIANTS:-sdpa-eager,flex-eager,sdpa-compiled,flex-compiled}"
  step throughput-report node "$MAIN" experiment throughput-report --out "$RESULTS" --work "$WORK"
}

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(smoke grads a b c throughput)
preflight
for s in "${stages[@]}"; do
  case $s in
    smoke | grads | a | b | c | throughput) "stage_$s" ;;
    *) fail "unknown stage '$s' (stages: smoke grads a b c throughput)" ;;
  esac
done
echo "gpu-check: all stages passed (${stages[*]}); results in $RESULTS"
