"""PyTorch's CPU scaled_dot_product_attention on the shapes of bench:cpu, at given thread counts.

Writes JSON that `bench:cpu --torch FILE` merges into its table and plot, so that run it right
before bench:cpu on the same machine (same cores, same load). float32, [1, H, T, D] layout,
GQA through enable_gqa, causal through is_causal (full: no mask); forward timed with autograd on
(as in training), backward = out.backward(dout). Best of --reps runs after one warm-up, per
thread count set by torch.set_num_threads. varlen masks are not an SDPA shape and are skipped.
The backward is timed from the scalar Σ out·dout, whose gradient with respect to out is dout.

    python3 bench/cpu-torch.py --threads 1,2 --out /tmp/torch.json

With --serve it instead answers bench:cpu (--with-torch) one timed run at a time: a request line
{"mask", "n", "hq", "hkv", "dim", "threads", "seed"} on stdin gets {"fwdS", "bwdS", "fwdCpuS",
"bwdCpuS"} back (CPU seconds of this process, so the caller sees whether the threads had their
cores), after a first line that names torch and the CPU. bench:cpu interleaves these runs with its
own, so both sides meet the same load on a shared machine.
"""
import argparse
import json
import platform
import sys
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


def make_inputs(mask: str, n: int, hq: int, hkv: int, dim: int, seed: int):
    torch.manual_seed(seed)
    q = torch.randn(1, hq, n, dim, requires_grad=True)
    k = torch.randn(1, hkv, n, dim, requires_grad=True)
    v = torch.randn(1, hkv, n, dim, requires_grad=True)
    dout = torch.randn(1, hq, n, dim)
    return q, k, v, dout


def timed_run(mask: str, hq: int, hkv: int, inputs) -> tuple[float, float, float, float]:
    """One forward and backward: wall seconds of each, then CPU seconds of each."""
    q, k, v, dout = inputs
    for x in (q, k, v):
        x.grad = None
    c0, t0 = time.process_time(), time.perf_counter()
    out = F.scaled_dot_product_attention(q, k, v, is_causal=(mask == "causal"), enable_gqa=(hq != hkv))
    c1, t1 = time.process_time(), time.perf_counter()
    # Σ out·dout has gradient dout: the same backward as out.backward(dout), plus one
    # elementwise product (O(T·H·D), nothing next to attention), and it needs no
    # shape-checking machinery (sympy) for a non-scalar gradient.
    (out * dout).sum().backward()
    c2, t2 = time.process_time(), time.perf_counter()
    return t1 - t0, t2 - t1, c1 - c0, c2 - c1


def serve() -> None:
    print(json.dumps({"torch": torch.__version__, "cpu": cpu_model(), "mkldnn": torch.backends.mkldnn.is_available()}), flush=True)
    cache: dict[tuple, tuple] = {}
    for line in sys.stdin:
        r = json.loads(line)
        key = (r["mask"], r["n"], r["hq"], r["hkv"], r["dim"], r["seed"])
        if key not in cache:
            cache.clear()  # one shape at a time: bench:cpu walks shapes in order
            cache[key] = make_inputs(*key)
        torch.set_num_threads(r["threads"])
        f, b, cf, cb = timed_run(r["mask"], r["hq"], r["hkv"], cache[key])
        # OpenMP's idle threads spin a while before they sleep: let them, before the caller times
        # its own run on these cores.
        time.sleep(0.25)
        print(json.dumps({"fwdS": f, "bwdS": b, "fwdCpuS": cf, "bwdCpuS": cb}), flush=True)


def main() -> None:
    if "--serve" in sys.argv:
        serve()
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default=ISSUE_SHAPES, help="mask:tokens:headsQ:headsKv:headDim, comma-separated")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rows = []
    for threads in [int(t) for t in a.threads.split(",")]:
        torch.set_num_threads(threads)
        for spec in a.shapes.split(","):
            mask, n, hq, hkv, dim = spec.split(":")
            n, hq, hkv, dim = int(n), int(hq), int(hkv), int(dim)
            if mask not in ("full", "causal"):
                continue
            inputs = make_inputs(mask, n, hq, hkv, dim, a.seed)
            best_f = best_b = float("inf")
            for r in range(a.reps + 1):
                f, b, _, _ = timed_run(mask, hq, hkv, inputs)
                if r > 0:
                    best_f = min(best_f, f)
                    best_b = min(best_b, b)
            rows.append({"mask": mask, "n": n, "hq": hq, "hkv": hkv, "dim": dim, "threads": threads, "fwdS": best_f, "bwdS": best_b})
            print(f"torch x{threads} {spec}: fwd {best_f * 1e3:.1f} ms, bwd {best_b * 1e3:.1f} ms", flush=True)
    with open(a.out, "w") as f:
        json.dump({"torch": torch.__version__, "cpu": cpu_model(), "mkldnn": torch.backends.mkldnn.is_available(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
