"""The PyTorch twin of the TypeScript Llama trainer (experiment C of issue 14).

An independent implementation of the same model and step: transformers' LlamaForCausalLM built
from the same config, weights loaded from the safetensors checkpoint our trainer wrote, the same
packed batches (tokens, next-token targets with -1 where nothing is predicted, document ids), a
document-causal mask through FlexAttention (or a dense boolean mask through SDPA), float32 master
weights under bf16 autocast, mean cross-entropy over the valid targets, global-norm clipping,
torch.optim.AdamW with the same per-step learning rates and the same decay groups (matrices
decayed, norm weights not).

Modes (files are read from and written to --work, where `npm run example:llama -- experiment
grads|c|throughput` put theirs):
  grads   step-1 gradients on batch.safetensors from init.safetensors -> grads-twin.safetensors
  train   trains on c-batches.safetensors from c-init.safetensors -> c-twin.json (losses)
  bench   tokens/s of full training steps on bench-<T>.safetensors, SDPA and FlexAttention, with
          the model eager and under torch.compile -> throughput-twin.json

Runs on the GPU machine (torch 2.11, transformers 5.x, safetensors); nothing is downloaded.
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

try:
    import transformers
    from transformers import AttentionInterface, AutoModelForCausalLM, LlamaConfig
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
except ImportError as e:  # a clear message instead of a trace
    sys.exit(f"llama_twin: needs torch >= 2.5 with FlexAttention and transformers >= 4.48 ({e})")

DEVICE = "cuda"
_compiled_flex = torch.compile(flex_attention, dynamic=False)


ATTENTION_CALLS = {"n": 0}  # proves transformers routed every layer's attention through our hook


def count_attention_call():
    # Only outside torch.compile: a Python counter inside a compiled region is a guard on its
    # value, so every call recompiled the graph (sdpa-compiled ran 25x slower for it).
    if not torch.compiler.is_compiling():
        ATTENTION_CALLS["n"] += 1


def twin_flex(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention hook: FlexAttention with our BlockMask (query [B, H, S, D]); returns [B, S, H, D]."""
    count_attention_call()
    q, k, v = (t.to(torch.bfloat16) for t in (query, key, value))
    out = _compiled_flex(q, k, v, block_mask=attention_mask, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def twin_sdpa(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention hook: SDPA with a dense boolean document-causal mask (True = attend)."""
    count_attention_call()
    q, k, v = (t.to(torch.bfloat16) for t in (query, key, value))
    groups = q.shape[1] // k.shape[1]
    if groups > 1:  # expand kv heads so the memory-efficient kernel (which takes masks) can run
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register("twin_flex", twin_flex)
AttentionInterface.register("twin_sdpa", twin_sdpa)


class DocumentMask:
    """The document-causal mask of a batch, rebuilt per step into persistent buffers (no recompiles)."""

    def __init__(self, kind, seq_len):
        self.kind = kind
        self.seq_len = seq_len
        self.doc = torch.zeros(seq_len, dtype=torch.int32, device=DEVICE)
        doc = self.doc

        def mask_mod(b, h, q_idx, kv_idx):
            return (doc[q_idx] == doc[kv_idx]) & (kv_idx <= q_idx)

        self.mask_mod = mask_mod

    def build(self, doc_ids):
        self.doc.copy_(doc_ids.to(DEVICE, non_blocking=True))
        T = self.seq_len
        if self.kind == "flex":
            try:
                return create_block_mask(self.mask_mod, B=None, H=None, Q_LEN=T, KV_LEN=T, device=DEVICE, _compile=True)
            except TypeError:  # a torch without the _compile switch
                return create_block_mask(self.mask_mod, B=None, H=None, Q_LEN=T, KV_LEN=T, device=DEVICE)
        idx = torch.arange(T, device=DEVICE)
        return ((self.doc[:, None] == self.doc[None, :]) & (idx[None, :] <= idx[:, None]))[None, None]


def versions():
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": str(torch.version.cuda),
        "gpu": torch.cuda.get_device_name(0),
        "python": sys.version.split()[0],
    }


def make_config(hf):
    """A LlamaConfig from our fields, for transformers 4.x (rope_theta) and 5.x (rope_parameters)."""
    kw = {k: v for k, v in hf.items() if k not in ("architectures", "model_type", "rope_theta")}
    if hasattr(LlamaConfig(), "rope_parameters"):
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": hf["rope_theta"]}
    else:
        kw["rope_theta"] = hf["rope_theta"]
    return LlamaConfig(**kw)


def build_model(hf_config, attention, init_path=None):
    impl = {"flex": "twin_flex", "sdpa": "twin_sdpa"}[attention]
    model = AutoModelForCausalLM.from_config(make_config(hf_config), attn_implementation=impl)
    model = model.to(device=DEVICE, dtype=torch.float32)
    # Our RoPE: inv_freq_j = theta^(-2j/D) in float32; a different theta or convention would show here.
    inv = model.model.rotary_emb.inv_freq.float().cpu()
    D = hf_config["head_dim"]
    want = 1.0 / (hf_config["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    if inv.shape != want.shape or not torch.allclose(inv, want, rtol=1e-6, atol=0):
        raise RuntimeError(f"the twin's RoPE frequencies differ from ours: {inv[:4].tolist()} vs {want[:4].tolist()}")
    if init_path is not None:
        state = load_file(init_path, device=DEVICE)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"checkpoint {init_path} does not match LlamaForCausalLM: missing {missing}, unexpected {unexpected}")
    model.train()
    return model


def loss_of(model, tokens, targets, mask):
    """Mean cross-entropy over the valid targets (target -1 predicts nothing), bf16 autocast."""
    T = tokens.shape[0]
    pos = torch.arange(T, device=DEVICE)[None]
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        logits = model(input_ids=tokens[None].long(), position_ids=pos, attention_mask=mask, use_cache=False).logits
    valid = (targets >= 0).sum()
    return F.cross_entropy(logits[0].float(), targets.long(), ignore_index=-1, reduction="sum") / valid


def require_our_attention(model, before):
    """Every decoder layer must have called our attention hook (else transformers chose another path)."""
    calls = ATTENTION_CALLS["n"] - before
    if calls < model.config.num_hidden_layers:
        raise RuntimeError(f"transformers called our attention function {calls} times for {model.config.num_hidden_layers} layers: it did not take the registered attn_implementation")


def make_optimizer(model, o):
    decay = [p for _, p in model.named_parameters() if p.ndim >= 2]
    rest = [p for _, p in model.named_parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": o["weightDecay"]}, {"params": rest, "weight_decay": 0.0}],
        lr=o["lr"],
        betas=(o["beta1"], o["beta2"]),
        eps=o["eps"],
    )


def train_step(model, opt, o, lr, tokens, targets, mask):
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss = loss_of(model, tokens, targets, mask)
    loss.backward()
    if o["clip"] > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), o["clip"])
    opt.step()
    return loss


def read_json(path):
    with open(path) as f:
        return json.load(f)


def cmd_grads(a):
    run = read_json(os.path.join(a.work, "run.json"))
    batch = load_file(os.path.join(a.work, "batch.safetensors"))
    model = build_model(run["hf_config"], a.attention, os.path.join(a.work, "init.safetensors"))
    tokens, targets = batch["tokens"][0].to(DEVICE), batch["targets"][0].to(DEVICE)
    mask = DocumentMask(a.attention, tokens.shape[0]).build(batch["doc_ids"][0])
    before = ATTENTION_CALLS["n"]
    loss = loss_of(model, tokens, targets, mask)
    require_our_attention(model, before)
    loss.backward()
    grads = {n: p.grad.detach().float().contiguous().cpu() for n, p in model.named_parameters()}
    meta = {"loss": repr(loss.item()), "attention": a.attention, **versions()}
    save_file(grads, os.path.join(a.work, "grads-twin.safetensors"), metadata=meta)
    print(f"twin grads: loss {loss.item():.6f} ({a.attention}); {len(grads)} tensors -> {a.work}/grads-twin.safetensors")


def cmd_train(a):
    run = read_json(os.path.join(a.work, "c-run.json"))
    b = load_file(os.path.join(a.work, "c-batches.safetensors"))
    o = run["optimizer"]
    model = build_model(run["hf_config"], a.attention, os.path.join(a.work, "c-init.safetensors"))
    opt = make_optimizer(model, o)
    steps = b["tokens"].shape[0] if a.steps is None else min(a.steps, b["tokens"].shape[0])
    masks = DocumentMask(a.attention, b["tokens"].shape[1])
    losses, ms = [], []
    t_start = time.perf_counter()
    for s in range(steps):
        t0 = time.perf_counter()
        tokens, targets = b["tokens"][s].to(DEVICE), b["targets"][s].to(DEVICE)
        before = ATTENTION_CALLS["n"]
        loss = train_step(model, opt, o, float(b["lr"][s]), tokens, targets, masks.build(b["doc_ids"][s]))
        if s == 0:
            require_our_attention(model, before)
        losses.append(loss.item())
        ms.append((time.perf_counter() - t0) * 1000)
        if not math.isfinite(losses[-1]):
            raise RuntimeError(f"twin loss is {losses[-1]} at step {s + 1}")
        if (s + 1) % max(1, steps // 10) == 0 or s == 0:
            el = time.perf_counter() - t_start
            print(f"  [twin] step {s + 1}/{steps} | loss {losses[-1]:.4f} | lr {float(b['lr'][s]):.2e} | ETA {el / (s + 1) * (steps - s - 1):.0f}s", flush=True)
    out = {"losses": losses, "msPerStep": ms, "attention": f"{a.attention} (document-causal mask)", "autocast": "bfloat16", "versions": versions()}
    with open(os.path.join(a.work, "c-twin.json"), "w") as f:
        json.dump(out, f)
    print(f"twin train: {steps} steps, final loss {losses[-1]:.4f} -> {a.work}/c-twin.json")


def cmd_bench(a):
    run = read_json(os.path.join(a.work, "bench-run.json"))
    o = run["optimizer"]
    rows = []
    for T in a.seq_lens:
        path = os.path.join(a.work, f"bench-{T}.safetensors")
        if not os.path.exists(path):
            raise RuntimeError(f"{path} is missing: run `experiment throughput` first")
        b = load_file(path)
        tokens, targets = b["tokens"][0].to(DEVICE), b["targets"][0].to(DEVICE)
        for variant in a.variants:
            attention, mode = variant.split("-")
            row = {"seqLen": T, "variant": variant, "tokensPerSecond": None}
            try:
                model = build_model(run["hf_config"], attention)
                opt = make_optimizer(model, o)
                fwd = torch.compile(model) if mode == "compiled" else model
                mask = DocumentMask(attention, T).build(b["doc_ids"][0])
                for _ in range(a.warmup):
                    train_step(fwd, opt, o, o["lr"], tokens, targets, mask).item()
                torch.cuda.synchronize()
                times = []
                for _ in range(a.timed):
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    train_step(fwd, opt, o, o["lr"], tokens, targets, mask)
                    end.record()
                    end.synchronize()
                    times.append(start.elapsed_time(end))
                times.sort()
                med = times[len(times) // 2]
                row.update({"msPerStep": med, "tokensPerSecond": T * 1000 / med})
                print(f"  twin {variant:14s} {T:6d} tokens: {med:8.1f} ms/step, {row['tokensPerSecond']:10.0f} tokens/s", flush=True)
            except Exception as e:  # an OOM or an unsupported path is a result, not a crash
                row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
                print(f"  twin {variant:14s} {T:6d} tokens: failed: {row['error']}", flush=True)
            finally:
                model = opt = fwd = mask = None
                torch.cuda.empty_cache()
            rows.append(row)
    out = {"rows": rows, "method": f"median of {a.timed} CUDA-event-timed training steps (forward, backward, clip, AdamW) after {a.warmup} warm-up steps; bf16 autocast, float32 master weights; FlexAttention always compiled, 'compiled' = torch.compile of the whole model", "versions": versions()}
    with open(os.path.join(a.work, "throughput-twin.json"), "w") as f:
        json.dump(out, f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["grads", "train", "bench"])
    p.add_argument("--work", required=True, help="folder of the exchange files")
    p.add_argument("--attention", choices=["flex", "sdpa"], default="flex", help="grads/train: the attention path (default flex)")
    p.add_argument("--steps", type=int, default=None, help="train: at most this many steps (default: all recorded batches)")
    p.add_argument("--seq-lens", type=lambda s: [int(x) for x in s.split(",")], default=[16384, 65536], help="bench: sequence lengths")
    p.add_argument("--variants", type=lambda s: s.split(","), default=["sdpa-eager", "flex-eager", "sdpa-compiled", "flex-compiled"], help="bench: attention-mode pairs")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--timed", type=int, default=8)
    a = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("llama_twin: no CUDA device visible to torch")
    {"grads": cmd_grads, "train": cmd_train, "bench": cmd_bench}[a.mode](a)


if __name__ == "__main__":
    main()
