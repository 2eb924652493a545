#!/usr/bin/env python3
"""PyTorch attention baselines for the kernel benchmark (bench/kernel/run.ts).

    python3 bench/kernel/baselines.py <masks.json> <out.json> [--seqlen S] [--iters 20] [--warmup 5]
                                      [--methods cudnn,flash,flex] [--no-check]

bench/kernel/run.ts starts one process per sequence length (--seqlen S: only the masks of that
length), so every baseline is compiled and timed for its own shape in a fresh process.

Reads the masks written by bench/kernel/masks.ts (q_ranges, k_ranges, mask_types, total, cu_seqlens)
and times, forward and backward, on exactly those masks (bf16, 64 q heads : 8 kv heads, D = 128):

  cudnn  SDPA's cuDNN backend (sdpa_kernel(CUDNN_ATTENTION)) for full / causal;
         torch.ops.aten._cudnn_attention_forward with cu_seqlens (cuDNN's ragged THD path) for
         varlen full / causal; N/A for sliding window and block-causal (no such mask in the API).
  flash  SDPA's flash backend (sdpa_kernel(FLASH_ATTENTION)) for full / causal;
         torch.ops.aten._flash_attention_forward with cu_seqlens for varlen full / causal, and with
         window_size_left = W, window_size_right = 0 for the sliding window; N/A for block-causal.
  flex   torch.compile(flex_attention, dynamic=False) with a BlockMask built from the slice list
         (per-row key interval [lo[q], hi[q]) looked up by a mask_mod), enable_gqa=True. Static
         shapes: the graph is compiled for this sequence length (the first, untimed call), never
         with symbolic sizes; with one length per process nothing else shares the compile cache.

No dense-mask fallback is ever timed under a backend's name: what a backend cannot do is "N/A"
with the reason. If a backend refuses GQA (enable_gqa) the k/v heads are expanded to 64 before
the timed region and the row says so ("kv expanded").

Timing (the same rule as our kernels in run.ts): one untimed call (compiles), then `warmup`
warm-up calls (fewer when they would take over 1 s, at least 1), then N calls each bracketed by
its own pair of CUDA events, N = `iters` (fewer when they would take over 2 s, at least 5), all
queued before one synchronize at the end (so a call's host time overlaps the call before it),
the median. Forward is timed with
grad enabled (so it saves the LSE, like ours). Backward is out.backward(dout, retain_graph=True)
on a stored forward (or, if retain_graph fails, a fresh forward outside the timed region).
No L2 flush (the tensors are far larger than L2 at these sizes).
TFLOP/s = 4 · area · Hq · D / t forward, 2.5x that backward (04 §3.3), area from the slice list.

At the smallest size every method's forward output is checked against SDPA (memory-efficient
backend, or math) with the dense boolean mask and expanded k/v: max |diff| goes into the JSON.
"""
import argparse
import json
import math
import sys
import time
import traceback

import torch
import torch.nn.functional as F

HQ, HKV, D = 64, 8, 128
DTYPE = torch.bfloat16


def log(*a):
    print('[baselines]', *a, flush=True)


# ----------------------------------------------------------------------------------------------
# masks


def row_intervals(m, device):
    """Per query row the visible key interval [lo, hi) (each row of these masks lies in one slice)."""
    S = m['total']
    lo = torch.zeros(S, dtype=torch.int64)
    hi = torch.zeros(S, dtype=torch.int64)
    seen = torch.zeros(S, dtype=torch.bool)
    for (qs, qe), (ks, ke), t in zip(m['q_ranges'], m['k_ranges'], m['mask_types']):
        if qe <= qs or ke <= ks:
            continue
        q = torch.arange(qs, qe, dtype=torch.int64)
        if seen[qs:qe].any():
            raise ValueError(f"{m['name']} S={S}: q rows of two slices overlap; one interval per row is assumed")
        seen[qs:qe] = True
        l = torch.full_like(q, ks)
        h = torch.full_like(q, ke)
        if t & 2:  # inv_causal: j >= i
            l = ks + (q - qs)
        if t & 1:  # causal: j - i <= Lk - Lq, i.e. k < ke - (qe - q - 1)
            h = torch.minimum(h, ke - (qe - q - 1))
        l = torch.clamp(l, ks, ke)
        h = torch.clamp(h, ks, ke)
        h = torch.maximum(h, l)
        lo[qs:qe] = l
        hi[qs:qe] = h
    area = int((hi - lo).sum())
    if area != m['area']:
        raise ValueError(f"{m['name']} S={S}: area from the rows {area} != area from masks.ts {m['area']}")
    return lo.to(device=device, dtype=torch.int32), hi.to(device=device, dtype=torch.int32)


