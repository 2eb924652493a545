#!/usr/bin/env bash
# The CPU backend's BLAS engine on the GPU machine's CPU (issue 13): bench:cpu at 1, 2, 4, 8 and
# 16 threads, the issue's four shapes, three methods interleaved run by run in one process: the
# BLAS engine ('blas xT': the WebAssembly kernel's loop, tile products in cblas_sgemm), the
# relaxed-SIMD WebAssembly build ('wasm-relaxed-simd xT') and PyTorch's CPU SDPA ('PyTorch xT',
# bench/cpu-torch.py --serve). Best of 2 rounds (3 by REPS=3), each fast run after an untimed one.
#   bash bench/cpu-blas-device.sh OUT_DIR [PYTHON [bench:cpu options]]   (PYTHON: one with torch,
#   default python3; options after it override the ones below, e.g. --threads 1,2 --shapes ...)
# Writes OUT_DIR/cpu-kernel.{json,svg} (cpu-kernel-partial.json after each shape, so a run cut
# short keeps its finished shapes) and OUT_DIR/blas.txt (which BLAS, which CPU kernels it picked).
# Expected time on the idle 16-core Xeon: about 3.5 minutes (single-thread rows dominate: the
# 1-thread wasm and blas rows of 'full 4096' alone take ~10 s a round); give the run 420 s.
#
# The BLAS: a system one if it loads (libopenblas.so.0, ... or $MAGI_ATTN_BLAS), else the copy
# carried in .gpu-run/blas/ (xz-compressed: the carried tree must stay under 64 MiB and Debian's
# libopenblas is 36 MB, 4 MB compressed). Stage it on the development machine AFTER
# scripts/device-stage.sh (which recreates .gpu-run), from the checkout the run copies:
#   bash scripts/device-stage.sh && bash bench/cpu-blas-device.sh --stage
# which writes into .gpu-run/blas/ what `ldd` lists for that machine's libopenblas.so.0 beyond
# what every glibc host has (libc, libm, libgcc_s, ld-linux): on the Debian 12 development
# machine that is
#   /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so  (as libopenblas.so.0: OpenBLAS 0.3.21, pthreads, DYNAMIC_ARCH, so its SkylakeX kernels run on AVX-512)
#   /lib/x86_64-linux-gnu/libgfortran.so.5
#   /lib/x86_64-linux-gnu/libquadmath.so.0
# Then, with the device tool: kind nvidia-h200, carry [".device", ".gpu-run"], timeout_s 420:
#   source .device/boot.sh; ln -sfn .gpu-run/node_modules node_modules; ln -sfn .gpu-run/dist dist; bash bench/cpu-blas-device.sh $OUT
set -euo pipefail

if [[ ${1:-} == --stage ]]; then
  dest=${2:-.gpu-run/blas}
  lib=$(readlink -f "$(ldconfig -p | awk '/libopenblas\.so\.0 .*x86-64/ {print $NF; exit}')")
  [[ -f $lib ]] || { echo "no libopenblas.so.0 here (apt install libopenblas0)" >&2; exit 1; }
  rm -rf "$dest" && mkdir -p "$dest"
  xz -6 -T0 -c "$lib" > "$dest/libopenblas.so.0.xz"
  # Its dependencies, less the ones every glibc host has.
  ldd "$lib" | awk '$3 ~ /^\// {print $1, $3}' | while read -r name path; do
    case $name in libc.so.*|libm.so.*|libgcc_s.so.*|ld-linux*|libpthread.so.*|libdl.so.*) continue ;; esac
    xz -6 -T0 -c "$(readlink -f "$path")" > "$dest/$name.xz"
  done
  echo "staged $dest from $lib: $(ls "$dest" | tr '\n' ' ')($(du -sh "$dest" | cut -f1))"
  exit 0
fi

out=${1:?usage: bash bench/cpu-blas-device.sh OUT_DIR [PYTHON]  |  bash bench/cpu-blas-device.sh --stage [DIR]}
python=${2:-python3}
shift $(( $# < 2 ? $# : 2 ))
mkdir -p "$out"
blasinfo() { node --input-type=module -e "const m = await import('$PWD/dist/src/kernels/cpu/index.js'); console.log(JSON.stringify(m.blasInfo()))"; }
if info=$(blasinfo 2>/dev/null); then
  echo "system BLAS: $info" | tee "$out/blas.txt"
elif [[ -f .gpu-run/blas/libopenblas.so.0.xz ]]; then
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  for f in .gpu-run/blas/*.xz; do
    name=$(basename "$f" .xz)
    if command -v xz >/dev/null; then xz -dc "$f" > "$dir/$name"
    else "$python" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$f" "$dir/$name"; fi
  done
  # The loader finds libopenblas's own dependencies (libgfortran) there too.
  export LD_LIBRARY_PATH=$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export MAGI_ATTN_BLAS=$dir/libopenblas.so.0
  info=$(blasinfo)
  echo "carried BLAS (.gpu-run/blas): $info" | tee "$out/blas.txt"
else
  echo "no BLAS loads here and .gpu-run/blas/ holds none: stage it with bash bench/cpu-blas-device.sh --stage" >&2
  exit 1
fi
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) ($(nproc) cores), node $(node --version), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
node --expose-gc dist/bench/cpu-kernel.js --threads 1,2,4,8,16 --simd relaxed-simd --blas --reps "${REPS:-2}" --with-torch "$python" --out "$out/cpu-kernel.json" "$@"
echo "done $(date -u +%FT%TZ)"
