#!/usr/bin/env bash
# One GPU-machine session of the kernel work, from the built tree (dist/ next to src/ and bench/):
#   1. the GPU checks of the FFA kernels (CUDA backend, NaN/Inf propagation, forward, backward),
#      run side by side: they are CPU-bound (float64 references) and launch only small kernels;
#   2. the host-overhead benchmark (1M tokens, 2,000 documents);
#   3. the kernel benchmark with every baseline in the same run, alone on the GPU.
# Each step runs under its own time limit, so one that hangs cannot take the rest with it.
#   [TEST_LIMIT=s] [BENCH_LIMIT=s] [BENCH_ARGS=...] [BWD_ARGS=...] bash bench/kernel/device-run.sh OUTDIR
# Writes OUTDIR/log.txt (everything), env.txt (GPU, driver, torch, cuDNN, date), checks.txt (the
# PASS/FAIL lines), host-overhead.json and the benchmark's kernel.{json,csv},
# kernel-baselines.json, kernel-masks.json (kernel-partial.json if it was stopped early).
set -uo pipefail
out=${1:?usage: device-run.sh OUTDIR}
mkdir -p "$out"
log="$out/log.txt"
step() { # name seconds command...
  local name=$1 secs=$2
  shift 2
  echo "=== $name (limit ${secs}s) $(date -u +%H:%M:%S)" | tee -a "$log"
  local t0=$SECONDS
  timeout --kill-after=10 "$secs" "$@" 2>&1 | tee -a "$log" | grep -E '^(ALL PASS|[0-9]+ FAILED|FAIL|speed|TIME|\||ours on|our main|host|flexFlash|\[baselines\] wrote)'
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0))s" | tee -a "$log"
}
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
  node --version
} >"$out/env.txt" 2>&1
cat "$out/env.txt" | tee -a "$log"
export PYTHONUNBUFFERED=1
lim=${TEST_LIMIT:-170}
echo "=== checks (limit ${lim}s each, side by side) $(date -u +%H:%M:%S)" | tee -a "$log"
t0=$SECONDS
timeout --kill-after=10 "$lim" node dist/test/device/cuda-backend-gpu.js --seed 10 >"$out/c0.txt" 2>&1 &
timeout --kill-after=10 "$lim" node dist/test/device/ffa-nonfinite-gpu.js --seed 11 >"$out/c1.txt" 2>&1 &
timeout --kill-after=10 "$lim" node dist/test/device/ffa-fwd-gpu.js --seed 12 --sm90 >"$out/c2.txt" 2>&1 &
timeout --kill-after=10 "$lim" node dist/test/device/ffa-bwd-gpu.js --seed 13 ${BWD_ARGS:-} >"$out/c3.txt" 2>&1 &
wait
for f in c0 c1 c2 c3; do cat "$out/$f.txt" >>"$log"; grep -hE '^(PASS|FAIL|seed|ALL PASS|[0-9]+ FAILED)' "$out/$f.txt" >>"$out/checks.txt"; rm -f "$out/$f.txt"; done
grep -E '^(FAIL|ALL PASS|[0-9]+ FAILED)' "$out/checks.txt" | cut -c1-400
echo "=== checks: $(grep -c '^PASS' "$out/checks.txt") PASS, $(grep -c '^FAIL' "$out/checks.txt") FAIL after $((SECONDS - t0))s" | tee -a "$log"
step host-overhead 45 node dist/bench/kernel/host-overhead.js --out "$out"
step bench "${BENCH_LIMIT:-260}" node dist/bench/kernel/run.js --out "$out" ${BENCH_ARGS:-}
rm -f "$out/kernel.svg"
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$log"
