#!/usr/bin/env python3
"""PyTorch nanoGPT on one CUDA GPU: ms per training step, tokens/s and MFU of GPT-2 124M, beside
`quietgpt gpu-check`'s benchmark of its own CUDA engine (which runs this script and merges its JSON).

The step is nanoGPT's train.py: bf16 autocast, TF32 allowed, torch.compile, fused AdamW (betas 0.9/0.95,
weight decay 0.1 on 2-D tensors), gradient clipping at 1.0, one micro-step per step. The model is
nanoGPT's model.py at 12/12/768, block 1024, vocab 50304, biases, exact GELU, lm_head tied to wte
(written here as in ../shared/bench/torch_reference.py, bench/torch_reference.py).

Attention:
- softmax: F.scaled_dot_product_attention(is_causal=True): PyTorch's flash attention.
- quiet (softmax1) has no fused kernel in PyTorch. Two ways to run it, both timed when asked:
  - "sdpa_zero_kv": SDPA over the keys and values with one all-zero key and value prepended: the extra
    score is q·0 = 0 and its value 0, which is exactly softmax1 (PyTorch's add_zero_attn). The causal
    mask then is not square (T × T+1), so SDPA needs an explicit mask and runs its memory-efficient
    kernel, not flash. This is the fastest exact quiet attention PyTorch offers.
  - "explicit": softmax1 written out over materialised (B, H, T, T) scores, as torch_reference.py does.
MFU: nanoGPT's estimate_mfu (6N + 12·L·H·Q·T flops per token, N without the position embedding)
against --peak_tflops.

Prints one JSON object on the last line of stdout: {"impl": "pytorch-nanogpt", "torch": ..., "runs": [...]}.
Runs are done in the order given and skipped (with the reason) once --deadline_s seconds have passed.

Example:  python3 bench/nanogpt_bench.py --runs softmax:16,quiet-sdpa_zero_kv:16 --peak_tflops 989
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def softmax1(s):
    # exp(s_i) / (1 + sum_j exp(s_j)), stable: shift by m = max(0, max_j s_j)
    m = torch.clamp(s.amax(dim=-1, keepdim=True), min=0).detach()
    e = torch.exp(s - m)
    return e / (torch.exp(-m) + e.sum(dim=-1, keepdim=True))


class Attention(nn.Module):
    def __init__(self, c, h, attention):
        super().__init__()
        self.h, self.attention = h, attention
        self.c_attn, self.c_proj = nn.Linear(c, 3 * c), nn.Linear(c, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v))
        if self.attention == "softmax":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif self.attention == "quiet-sdpa_zero_kv":
            zero = torch.zeros_like(k[:, :, :1])
            k, v = torch.cat([zero, k], dim=2), torch.cat([zero, v], dim=2)
            # query i sees the zero key (column 0) and keys 0..i (columns 1..i+1)
            mask = torch.ones(t, t + 1, dtype=torch.bool, device=x.device).tril(diagonal=1)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        elif self.attention == "quiet-explicit":
            s = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            y = softmax1(s.masked_fill(~mask, float("-inf"))) @ v
        else:
            raise ValueError(self.attention)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


class Block(nn.Module):
    def __init__(self, c, h, attention):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.attn = Attention(c, h, attention)
        self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, n_layer, n_head, n_embd, block_size, vocab, attention):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, n_embd), nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, attention) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        for name, p in self.named_parameters():  # nanoGPT's initialisation
            if p.dim() >= 2:
                proj = name.endswith("c_proj.weight") or name.endswith("mlp.2.weight")
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer) if proj else 0.02)
            elif name.endswith("bias") and "ln" not in name:
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for blk in self.blocks:
            x = blk(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))


def flops_per_step(model, n_layer, n_head, n_embd, t, b):
    """nanoGPT's estimate_mfu numerator: (6N + 12·L·H·Q·T)·T·B, N without wpe."""
    n = sum(p.numel() for p in model.parameters()) - model.wpe.weight.numel()
    return (6 * n + 12 * n_layer * n_head * (n_embd // n_head) * t) * t * b


def run_one(attention, b, args):
    L, H, C, T, V = (int(v) for v in args.shape.split(","))
    torch.manual_seed(0)
    dev = args.device
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    model = GPT(L, H, C, T, V, attention).to(dev)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), fused=dev == "cuda")
    step_model = torch.compile(model) if args.compile else model
    g = torch.Generator(device=dev).manual_seed(1)
    x = torch.randint(0, min(V, 50257), (b, T), device=dev, generator=g)
    y = torch.randint(0, min(V, 50257), (b, T), device=dev, generator=g)

    def step():
        with torch.autocast(device_type=dev, dtype=torch.bfloat16):
            loss = step_model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.perf_counter()
    loss = step()  # compiles
    sync()
    compile_s = time.perf_counter() - t0
    for _ in range(args.warmup):
        step()
    sync()
    times = []
    for _ in range(args.iters):
        t1 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t1)
    ms = statistics.median(times) * 1e3
    flops = flops_per_step(model, L, H, C, T, b)
    row = {"attention": attention, "batch_size": b, "block_size": T, "vocab_size": V,
           "ms_per_step": round(ms, 3), "ms_per_step_min": round(min(times) * 1e3, 3),
           "tokens_per_s": round(b * T / (ms / 1e3), 1), "flops_per_step": flops,
           "first_step_s_with_compile": round(compile_s, 2), "loss": round(loss.item(), 4),
           "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if dev == "cuda" else None}
    if args.peak_tflops > 0:
        row["mfu"] = round(flops / (ms / 1e3) / (args.peak_tflops * 1e12), 4)
    del model, opt, step_model
    if dev == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="softmax:16,quiet-sdpa_zero_kv:16,quiet-explicit:16",
                    help="attention:batch_size,... (softmax, quiet-sdpa_zero_kv, quiet-explicit)")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--compile", type=int, default=1, help="torch.compile (1) or eager (0)")
    ap.add_argument("--peak_tflops", type=float, default=0.0, help="bf16 dense peak for the MFU (0: no MFU)")
    ap.add_argument("--deadline_s", type=float, default=1e9, help="skip the runs that would start after this")
    ap.add_argument("--parse_only", action="store_true", help="check the arguments and exit (no GPU needed)")
    ap.add_argument("--device", default="cuda", help="cuda; cpu only to test this script without a GPU")
    ap.add_argument("--shape", default="12,12,768,1024,50304", help="n_layer,n_head,n_embd,block_size,vocab_size")
    args = ap.parse_args()
    runs = []
    for r in args.runs.split(","):
        att, b = r.rsplit(":", 1)
        if att not in ("softmax", "quiet-sdpa_zero_kv", "quiet-explicit"):
            ap.error(f"unknown attention {att!r}")
        runs.append((att, int(b)))
    if args.parse_only:
        print(json.dumps({"impl": "pytorch-nanogpt", "runs": [{"attention": a, "batch_size": b} for a, b in runs]}))
        return
    out = {"impl": "pytorch-nanogpt", "torch": torch.__version__, "compile": bool(args.compile),
           "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else args.device, "runs": []}
    if args.device == "cuda" and not torch.cuda.is_available():
        out["error"] = "torch.cuda.is_available() is False"
        print(json.dumps(out))
        sys.exit(1)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    start = time.perf_counter()
    for att, b in runs:
        if time.perf_counter() - start > args.deadline_s:
            out["runs"].append({"attention": att, "batch_size": b, "skipped": "deadline"})
            continue
        try:
            row = run_one(att, b, args)
        except Exception as e:  # out of memory, a compile failure: record it and go on
            row = {"attention": att, "batch_size": b, "error": f"{type(e).__name__}: {e}"[:500]}
            if args.device == "cuda":
                torch.cuda.empty_cache()
        print(json.dumps(row), file=sys.stderr, flush=True)
        out["runs"].append(row)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
