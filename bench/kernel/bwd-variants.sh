#!/usr/bin/env bash
# EXPERIMENT (issue 11; removed together with the variants once they are measured): the Hopper
# backward's schedule variants (FFA_BWD_SM90_VARIANT; src/kernels/cuda/ffa_bwd_sm90.cu's header
# says what each bit does) checked and timed side by side in one device call on one H200 (the
# compiles stop at 120 s, the checks at 200 s, the timing at 150 s: at most about 8 minutes,
# 4-5 expected):
#   0. every variant's NVRTC compile (and the modules all of them share), side by side, into one
#      compile cache, so that the processes below load instead of compiling;
#   1. the backward GPU checks of every variant, all side by side (they are CPU-bound: float64
#      references), three processes a variant: ffa-bwd-gpu.js's main cases (bf16 full / causal /
#      varlen causal / block-causal / sliding window / overlapping q ranges / Lq > Lk, softcap
#      bf16 and fp16 unaligned; --warps 8: the Hopper kernel and its mma.sync twin), its option
#      cases (sink, fp32 accumulators, deterministic mode with two runs bit-identical, the
#      16-slice deterministic check), and the NaN/Inf checks (ffa-nonfinite-gpu.js);
#   2. then, alone on the GPU, one process timing every variant per mask at 16k tokens, 64:8
#      heads, D 128, bf16 (ffa-bwd-gpu.js --speed-only --variants: pre-pass + zero + main +
#      convert, CUDA events, median of 10 after 3 warm-ups; the first variant timed again last,
#      to show the drift), printed as one table.
# Variant 3 adds dQ twice per element and block in a varying order: its deterministic checks are
# expected to fail (marked below); every other failure is real.
#
# Stage here (in this checkout):  bash scripts/device-stage.sh
# Then the device tool's `run`, carry [".device", ".gpu-run"], timeout_s 540, command:
#   source .device/boot.sh && ln -sfn .gpu-run/node_modules node_modules && ln -sfn .gpu-run/dist dist && bash bench/kernel/bwd-variants.sh "$OUT"
#
# [VARIANTS="1 3 4 5 9 13"] [COMPILE_LIMIT=s] [CHECK_LIMIT=s] [SPEED_LIMIT=s] bash bench/kernel/bwd-variants.sh OUTDIR
# Writes OUTDIR/log.txt (everything), env.txt, main-v<N>.txt / options-v<N>.txt /
# nonfinite-v<N>.txt (each variant's checks), compile-v<N>.txt, speed.txt and bwd-variants.json
# (the timings).
set -uo pipefail
out=${1:?usage: bwd-variants.sh OUTDIR}
mkdir -p "$out"
log="$out/log.txt"
variants=${VARIANTS:-1 3 4 5 9 13}
main='full 512, 8:2|causal 1024|varlen causal [300,400|block-causal 2 docs [600|sliding window 768|overlapping q ranges + uncovered|Lq > Lk: causal 600x300|causal 777'
options='sink 2|accumulation|deterministic'
# one compile cache for the processes of this call (each variant is its own NVRTC compile)
export MAGI_ATTN_CACHE_DIR=${MAGI_ATTN_CACHE_DIR:-${TMPDIR:-/tmp}/ffa-bwd-variants-cache}
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  node --version
  echo "variants: 0 (the kernel today) $variants"
} >"$out/env.txt" 2>&1
tee -a "$log" <"$out/env.txt"

t0=$SECONDS
echo "=== compiles (limit ${COMPILE_LIMIT:-120}s each, side by side) $(date -u +%H:%M:%S)" | tee -a "$log"
for v in 0 $variants; do
  # --only with a name no case has: builds every module, runs no case
  FFA_BWD_SM90_VARIANT=$v timeout --kill-after=10 "${COMPILE_LIMIT:-120}" node dist/test/device/ffa-bwd-gpu.js --seed 1 --warps 8 --only 'compile only: no such case' >"$out/compile-v$v.txt" 2>&1 &
