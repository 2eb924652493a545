"""bench/kernel/cudnn-clock.py: cuDNN's backward (SDPA's cuDNN backend, 64:8 heads, D 128, bf16,
the inputs of baselines.py) run back to back for a while per mask, so that the SM clock and the
power it sustains under the GPU's power cap can be read beside it (nvidia-smi in another process;
bench/kernel/README.md, "Backward: why causal reads below full"). Prints, per mask, the UTC times
the loop started and ended, the calls, and the median ms and TFLOP/s of calls bracketed by CUDA
events; --out writes them as JSON.

  python3 bench/kernel/cudnn-clock.py [--seqlen 16384] [--masks full,causal] [--seconds 5] [--out FILE]
"""
import argparse
import datetime
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baselines import D, HQ, make_inputs, sdpa_method  # noqa: E402


def utc():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='milliseconds')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seqlen', type=int, default=16384)
    ap.add_argument('--masks', default='full,causal')
    ap.add_argument('--seconds', type=float, default=5.0)
    ap.add_argument('--out', default=None)
    args = ap.parse_args()
    S = args.seqlen
    rows = []
    for name in args.masks.split(','):
        if name not in ('full', 'causal'):
            raise SystemExit(f'--masks: full or causal, got {name}')
        area = S * S if name == 'full' else S * (S + 1) // 2
        (q, k, v), dout = make_inputs(S, 'bhsd')
        fwd = sdpa_method('cudnn', {'name': name}, expanded=False)
        out = fwd(q, k, v)

        def call():
            q.grad = k.grad = v.grad = None
            out.backward(dout, retain_graph=True)

        call()
        torch.cuda.synchronize()
        events = []
        start = utc()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            e = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            e[0].record()
            call()
            e[1].record()
            events.append(e)
            if len(events) % 16 == 0:
                torch.cuda.synchronize()
        torch.cuda.synchronize()
        end = utc()
        ms = sorted(a.elapsed_time(b) for a, b in events)
        med = ms[len(ms) // 2]
        row = {'mask': name, 'seqlen': S, 'start': start, 'end': end, 'calls': len(ms), 'median_ms': med,
               'bwd_tflops': 2.5 * 4 * area * HQ * D / (med * 1e-3) / 1e12}
        rows.append(row)
        print(json.dumps(row), flush=True)
        del out, q, k, v, dout
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({'gpu': torch.cuda.get_device_name(), 'torch': torch.__version__, 'cudnn': torch.backends.cudnn.version(), 'rows': rows}, f, indent=1)


if __name__ == '__main__':
    main()