# Globals read by the mask_mod, so one compiled flex graph serves every mask of a shape.
LO = None
HI = None


def interval_mask_mod(b, h, q_idx, kv_idx):
    return (kv_idx >= LO[q_idx]) & (kv_idx < HI[q_idx])


def build_block_mask(lo, hi, S, block=128):
    """BlockMask straight from the row intervals: a (q block, kv block) pair is full when every
    row of the q block sees the whole kv block, partial (mask_mod applied) when any row may."""
    from torch.nn.attention.flex_attention import BlockMask

    dev = lo.device
    nq = (S + block - 1) // block
    pad = nq * block - S
    lo64, hi64 = lo.long(), hi.long()
    lo_p = torch.cat([lo64, lo64[-1:].expand(pad)]) if pad else lo64
    hi_p = torch.cat([hi64, hi64[-1:].expand(pad)]) if pad else hi64
    lo_b, hi_b = lo_p.view(nq, block), hi_p.view(nq, block)
    nonempty = hi_b > lo_b
    big = torch.iinfo(torch.int64).max
    min_lo = torch.where(nonempty, lo_b, big).min(1).values
    max_hi = torch.where(nonempty, hi_b, -1).max(1).values
    max_lo = lo_b.max(1).values
    min_hi = hi_b.min(1).values
    a = torch.arange(nq, device=dev) * block
    e = torch.clamp(a + block, max=S)
    any_ = (a[None, :] < max_hi[:, None]) & (e[None, :] > min_lo[:, None])
    full = (max_lo[:, None] <= a[None, :]) & (min_hi[:, None] >= e[None, :]) & nonempty.all(1)[:, None]
    partial = any_ & ~full

    def pack(sel):
        num = sel.sum(1, dtype=torch.int32)
        idx = torch.argsort(sel.to(torch.int8), dim=1, descending=True, stable=True).to(torch.int32)
        return num[None, None].contiguous(), idx[None, None].contiguous()

    kv_num, kv_idx = pack(partial)
    full_num, full_idx = pack(full)
    try:
        return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=block, mask_mod=interval_mask_mod, seq_lengths=(S, S))
    except TypeError:  # an older signature without seq_lengths
        return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=block, mask_mod=interval_mask_mod)


# ----------------------------------------------------------------------------------------------
# timing


def timing_counts(per_call_ms, iters, warmup):
    """Warm-up and timed call counts for a call of `per_call_ms` (run.ts timingCounts: the same rule)."""
    w = max(1, min(warmup, int(1000 / max(per_call_ms, 1e-3))))
    n = max(5, min(iters, int(2000 / max(per_call_ms, 1e-3))))
    return w, n


