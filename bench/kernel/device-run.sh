#!/usr/bin/env bash
# One GPU-machine session of the kernel work: the kernel benchmark with every baseline in the same
# run, then the GPU checks of the kernels, each step under its own time limit so that one that
# hangs cannot take the rest with it. Run from the built tree (dist/ next to src/ and bench/):
#   BENCH_ARGS="..." FWD_ARGS="..." BWD_ARGS="..." [SPEED=1] bash bench/kernel/device-run.sh OUTDIR
# (SPEED=1: speed reads of the kernel variants at 16k before the checks.)
# Writes OUTDIR/log.txt (everything), OUTDIR/kernel.{json,csv}, kernel-baselines.json,
# kernel-masks.json and OUTDIR/env.txt (GPU, driver, torch, cuDNN, date).
set -uo pipefail
out=${1:?usage: device-run.sh OUTDIR}
mkdir -p "$out"
log="$out/log.txt"
step() { # name seconds command...
  local name=$1 secs=$2
  shift 2
  echo "=== $name (limit ${secs}s) $(date -u +%H:%M:%S)" | tee -a "$log"
  local t0=$SECONDS
  timeout --kill-after=10 "$secs" "$@" 2>&1 | tee -a "$log" | grep -E '^(PASS|FAIL|ALL PASS|[0-9]+ FAILED|speed|TIME|\||ours on|our main)' 
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
step bench "${BENCH_LIMIT:-300}" node dist/bench/kernel/run.js --out "$out" ${BENCH_ARGS:-}
rm -f "$out/kernel.svg"
step nonfinite "${NONFINITE_LIMIT:-60}" node dist/test/device/ffa-nonfinite-gpu.js --seed 11
if [ -n "${SPEED:-}" ]; then # speed reads of the kernel variants first (--only matches no check case)
  step fwd-speed 40 node dist/test/device/ffa-fwd-gpu.js --seed 12 --only speed-read-only --speed
  step bwd-speed 45 node dist/test/device/ffa-bwd-gpu.js --seed 13 --only speed-read-only --speed --warps 8
fi
step fwd "${FWD_LIMIT:-90}" node dist/test/device/ffa-fwd-gpu.js --seed 12 --sm90 ${FWD_ARGS:-}
step bwd "${BWD_LIMIT:-90}" node dist/test/device/ffa-bwd-gpu.js --seed 13 ${BWD_ARGS:-}
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$log"
