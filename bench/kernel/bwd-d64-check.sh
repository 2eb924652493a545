#!/usr/bin/env bash
# Head dim 64 on the Hopper backward (issue 11, item 2: ffa_bwd_sm90.cu's d64 entries: 128 q rows a
# step, each consumer warpgroup's dQ block 64 q rows x 64 columns; before, D 64 ran the mma.sync
# ffa_bwd.cu), checked and timed in one device call on one H200:
#   1. the backward GPU checks of head dim 64, three processes side by side splitting the cases
#      (ffa-bwd-gpu.js --warps 8 --dims 64 --shard K/3): every D 64 main case (all four mask
#      types, GQA, unaligned lengths, bf16 and fp16, softcap) on the Hopper kernel and on its
#      mma.sync twin, against the float64 reference with the per-dtype two-criterion tolerances,
#      outputs and fp32 scratch poisoned; the D 64 option cases (sink, dq/dk/dv accumulation,
#      deterministic with two runs bit-identical, softcap) on the Hopper kernel; a fourth process
#      runs two D 128 cases as a control (the d128 entries' machine code is main's, the host code
#      around them changed), a fifth the D 64 NaN case of ffa-nonfinite-gpu.js (NaN in k through
#      every forward and backward kernel, rows of other documents clean). One compile cache for
#      the processes of this call.
#   2. then, alone on the GPU, the Hopper backward against the mma.sync one at 16k tokens, 64:8
#      heads, bf16, full / causal / varlen-causal / sliding window, head dim 64 and then 128 for
#      context (ffa-bwd-gpu.js --speed-only --speed-dims 64,128: pre-pass + zero + main + convert,
#      CUDA events, median of 10 after 3 warm-ups), printed as one table and written as JSON.
# Expected: about 2.5 minutes (checks 60-90 s, CPU-bound float64 references and the NVRTC compiles;
# timing ~60 s, most of it drawing the random 16k inputs); the checks stop at 95 s, the timing at
# 70 s, so the call stays under 3 minutes plus the machine's start.
#
# Run from the branch (bwd64): stage in its checkout, copy to /work/main, then `run` with carry
# [".device", ".gpu-run"], timeout_s 300:
#   (cd /work/wt/bwd64 && bash scripts/device-stage.sh) && rm -rf /work/main/.gpu-run &&
#   cp -r /work/wt/bwd64/.gpu-run /work/main/.gpu-run && cp /work/wt/bwd64/bench/kernel/bwd-d64-check.sh /work/main/.gpu-run/
#   run: source .device/boot.sh; ln -sfn .gpu-run/node_modules node_modules; ln -sfn .gpu-run/dist dist; bash .gpu-run/bwd-d64-check.sh $OUT
# (With this on main: bash scripts/device-stage.sh in /work/main, copy this script to
# .gpu-run/bwd-d64-check.sh, same command.) The kernel sources come from .gpu-run/src.
#
# [CHECK_LIMIT=s] [SPEED_LIMIT=s] bash bench/kernel/bwd-d64-check.sh OUTDIR
# Writes OUTDIR/log.txt (everything), env.txt, checks-<K>.txt (each shard's checks; checks-d128.txt
# the control), speed.txt
# and bwd-d64.json (the timings).
set -uo pipefail
out=${1:?usage: bwd-d64-check.sh OUTDIR}
mkdir -p "$out"
log="$out/log.txt"
export MAGI_ATTN_CACHE_DIR=${MAGI_ATTN_CACHE_DIR:-${TMPDIR:-/tmp}/ffa-bwd-d64-cache}
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  node --version
  echo "Hopper backward head dim 64 (ffa_bwd_sm90_*_d64) against mma.sync (ffa_bwd_*_d64)"
} >"$out/env.txt" 2>&1
tee -a "$log" <"$out/env.txt"

t0=$SECONDS
echo "=== checks (limit ${CHECK_LIMIT:-95}s each, 3 shards + 2 more side by side) $(date -u +%H:%M:%S)" | tee -a "$log"
for k in 0 1 2; do
  timeout --kill-after=10 "${CHECK_LIMIT:-95}" node dist/test/device/ffa-bwd-gpu.js --seed $((21 + k)) --warps 8 --dims 64 --shard "$k/3" >"$out/checks-$k.txt" 2>&1 &
