#!/usr/bin/env bash
# bench:cpu next to PyTorch's CPU SDPA, both measured in one run on this machine's cores:
#   bash bench/cpu-vs-torch.sh [THREADS] [OUT_DIR] [PYTHON]    (defaults: 1,2, bench/out, python3)
# Needs a built checkout (npm run build) and a python with torch. For the GPU machine, stage with
# scripts/device-stage.sh, carry [".device", ".gpu-run"] and run
#   source .device/boot.sh && ln -sfn .gpu-run/node_modules node_modules && ln -sfn .gpu-run/dist dist &&
#   bash bench/cpu-vs-torch.sh 1,2,4,8,16 $OUT
# On the GPU machine (16 Xeon cores, PyTorch installed) this is the issue-13 comparison: our
# kernel at each thread count in both builds, relaxed SIMD (fused multiply-add, the default; on
# Node 20 the loader turns on V8's flag for it) and plain SIMD, and PyTorch at the same counts
# (torch.set_num_threads), all interleaved run by run in one process (PyTorch through
# bench/cpu-torch.py --serve); every row records the cores its best run kept busy; a progress bar
# shows the time left. Where a BLAS loads (a system libopenblas.so.0 and the like, or
# $MAGI_ATTN_BLAS) the BLAS engine runs beside them ('blas xT' rows; bench/cpu-blas-device.sh
# brings a carried OpenBLAS to a machine without one). Writes cpu-kernel.{json,svg} in OUT_DIR.
set -euo pipefail
threads=${1:-1,2}
out=${2:-bench/out}
python=${3:-python3}
mkdir -p "$out"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) ($(nproc) cores), node $(node --version), load $(cut -d' ' -f1-3 /proc/loadavg)"
blas=()
if node --input-type=module -e "const m = await import('$PWD/dist/src/kernels/cpu/index.js'); m.blasInfo()" 2>/dev/null; then blas=(--blas); else echo "no BLAS loads here: no 'blas' rows (apt install libopenblas0, or MAGI_ATTN_BLAS=/path/to/libopenblas.so.0)"; fi
node --expose-gc dist/bench/cpu-kernel.js --threads "$threads" --simd relaxed-simd,simd "${blas[@]}" --with-torch "$python" --out "$out/cpu-kernel.json"