done
wait
for v in 0 $variants; do echo "variant $v: $(grep -E 'nvrtc compile|ffa_bwd_sm90_bf16_d128: ' "$out/compile-v$v.txt" | tr '\n' ';') $(grep -E '^(ALL PASS|[0-9]+ FAILED)' "$out/compile-v$v.txt" || tail -n 2 "$out/compile-v$v.txt")" | tee -a "$log"; done
echo "=== checks (limit ${CHECK_LIMIT:-200}s each, side by side) $(date -u +%H:%M:%S)" | tee -a "$log"
for v in $variants; do
  FFA_BWD_SM90_VARIANT=$v timeout --kill-after=10 "${CHECK_LIMIT:-200}" node dist/test/device/ffa-bwd-gpu.js --seed 13 --warps 8 --only "$main" >"$out/main-v$v.txt" 2>&1 &
  FFA_BWD_SM90_VARIANT=$v timeout --kill-after=10 "${CHECK_LIMIT:-200}" node dist/test/device/ffa-bwd-gpu.js --seed 15 --warps 8 --only "$options" >"$out/options-v$v.txt" 2>&1 &
  FFA_BWD_SM90_VARIANT=$v timeout --kill-after=10 "${CHECK_LIMIT:-200}" node dist/test/device/ffa-nonfinite-gpu.js --seed 11 >"$out/nonfinite-v$v.txt" 2>&1 &
done
wait
echo "=== checks done after $((SECONDS - t0))s" | tee -a "$log"
for v in $variants; do
  for f in main options nonfinite; do
    file="$out/$f-v$v.txt"
    {
      echo "--- variant $v, $f: $(grep -c '^PASS' "$file") PASS, $(grep -c '^FAIL' "$file") FAIL; $(grep -E '^(ALL PASS|[0-9]+ FAILED)' "$file" || echo 'no verdict line: stopped by its time limit or crashed')"
      grep -E 'schedule variant|ffa_bwd_sm90_bf16_d128(_softcap)?: ' "$file" | sort -u
      grep -E '^FAIL' "$file" | cut -c1-300 | sed -E "$([ "$v" = 3 ] && echo 's/^FAIL (.*deterministic.*)/FAIL (expected for variant 3) \1/' || echo 's/^//')"
      tail -n 3 "$file" | grep -iE 'error|threw|abort|illegal|timeout' || true
    } | tee -a "$log"
  done
done

echo "=== speed (limit ${SPEED_LIMIT:-150}s) $(date -u +%H:%M:%S)" | tee -a "$log"
list=0
for v in $variants; do list="$list,$v"; done
timeout --kill-after=10 "${SPEED_LIMIT:-150}" node dist/test/device/ffa-bwd-gpu.js --seed 14 --warps 8 --speed-only --variants "$list" >"$out/speed.txt" 2>&1
echo "=== speed: exit $? after $((SECONDS - t0))s" | tee -a "$log"
grep -E '^speed' "$out/speed.txt" | tee -a "$log"
# one table: TFLOP/s per mask and variant, and each variant over variant 0
node - "$out/speed.txt" "$out/bwd-variants.json" <<'EOF' | tee -a "$log"
const fs = require('node:fs');
const [file, json] = process.argv.slice(2);
const rows = [];
for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
  const m = /^speed bwd (\S+) S=(\d+) \S+ \S+ \S+: (.*)$/.exec(line);
  if (!m) continue;
  const cells = {};
  for (const part of m[3].split(' | ')) {
    const e = /^(\S+) ([\d.]+) ms (\d+) TFLOP\/s$/.exec(part.trim());
    cells[part.trim().split(' ')[0]] = e ? { ms: Number(e[2]), tflops: Number(e[3]) } : { error: part.trim() };
  }
  rows.push({ mask: m[1], tokens: Number(m[2]), cells });
}
fs.writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), what: 'Hopper backward schedule variants, 64:8 heads, D 128, bf16, TFLOP/s of pre-pass + zero + main + convert', rows }, null, 2));
if (rows.length === 0) {
  console.log('no speed lines');
  process.exit(0);
}
const names = Object.keys(rows[0].cells);
const base = names[0];
const fmt = (c) => (c.tflops !== undefined ? String(c.tflops) : 'threw');
console.log(`| mask | ${names.join(' | ')} | ${names.slice(1, -1).map((n) => `${n} / ${base}`).join(' | ')} |`);
console.log(`|---|${names.map(() => '--:').join('|')}|${names.slice(1, -1).map(() => '--:').join('|')}|`);
for (const r of rows) {
  const ratios = names.slice(1, -1).map((n) => (r.cells[n]?.tflops && r.cells[base]?.tflops ? (r.cells[n].tflops / r.cells[base].tflops).toFixed(3) : '—'));
  console.log(`| ${r.mask} ${r.tokens} | ${names.map((n) => (r.cells[n] ? fmt(r.cells[n]) : '—')).join(' | ')} | ${ratios.join(' | ')} |`);
}
EOF
echo "=== done $(date -u +%H:%M:%S)" | tee -a "$log"