def time_calls(fn, iters, warmup, before=None):
    """Median ms of fn() over event-bracketed calls after an untimed call and warm-ups (see the header)."""
    if before:
        before()
    fn()  # compiles / initialises; untimed
    torch.cuda.synchronize()
    if before:
        before()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    w, n = timing_counts((time.perf_counter() - t0) * 1e3, iters, warmup)
    for _ in range(w - 1):
        if before:
            before()
        fn()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for i in range(n):
        if before:
            before()
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) for s, e in zip(starts, ends))
    return times[len(times) // 2], n


class NotAvailable(Exception):
    pass


def bench_method(fwd, inputs, dout, iters, warmup):
    """fwd(q, k, v) -> out. Returns (fwd_ms, n, bwd_ms or None, n, bwd_note)."""
    q, k, v = inputs

    def zero():
        q.grad = k.grad = v.grad = None

    fwd_ms, nf = time_calls(lambda: fwd(q, k, v), iters, warmup)
    out = fwd(q, k, v)
    if out.grad_fn is None:
        return fwd_ms, nf, None, 0, 'bwd N/A: the op has no autograd formula here'
    note = None
    try:
        holder = {'out': out}
        bwd_ms, nb = time_calls(lambda: holder['out'].backward(dout, retain_graph=True), iters, warmup, before=zero)
    except RuntimeError as e:  # retain_graph not supported: a fresh forward outside the timed region
        note = f're-forward per call ({str(e).splitlines()[0][:80]})'
        holder = {}

        def refwd():
            zero()
            holder['out'] = fwd(q, k, v)

        bwd_ms, nb = time_calls(lambda: holder['out'].backward(dout), iters, warmup, before=refwd)
    del out
    return fwd_ms, nf, bwd_ms, nb, note


# ----------------------------------------------------------------------------------------------
# methods: each returns (fwd fn, layout, note) or raises NotAvailable


def sdpa_method(backend, m, expanded):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    be = SDPBackend.CUDNN_ATTENTION if backend == 'cudnn' else SDPBackend.FLASH_ATTENTION
    causal = m['name'] == 'causal'

    def fwd(q, k, v):
        with sdpa_kernel([be]):
            if expanded:
                k2 = k.repeat_interleave(HQ // HKV, dim=1)
                v2 = v.repeat_interleave(HQ // HKV, dim=1)
                return F.scaled_dot_product_attention(q, k2, v2, is_causal=causal)
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)

    return fwd


def flash_varlen_method(m):
    cu = torch.tensor(m['cu_seqlens'], dtype=torch.int32, device='cuda')
    L = max(b - a for a, b in zip(m['cu_seqlens'], m['cu_seqlens'][1:]))
    scale = 1 / math.sqrt(D)
    kw = {'scale': scale}
    causal = m['name'] in ('varlen_causal', 'sw_causal')
    if m['name'] == 'sw_causal':
        kw['window_size_left'] = m['window']
        kw['window_size_right'] = 0

    def fwd(q, k, v):
        res = torch.ops.aten._flash_attention_forward(q, k, v, cu, cu, L, L, 0.0, causal, False, **kw)
        return res[0]

    return fwd


def cudnn_varlen_method(m):
    cu = torch.tensor(m['cu_seqlens'], dtype=torch.int32, device='cuda')
    L = max(b - a for a, b in zip(m['cu_seqlens'], m['cu_seqlens'][1:]))
    causal = m['name'] == 'varlen_causal'
    scale = 1 / math.sqrt(D)

    def fwd(q, k, v):
        res = torch.ops.aten._cudnn_attention_forward(q, k, v, None, cu, cu, L, L, True, 0.0, causal, False, scale=scale)
        return res[0]

    return fwd


FLEX = None


def flex_method(m, lo, hi):
    global FLEX, LO, HI
    from torch.nn.attention.flex_attention import flex_attention

    if FLEX is None:
        FLEX = torch.compile(flex_attention, dynamic=False)
    LO, HI = lo, hi
    bm = build_block_mask(lo, hi, m['total'])

    def fwd(q, k, v):
        return FLEX(q, k, v, block_mask=bm, enable_gqa=True)

    return fwd


# ----------------------------------------------------------------------------------------------


def make_inputs(S, layout):
    """The same random normal bf16 values in either layout (bhsd: [1, H, S, D] contiguous,
    thd: [S, H, D]), with requires_grad; and dout."""
    g = torch.Generator(device='cuda').manual_seed(S)
    base = [torch.randn((S, h, D), device='cuda', dtype=DTYPE, generator=g) for h in (HQ, HKV, HKV, HQ)]
    if layout == 'bhsd':
        base = [t.transpose(0, 1)[None].contiguous() for t in base]
    q, k, v, dout = base
    return [t.requires_grad_(True) for t in (q, k, v)], dout


def to_thd(x, layout):
    return x.detach()[0].transpose(0, 1) if layout == 'bhsd' else x.detach()


def reference_out(m, lo, hi, q_thd, k_thd, v_thd):
    """Dense-mask SDPA (efficient, else math) in fp32 accumulation, [S, HQ, D]."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    S = m['total']
    kk = torch.arange(S, device='cuda')
    mask = (kk[None, :] >= lo[:, None]) & (kk[None, :] < hi[:, None])
    q = q_thd.transpose(0, 1)[None]
    k = k_thd.transpose(0, 1)[None].repeat_interleave(HQ // HKV, dim=1)
    v = v_thd.transpose(0, 1)[None].repeat_interleave(HQ // HKV, dim=1)
    with torch.no_grad():
        try:
            with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
                o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[None, None])
        except RuntimeError:
            o = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask[None, None]).to(DTYPE)
    # rows that see nothing: SDPA gives NaN; they do not occur in these masks
    return o[0].transpose(0, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('masks')
    ap.add_argument('out')
    ap.add_argument('--iters', type=int, default=20)
    ap.add_argument('--warmup', type=int, default=5)
    ap.add_argument('--methods', default='cudnn,flash,flex')
    ap.add_argument('--no-check', action='store_true')
    ap.add_argument('--seqlen', type=int, default=0, help='only the masks of this length (0: all)')
    ap.add_argument('--check-seqlen', type=int, default=0, help='compare outputs with dense SDPA at this length (0: the smallest)')
    ap.add_argument('--budget-s', type=float, default=0, help='skip the remaining rows after this many seconds (0: no limit)')
    ap.add_argument('--settle-s', type=float, default=2, help="GPU idle before each method's forward timing of a cell (run.ts --settle-s; timing.ts SETTLE_S_DEFAULT says why)")
    args = ap.parse_args()

    import torch._dynamo

    for name in ('cache_size_limit', 'recompile_limit', 'accumulated_cache_size_limit', 'accumulated_recompile_limit'):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 1024)

    try:  # compiled flex backward: keep its saved buffers so that retain_graph=True works
        import torch._functorch.config as fconf

        fconf.donated_buffer = False
    except (ImportError, AttributeError):
        pass
    spec = json.load(open(args.masks))
    if args.seqlen:
        spec['masks'] = [m for m in spec['masks'] if m['total'] == args.seqlen]
    assert (spec['heads_q'], spec['heads_kv'], spec['head_dim']) == (HQ, HKV, D)
    methods = args.methods.split(',')
    env = {
        'gpu': torch.cuda.get_device_name(0),
        'torch': torch.__version__,
        'cuda': torch.version.cuda,
        'cudnn': torch.backends.cudnn.version(),
        'flex_compile': 'torch.compile(flex_attention, dynamic=False), one process per sequence length',
    }
    log(env)
    results = []
    smallest = args.check_seqlen or min(m['total'] for m in spec['masks'])
    gqa_refused = {}  # backend -> True once enable_gqa failed (then kv is expanded)
    t_start = time.perf_counter()
    for m in spec['masks']:
        S = m['total']
        lo, hi = row_intervals(m, 'cuda')
        flops_fwd = 4 * m['area'] * HQ * D
        check = (not args.no_check) and S == smallest
        ref = None
        for method in methods:
            row = {'mask': m['name'], 'seqlen': S, 'method': method, 'area': m['area']}
            t0 = time.perf_counter()
            if args.budget_s > 0 and t0 - t_start > args.budget_s:
                row['error'] = f'skipped: past the {args.budget_s:.0f} s time budget of this run'
                results.append(row)
                continue
            try:
                varlen = m['name'] in ('varlen_full', 'varlen_causal', 'sw_causal', 'varlen_block_causal')
                layout = 'bhsd'
                note = []
                if method in ('cudnn', 'flash'):
                    if m['name'] == 'varlen_block_causal':
                        raise NotAvailable('block-causal is not a mask the flash/cuDNN APIs take (04 §3.2: X)')
                    if method == 'cudnn' and m['name'] == 'sw_causal':
                        raise NotAvailable('no sliding window in the cuDNN SDPA entry points of torch')
                    if varlen:
                        layout = 'thd'
                        fwd = flash_varlen_method(m) if method == 'flash' else cudnn_varlen_method(m)
                        note.append('varlen op with cu_seqlens' if m['name'] != 'sw_causal' else f"window ({m['window']}, 0)")
                    else:
                        expanded = gqa_refused.get(method, False)
                        fwd = sdpa_method(method, m, expanded)
                        (q, k, v), _ = make_inputs(256, layout)
                        try:
                            fwd(q, k, v)
                        except RuntimeError as e:
                            if expanded:
                                raise
                            log(f'{method}: enable_gqa refused ({str(e).splitlines()[0][:120]}); expanding kv')
                            gqa_refused[method] = True
                            fwd = sdpa_method(method, m, True)
                        if gqa_refused.get(method):
                            note.append('kv expanded (enable_gqa refused)')
                else:
                    fwd = flex_method(m, lo, hi)
                inputs, dout = make_inputs(S, layout)
                if check:
                    o = fwd(*inputs).detach()  # grad mode as timed: no extra flex compile
                    if ref is None:
                        ref = reference_out(m, lo, hi, *[to_thd(t, layout) for t in inputs])
                    err = (to_thd(o, layout).float() - ref.float()).abs().max().item()
                    row['max_abs_err_vs_dense'] = err
                    del o
                torch.cuda.synchronize()
                time.sleep(args.settle_s)  # the same idle pause before every method's timing (run.ts --settle-s)
                fwd_ms, nf, bwd_ms, nb, bnote = bench_method(fwd, inputs, dout, args.iters, args.warmup)
                if bnote:
                    note.append(bnote if bnote.startswith('bwd') else 'bwd ' + bnote)
                row.update(fwd_ms=fwd_ms, fwd_iters=nf, fwd_tflops=flops_fwd / (fwd_ms * 1e-3) / 1e12)
                if bwd_ms is not None:
                    row.update(bwd_ms=bwd_ms, bwd_iters=nb, bwd_tflops=2.5 * flops_fwd / (bwd_ms * 1e-3) / 1e12)
                if note:
                    row['note'] = '; '.join(note)
                del inputs, dout
            except NotAvailable as e:
                row['na'] = str(e)
            except Exception as e:  # noqa: BLE001 - an unsupported case is reported, not fatal
                msg = f'{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ""}'
                row['error'] = msg
                log(f"{m['name']} S={S} {method}: {msg}")
                traceback.print_exc(limit=3)
            row['wall_s'] = round(time.perf_counter() - t0, 2)
            results.append(row)
            shown = row.get('na') or row.get('error') or (
                f"fwd {row['fwd_ms']:.3f} ms {row['fwd_tflops']:.1f} TF/s"
                + (f", bwd {row['bwd_ms']:.3f} ms {row['bwd_tflops']:.1f} TF/s" if 'bwd_ms' in row else ', bwd N/A')
                + (f", err {row['max_abs_err_vs_dense']:.3g}" if 'max_abs_err_vs_dense' in row else '')
                + (f" [{row['note']}]" if 'note' in row else '')
            )
            log(f"{m['name']:>20} S={S:>6} {method:>5}: {shown} ({row['wall_s']} s)")
            torch.cuda.empty_cache()
        del ref
        json.dump({'env': env, 'results': results, 'partial': True}, open(args.out, 'w'), indent=1)
    env['wall_s'] = round(time.perf_counter() - t_start, 1)
    json.dump({'env': env, 'results': results}, open(args.out, 'w'), indent=1)
    log(f"wrote {args.out} ({len(results)} rows, {env['wall_s']} s)")


if __name__ == '__main__':
    main()
