#!/usr/bin/env bash
# bench:cpu next to PyTorch's CPU SDPA, both measured in one run on this machine's cores:
#   bash bench/cpu-vs-torch.sh [THREADS] [OUT_DIR]        (defaults: 1,2 and bench/out)
# Needs a built checkout (npm run build) and a python3 with torch. On the GPU machine (16 Xeon
# cores, PyTorch installed) this is the issue-13 comparison: it runs PyTorch at each thread count
# (torch.set_num_threads), then our kernel at the same counts, plain SIMD and then relaxed SIMD
# (Node 20 needs --experimental-wasm-relaxed-simd for the fused multiply-add build; Node 22+ has it),
# and writes torch.json, cpu-kernel-simd.{json,svg} and cpu-kernel-relaxed.{json,svg}.
set -euo pipefail
threads=${1:-1,2}
out=${2:-bench/out}
mkdir -p "$out"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) ($(nproc) cores), node $(node --version), load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 bench/cpu-torch.py --threads "$threads" --out "$out/torch.json"
node --expose-gc dist/bench/cpu-kernel.js --threads "$threads" --torch "$out/torch.json" --out "$out/cpu-kernel-simd.json"
node --experimental-wasm-relaxed-simd --expose-gc dist/bench/cpu-kernel.js --threads "$threads" --torch "$out/torch.json" --out "$out/cpu-kernel-relaxed.json"
