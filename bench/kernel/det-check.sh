#!/usr/bin/env bash
# Issue 11, "deterministic mode within 1.3x of the default backward": the Hopper backward's two
# deterministic schedules checked and timed in one device call on one H200.
#   grouped  the schedule of today: the work cut into pieces (q chunks of 256 rows x 128-key
#            tiles) and grouped so that no two pieces of a launch share a q row or a key; one
#            launch per group, ~max(k tiles, q chunks) of them (128 at 16k), each a few waves of
#            short blocks (32 steps each instead of 2048), so the cost is launch tails, pipeline
#            fills and 64x the dK / dV atomics, not the arithmetic.
#   ordered  (EXPERIMENT, FFA_BWD_DET_V2=1; src/kernels/cuda/ffa-backward-ordered.ts) the default
#            work list in one launch; each 64-row dQ tile of a q head has a counter in global
#            memory and every (item, tile) a rank (how many items launched before it add to that
#            tile): the dQ thread waits for its turn, reduce-adds, waits for completion and passes
#            the turn on. Steps walk the tiles from the end shared with the longer items, heads
#            inner, so concurrent blocks of a slice run about one step apart.
#   1. the backward GPU checks of deterministic mode, once per schedule, side by side
#      (ffa-bwd-gpu.js --warps 8 --only deterministic: the option cases in deterministic mode,
#      each against the float64 reference and run twice bit-identical: random overlapping slices
#      with sink and fp32 accumulation, causal, varlen causal, sliding window, block-causal +
#      softcap (fp16), head dim 64 (mma.sync, grouped in both); and 16 nested overlapping slices
#      on fp32 accumulators, bit-identical twice, with an 8k timing line), each process compiling
#      into one shared compile cache;
#   2. then, alone on the GPU, one process (bench/kernel/det-speed.js) that at 16k tokens, 64:8
#      heads, D 128, bf16, on full, causal, varlen causal and the sliding window first verifies
#      (ordered and grouped each run twice: fp32 dq / dk / dv bit-identical; each within 1e-3 of
#      max |default|) and then times default / grouped / ordered (whole backward, timing.ts
#      timeLaunches: median of 10 after 3 warm-ups), printed as one table and written as JSON.
# Expected: about 2.5 minutes (checks ~80-110 s: NVRTC compiles, then CPU-bound float64 references,
# the 16-slice one ~10 s; speed ~40 s, modules from the checks' compile cache); the checks stop
# at 120 s, the speed step at 55 s, so the call ends within ~3 minutes whatever happens.
#
# The device tool's `run` copies /work/main's tree: with this on main, stage there
# (bash scripts/device-stage.sh), then `run` with carry [".device", ".gpu-run"], timeout_s 240:
#   source .device/boot.sh && ln -sfn .gpu-run/node_modules node_modules && ln -sfn .gpu-run/dist dist && bash bench/kernel/det-check.sh "$OUT"
# (From a branch instead: stage in its checkout, copy its .gpu-run/ to /work/main/.gpu-run/ and
# this script to /work/main/.gpu-run/det-check.sh, and end the command with
# `bash .gpu-run/det-check.sh "$OUT"`; the kernel sources come from .gpu-run/src.)
#
# [CHECK_LIMIT=s] [SPEED_LIMIT=s] bash bench/kernel/det-check.sh OUTDIR
# Writes OUTDIR/log.txt (everything), env.txt, checks-grouped.txt / checks-ordered.txt, speed.txt
# and det-speed.json (the timings and verify lines).
set -uo pipefail
out=${1:?usage: det-check.sh OUTDIR}
mkdir -p "$out"
log="$out/log.txt"
schedules="grouped ordered"
# one compile cache for the processes of this call
export MAGI_ATTN_CACHE_DIR=${MAGI_ATTN_CACHE_DIR:-${TMPDIR:-/tmp}/ffa-det-cache}
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  node --version
  echo "deterministic schedules: $schedules (grouped = the mode of today)"
} >"$out/env.txt" 2>&1
tee -a "$log" <"$out/env.txt"

t0=$SECONDS
echo "=== checks (limit ${CHECK_LIMIT:-120}s each, side by side) $(date -u +%H:%M:%S)" | tee -a "$log"
for s in $schedules; do
  v2=0
  [ "$s" = ordered ] && v2=1
  FFA_BWD_DET_V2=$v2 timeout --kill-after=10 "${CHECK_LIMIT:-120}" node dist/test/device/ffa-bwd-gpu.js --seed 15 --warps 8 --only deterministic >"$out/checks-$s.txt" 2>&1 &
done
wait
echo "=== checks done after $((SECONDS - t0))s" | tee -a "$log"
for s in $schedules; do
  file="$out/checks-$s.txt"
  {
    echo "--- $s: $(grep -c '^PASS' "$file") PASS, $(grep -c '^FAIL' "$file") FAIL; $(grep -E '^(ALL PASS|[0-9]+ FAILED)' "$file" || echo 'no verdict line: stopped by its time limit or crashed')"
    grep -E '^option checks on|^TIME' "$file"
    grep -E '^FAIL' "$file" | cut -c1-400
    tail -n 3 "$file" | grep -iE 'error|threw|abort|illegal|timeout' || true
  } | tee -a "$log"
done

echo "=== speed (limit ${SPEED_LIMIT:-55}s) $(date -u +%H:%M:%S)" | tee -a "$log"
timeout --kill-after=10 "${SPEED_LIMIT:-55}" node dist/bench/kernel/det-speed.js --out "$out/det-speed.json" >"$out/speed.txt" 2>&1
echo "=== speed: exit $? after $((SECONDS - t0))s" | tee -a "$log"
grep -vE '^\s*$' "$out/speed.txt" | tail -n 30 | tee -a "$log"
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$log"
