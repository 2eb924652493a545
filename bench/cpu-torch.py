"""PyTorch's CPU scaled_dot_product_attention on the shapes of bench:cpu, at given thread counts.

Writes JSON that `bench:cpu --torch FILE` merges into its table and plot, so that run it right
before bench:cpu on the same machine (same cores, same load). float32, [1, H, T, D] layout,
GQA through enable_gqa, causal through is_causal (full: no mask); forward timed with autograd on
(as in training), backward = out.backward(dout). Best of --reps runs after one warm-up, per
thread count set by torch.set_num_threads. varlen masks are not an SDPA shape and are skipped.
The backward is timed from the scalar Σ out·dout, whose gradient with respect to out is dout.

    python3 bench/cpu-torch.py --threads 1,2 --out /tmp/torch.json
"""
import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F

ISSUE_SHAPES = "causal:2048:4:1:64,causal:4096:8:2:64,full:4096:8:2:64,causal:4096:8:2:128"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default=ISSUE_SHAPES, help="mask:tokens:headsQ:headsKv:headDim, comma-separated")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    rows = []
    for threads in [int(t) for t in a.threads.split(",")]:
        torch.set_num_threads(threads)
        for spec in a.shapes.split(","):
            mask, n, hq, hkv, dim = spec.split(":")
            n, hq, hkv, dim = int(n), int(hq), int(hkv), int(dim)
            if mask not in ("full", "causal"):
                continue
            q = torch.randn(1, hq, n, dim, requires_grad=True)
            k = torch.randn(1, hkv, n, dim, requires_grad=True)
            v = torch.randn(1, hkv, n, dim, requires_grad=True)
            dout = torch.randn(1, hq, n, dim)
            best_f = best_b = float("inf")
            for r in range(a.reps + 1):
                for x in (q, k, v):
                    x.grad = None
                t0 = time.perf_counter()
                out = F.scaled_dot_product_attention(q, k, v, is_causal=(mask == "causal"), enable_gqa=(hq != hkv))
                t1 = time.perf_counter()
                # Σ out·dout has gradient dout: the same backward as out.backward(dout), plus one
                # elementwise product (O(T·H·D), nothing next to attention), and it needs no
                # shape-checking machinery (sympy) for a non-scalar gradient.
                (out * dout).sum().backward()
                t2 = time.perf_counter()
                if r > 0:
                    best_f = min(best_f, t1 - t0)
                    best_b = min(best_b, t2 - t1)
            rows.append({"mask": mask, "n": n, "hq": hq, "hkv": hkv, "dim": dim, "threads": threads, "fwdS": best_f, "bwdS": best_b})
            print(f"torch x{threads} {spec}: fwd {best_f * 1e3:.1f} ms, bwd {best_b * 1e3:.1f} ms", flush=True)
    with open(a.out, "w") as f:
        json.dump({"torch": torch.__version__, "cpu": cpu_model(), "mkldnn": torch.backends.mkldnn.is_available(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