done
# the control: 'full 512, 8:2 heads, bf16 d128' and its softcap 30 twin
timeout --kill-after=10 "${CHECK_LIMIT:-95}" node dist/test/device/ffa-bwd-gpu.js --seed 25 --warps 8 --dims 128 --only 'full 512, 8:2 heads, bf16 d128' >"$out/checks-d128.txt" 2>&1 &
timeout --kill-after=10 "${CHECK_LIMIT:-95}" node dist/test/device/ffa-nonfinite-gpu.js --seed 26 --only d64 >"$out/checks-nonfinite.txt" 2>&1 &
wait
echo "=== checks done after $((SECONDS - t0))s" | tee -a "$log"
for k in 0 1 2 d128 nonfinite; do
  file="$out/checks-$k.txt"
  {
    echo "--- checks-$k: $(grep -c '^PASS' "$file") PASS, $(grep -c '^FAIL' "$file") FAIL; $(grep -E '^(ALL PASS|[0-9]+ FAILED)' "$file" || echo 'no verdict line: stopped by its time limit or crashed')"
    grep -E '^bwd sm90 .*ffa_bwd_sm90_' "$file"
    grep -E '^(PASS|FAIL)' "$file" | cut -c1-260
    tail -n 3 "$file" | grep -iE 'error|threw|abort|illegal|timeout' || true
  } | tee -a "$log"
done

echo "=== speed (limit ${SPEED_LIMIT:-70}s) $(date -u +%H:%M:%S)" | tee -a "$log"
timeout --kill-after=10 "${SPEED_LIMIT:-70}" node dist/test/device/ffa-bwd-gpu.js --seed 24 --speed-only --speed-dims 64,128 >"$out/speed.txt" 2>&1
echo "=== speed: exit $? after $((SECONDS - t0))s" | tee -a "$log"
grep -E '^speed' "$out/speed.txt" | tee -a "$log"
# one table: TFLOP/s per mask and head dim, Hopper over mma.sync
node - "$out/speed.txt" "$out/bwd-d64.json" "$out/env.txt" <<'EOF' | tee -a "$log"
const fs = require('node:fs');
const [file, json, envFile] = process.argv.slice(2);
const rows = [];
for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
  const m = /^speed bwd (\S+) S=(\d+) (\d+):(\d+) D(\d+) bf16: (.*)$/.exec(line);
  if (!m) continue;
  const cells = {};
  for (const part of m[6].split(' | ')) {
    const e = /^(\S+) ([\d.]+) ms (\d+) TFLOP\/s$/.exec(part.trim());
    cells[part.trim().split(' ')[0]] = e ? { ms: Number(e[2]), tflops: Number(e[3]) } : { error: part.trim() };
  }
  rows.push({ mask: m[1], tokens: Number(m[2]), headsQ: Number(m[3]), headsKv: Number(m[4]), dim: Number(m[5]), cells });
}
const what = 'Hopper backward (sm90) vs mma.sync backward, bf16, TFLOP/s = 2.5 * 4 * mask area * Hq * D / time of pre-pass + zero + main + convert (median of 10 CUDA-event-timed launches after 3 warm-ups)';
fs.writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), env: fs.readFileSync(envFile, 'utf8'), what, rows }, null, 2));
if (rows.length === 0) {
  console.log('no speed lines');
  process.exit(0);
}
const t = (c) => (c?.tflops !== undefined ? String(c.tflops) : c ? 'threw' : '—');
console.log('| mask | tokens | heads | D | sm90 | mma | sm90 / mma |');
console.log('|---|--:|--:|--:|--:|--:|--:|');
for (const r of rows) {
  const a = r.cells.sm90?.tflops;
  const b = r.cells.mma?.tflops;
  console.log(`| ${r.mask} | ${r.tokens} | ${r.headsQ}:${r.headsKv} | ${r.dim} | ${t(r.cells.sm90)} | ${t(r.cells.mma)} | ${a && b ? (a / b).toFixed(2) : '—'} |`);
}
EOF
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$log"
