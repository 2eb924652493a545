#!/usr/bin/env bash
# EXPERIMENT (issue 11; removed together with FFA_SM90_FWD_PERSISTENT once measured): the
# persistent Hopper forward (one block per SM walking the work list, the next item's Q, K and V
# loaded while the consumers finish the current one: ffa_fwd_sm90.cu's header) against the kernel
# as it is (one block per work item), checked and timed in one device call on one H200.
#   1. the forward GPU checks of both variants side by side (ffa-fwd-gpu.js --sm90 with
#      FFA_SM90_FWD_PERSISTENT=0 and =1: every main case on the Hopper kernel and the mma.sync one,
#      the option cases (sink, accumulation, max_logits, deterministic with two runs
#      bit-identical, softcap, every mask type, merge and direct epilogues, uncovered rows and
#      empty ranges) on the Hopper kernel; the persistent run checks its kernel on the full grid
#      and on a 7-block grid, where every block walks many items, and runs the option cases on
#      the 7-block one), each process compiling into one shared compile cache;
#   2. then, alone on the GPU, one process (bench/kernel/fwd-persist.js) that per mask at 16k
#      tokens, 64:8 heads, D 128, bf16 (full, causal, varlen causal, sliding window, varlen
#      block-causal: bench:kernel's masks and N(0, 1) inputs) first compares the two kernels'
#      out and lse bit for bit (direct epilogue: the same arithmetic per item, so any difference
#      fails), then times default, persistent and default again (timeLaunches: CUDA events,
#      median of 20 after 5 warm-ups, as bench:kernel), printed as one table and written as JSON.
# Expected: about 2 minutes (checks ~60-100 s, bound by the float64 and low-precision references
# on the CPU, the two processes on their own cores; the 16k part ~20-30 s: its NVRTC compiles come
# from the checks' cache, then per mask two launches, 2 x 256 MB of downloads compared on the host
# and 3 x 26 launches). Limits: the checks stop at 120 s, the speed part at 60 s, so the call
# ends within ~3 minutes whatever happens.
#
# The device tool's `run` copies /work/main's tree. From this branch (not on main): in its
# checkout `bash scripts/device-stage.sh`, then copy the staging to main's (ignored) .gpu-run/:
#   rsync -a --delete /work/wt/fwdpersist/.gpu-run/ /work/main/.gpu-run/ && cp /work/wt/fwdpersist/bench/kernel/fwd-persist-check.sh /work/main/.gpu-run/
# and `run` with carry [".device", ".gpu-run"], timeout_s 240:
#   source .device/boot.sh && ln -sfn .gpu-run/node_modules node_modules && ln -sfn .gpu-run/dist dist && bash .gpu-run/fwd-persist-check.sh "$OUT"
# (The kernel sources come from .gpu-run/src. Once on main: stage in /work/main and end the
# command with `bash bench/kernel/fwd-persist-check.sh "$OUT"` instead.)
#
# [CHECK_LIMIT=s] [SPEED_LIMIT=s] bash bench/kernel/fwd-persist-check.sh OUTDIR
# Writes OUTDIR/log.txt (everything), env.txt, checks-default.txt, checks-persistent.txt,
# speed.txt and fwd-persist.json (the timings and the output comparison).
set -uo pipefail
out=${1:?usage: fwd-persist-check.sh OUTDIR}
mkdir -p "$out"
log="$out/log.txt"
# one compile cache for the processes of this call (each variant is its own NVRTC compile)
export MAGI_ATTN_CACHE_DIR=${MAGI_ATTN_CACHE_DIR:-${TMPDIR:-/tmp}/ffa-fwd-persist-cache}
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  node --version
  echo "variants: default (one block per work item, FFA_SM90_FWD_PERSISTENT=0), persistent (=1)"
} >"$out/env.txt" 2>&1
tee -a "$log" <"$out/env.txt"

t0=$SECONDS
echo "=== checks (limit ${CHECK_LIMIT:-120}s each, side by side) $(date -u +%H:%M:%S)" | tee -a "$log"
FFA_SM90_FWD_PERSISTENT=0 timeout --kill-after=10 "${CHECK_LIMIT:-120}" node dist/test/device/ffa-fwd-gpu.js --seed 12 --sm90 >"$out/checks-default.txt" 2>&1 &
FFA_SM90_FWD_PERSISTENT=1 timeout --kill-after=10 "${CHECK_LIMIT:-120}" node dist/test/device/ffa-fwd-gpu.js --seed 12 --sm90 >"$out/checks-persistent.txt" 2>&1 &
wait
echo "=== checks done after $((SECONDS - t0))s" | tee -a "$log"
for variant in default persistent; do
  file="$out/checks-$variant.txt"
  {
    echo "--- $variant: $(grep -c '^PASS' "$file") PASS, $(grep -c '^FAIL' "$file") FAIL; $(grep -E '^(ALL PASS|[0-9]+ FAILED)' "$file" || echo 'no verdict line: stopped by its time limit or crashed')"
    grep -E '^sm90 forward:|^sm90[a-z0-9 ]* ffa_fwd_sm90_|^TIME' "$file"
    grep -E '^FAIL' "$file" | cut -c1-300
    tail -n 3 "$file" | grep -iE 'error|threw|abort|illegal|timeout' || true
  } | tee -a "$log"
done

echo "=== speed at 16k (limit ${SPEED_LIMIT:-60}s) $(date -u +%H:%M:%S)" | tee -a "$log"
timeout --kill-after=10 "${SPEED_LIMIT:-60}" node dist/bench/kernel/fwd-persist.js --seqlen 16384 --json "$out/fwd-persist.json" >"$out/speed.txt" 2>&1
echo "=== speed: exit $? after $((SECONDS - t0))s" | tee -a "$log"
tee -a "$log" <"$out/speed.txt"
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$log"
