#!/usr/bin/env python3
"""Golden reference cases for quietgpt's tests (tests/golden/), from a small nanoGPT written here.

The model is karpathy/nanoGPT's `model.py` (same module order and initialisation, so that
`torch.manual_seed(seed); GPT(cfg)` gives nanoGPT's weights), plus quietgpt's attention variants:

  softmax  nanoGPT's default path, F.scaled_dot_product_attention(is_causal=True)
  quiet    softmax1 on the manual path. One-step cases: the seed's `surftmex`
           (m = row max incl. the -inf entries, exp(s-m) / (exp(-m) + sum exp(s-m)));
           traj_* cases: the stable form, m = max(0, max_j s_j) detached.
  clipped  Bondarenko et al. 2023: p = clip((zeta - gamma) softmax(s) + gamma, 0, 1), gamma = -alpha/block_size
  gated    Bondarenko et al. 2023: head h's output scaled by sigmoid(ln_1(x) . w_h + b_h)   (attn.c_gate, C -> n_head)
  outgate  Qiu et al. 2025: concatenated head outputs * sigmoid(ln_1(x) W + b) elementwise (attn.c_outgate, C -> C)
  sink     learned sink logit per head: p_j = exp(s_j) / (exp(sigma_h) + sum_k exp(s_k))  (attn.sink)
  relu     Guo et al. 2024 (BBM/model.py attn_use_relu): p_ij = relu(s_ij) / (i + 1), no normalisation
  sigmoid  Gu et al. 2025 (sail-sg/Attention-Sink, sim = "sigmoid", no norm): p_ij = sigmoid(s_ij), masked 0
  softpick Zuhri et al. 2025: p_j = relu(e^{s_j} - 1) / (sum_k |e^{s_k} - 1| + 1e-8) over the visible keys,
           in the stable form m = max(0, max_j s_j) detached (see `softpick`)

The gates act on the attention core's output before c_proj; their input is the attention block's input
ln_1(x).

The model options of quietgpt's Bigram-Backcopy preset (Guo et al. 2024) are here too: `activation`
("gelu" | "relu", the MLP's), `tie_weights` (False: lm_head.weight of its own, named last), `init`
("nanogpt" | "pytorch": PyTorch's module defaults, no _init_weights), and the optimizer of a trajectory
(torch.optim.AdamW or torch.optim.SGD with momentum, both with nanoGPT's groups): the `traj_opts_*` cases. All of it follows quietgpt's definitions (src/config.rs, src/model/attention.rs,
attention_gate.rs, params.rs, gpt.rs) and tests/golden/README.md, which defines every file.

Usage (torch 2.15.0 CPU, see scripts/requirements-golden.txt):

  python scripts/make_golden.py --out tests/golden                  # every case
  python scripts/make_golden.py --out /tmp/g --cases small_bias_gated traj_small_bias_quiet
  python scripts/make_golden.py --out tests/golden --cases traj_opts_relu_untied_sgd traj_opts_relu_untied_adamw
  python scripts/make_golden.py --check tests/golden/small_bias_quiet  # recompute a stored case from its
                                                                       # model + batch, print max differences
"""

import argparse
import json
import math
import sys
from dataclasses import dataclass, asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[1]
TIED = "lm_head.weight is transformer.wte.weight (stored once, as transformer.wte.weight)"
VARIANTS = ["softmax", "quiet", "clipped", "gated", "outgate", "sink", "relu", "sigmoid", "softpick"]
SOFTPICK_EPS = 1e-8  # the authors' (zaydzuhri/softpick-attention, naive_softpick_attn.py)


def setup_torch():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


# ----------------------------------------------------------------------------------------------------------
# model


@dataclass
class Cfg:
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 32
    block_size: int = 16
    vocab_size: int = 65
    bias: bool = True
    dropout: float = 0.0
    attention: str = "softmax"
    clip_zeta: float = 1.0
    clip_alpha: float = 12.0
    gate_init: float = 0.25
    # quiet only: "surftmex" (the seed's function, one-step cases) or "stable" (traj cases)
    quiet_form: str = "stable"
    # softmax-normalised variants: F.scaled_dot_product_attention (nanoGPT's default) or the manual path
    manual: bool = False
    # the MLP's activation: "gelu" (nn.GELU(), exact erf) or "relu"
    activation: str = "gelu"
    # lm_head tied to wte (nanoGPT) or its own lm_head.weight
    tie_weights: bool = True
    # "nanogpt" (_init_weights, scaled c_proj) or "pytorch" (the modules' own defaults)
    init: str = "nanogpt"


class LayerNorm(nn.Module):
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class Lin(nn.Module):
    """A Linear whose creation draws no random numbers (the variants' gates are initialised separately,
    so that the nanoGPT weights of a seed are the same whatever the variant)."""

    def __init__(self, n_in, n_out, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.bias = nn.Parameter(torch.empty(n_out)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


def surftmex(x):
    """The seed's softmax1 (float32 behaviour documented in README: NaN backward below -88.7)."""
    m = x.max(dim=-1, keepdim=True).values
    e = torch.exp(x - m)
    return e / (torch.exp(-m) + e.sum(dim=-1, keepdim=True))


def softmax1_stable(x):
    m = x.max(dim=-1, keepdim=True).values.clamp(min=0).detach()
    e = torch.exp(x - m)
    return e / (torch.exp(-m) + e.sum(dim=-1, keepdim=True))


def softpick(x, eps=SOFTPICK_EPS):
    """relu(e^x - 1) / (sum |e^x - 1| + eps) over the last dim, masked entries (-inf) left out of the sum
    (as the authors' torch.where(x.isfinite(), ...)); numerator and denominator times e^{-m},
    m = max(0, max_j x_j) detached, so nothing overflows and eps stays the definition's."""
    m = x.max(dim=-1, keepdim=True).values.clamp(min=0).detach()
    em = torch.exp(-m)
    d = torch.exp(x - m) - em
    a = torch.where(torch.isfinite(x), d.abs(), torch.zeros_like(d))
    return F.relu(d) / (a.sum(dim=-1, keepdim=True) + eps * em)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: Cfg):
        super().__init__()
        C, H = cfg.n_embd, cfg.n_head
        self.cfg = cfg
        self.c_attn = nn.Linear(C, 3 * C, bias=cfg.bias)
        self.c_proj = nn.Linear(C, C, bias=cfg.bias)
        if cfg.attention == "sink":
            self.sink = nn.Parameter(torch.empty(H))
        if cfg.attention == "gated":
            self.c_gate = Lin(C, H, True)  # the per-head gate always has a bias (quietgpt params.rs)
        if cfg.attention == "outgate":
            self.c_outgate = Lin(C, C, cfg.bias)
        bs = cfg.block_size
        self.register_buffer("mask", torch.tril(torch.ones(bs, bs)).view(1, 1, bs, bs), persistent=False)
        self.last_probs = None

    def forward(self, x):
        cfg = self.cfg
        B, T, C = x.size()
        H = cfg.n_head
        hs = C // H
        q, k, v = self.c_attn(x).split(C, dim=2)
        k = k.view(B, T, H, hs).transpose(1, 2)
        q = q.view(B, T, H, hs).transpose(1, 2)
        v = v.view(B, T, H, hs).transpose(1, 2)
        kind = cfg.attention
        if kind in ("softmax", "gated", "outgate") and not cfg.manual:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=True)
            self.last_probs = None
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
            if kind == "quiet":
                att = surftmex(att) if cfg.quiet_form == "surftmex" else softmax1_stable(att)
            elif kind == "sink":
                # one extra key per head with the learned score sigma_h and value 0
                s = self.sink.view(1, H, 1, 1).expand(B, H, T, 1)
                att = F.softmax(torch.cat([att, s], dim=-1), dim=-1)[..., :T]
            elif kind == "relu":
                # row i divided by i + 1, its number of visible keys (Guo et al.: arange(1, T + 1))
                att = F.relu(att) / torch.arange(1, T + 1, dtype=att.dtype).view(1, 1, T, 1)
            elif kind == "sigmoid":
                att = torch.sigmoid(att)  # sigmoid(-inf) = 0 at the masked keys
            elif kind == "softpick":
                att = softpick(att)
            elif kind == "clipped":
                zeta = float(np.float32(cfg.clip_zeta))
                gamma = -float(np.float32(cfg.clip_alpha)) / cfg.block_size
                u = F.softmax(att, dim=-1)
                att = torch.clamp((zeta - gamma) * u + gamma, 0.0, 1.0)
            else:
                att = F.softmax(att, dim=-1)
            self.last_probs = att.detach()
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        if kind == "gated":
            g = torch.sigmoid(self.c_gate(x))  # (B, T, H)
            y = (y.view(B, T, H, hs) * g.unsqueeze(-1)).view(B, T, C)
        elif kind == "outgate":
            y = y * torch.sigmoid(self.c_outgate(x))
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.act = nn.ReLU() if cfg.activation == "relu" else nn.GELU()
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)

    def forward(self, x):
        return self.c_proj(self.act(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln_1 = LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: Cfg):
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
                wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
                drop=nn.Dropout(cfg.dropout),
                h=nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
                ln_f=LayerNorm(cfg.n_embd, bias=cfg.bias),
            )
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.transformer.wte.weight = self.lm_head.weight  # tied
        if cfg.init == "nanogpt":
            self.apply(self._init_weights)
            for pn, p in self.named_parameters():
                if pn.endswith("c_proj.weight"):
                    torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        self.residuals = []

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def init_variant(self, seed):
        """quietgpt's init of the variants' own tensors (gpt.rs `init`), from their own generator:
        sink 0; gate weights N(0, 0.02); per-head gate bias logit(gate_init); output gate bias 0."""
        g = torch.Generator().manual_seed(seed)
        gi = float(np.float32(self.cfg.gate_init))
        with torch.no_grad():
            for blk in self.transformer.h:
                a = blk.attn
                if hasattr(a, "sink"):
                    a.sink.zero_()
                for lin, b0 in ((getattr(a, "c_gate", None), math.log(gi / (1 - gi))), (getattr(a, "c_outgate", None), 0.0)):
                    if lin is None:
                        continue
                    lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * 0.02)
                    if lin.bias is not None:
                        lin.bias.fill_(b0)

    def forward(self, idx, targets, lm_head_weight=None):
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        self.residuals = [x.detach()]
        for block in self.transformer.h:
            x = block(x)
            self.residuals.append(x.detach())
        x = self.transformer.ln_f(x)
        w = self.lm_head.weight if lm_head_weight is None else lm_head_weight
        logits = F.linear(x, w)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss


def quiet_order(cfg: Cfg):
    """Parameter names in quietgpt's order (params.rs: the attention's own tensors after c_proj)."""
    names = ["transformer.wte.weight", "transformer.wpe.weight"]
    for l in range(cfg.n_layer):
        h = f"transformer.h.{l}."
        per = ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias"]
        if cfg.attention == "sink":
            per.append("attn.sink")
        if cfg.attention == "gated":
            per += ["attn.c_gate.weight", "attn.c_gate.bias"]
        if cfg.attention == "outgate":
            per += ["attn.c_outgate.weight", "attn.c_outgate.bias"]
        per += ["ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"]
        names += [h + p for p in per]
    names += ["transformer.ln_f.weight", "transformer.ln_f.bias"]
    if not cfg.tie_weights:
        names.append("lm_head.weight")
    params = dict(named_params(None, cfg))
    return [n for n in names if n in params]


def named_params(model, cfg=None):
    """name -> parameter, wte once, lm_head only when untied (with model None: the names only, from a
    fresh model)."""
    if model is None:
        with torch.random.fork_rng():
            model = GPT(cfg)
    return [(n, p) for n, p in model.named_parameters() if n != "lm_head.weight" or not model.cfg.tie_weights]


def params_dict(model):
    return dict(named_params(model))


def load_params(model, sd):
    with torch.no_grad():
        for n, p in params_dict(model).items():
            p.copy_(sd[n].to(p.dtype))
    missing = set(params_dict(model)) - set(sd)
    extra = set(sd) - set(params_dict(model))
    assert not missing and not extra, f"missing {missing}, extra {extra}"


def cfg_from_json(c, traj):
    attention = c.get("attention") or ("quiet" if c.get("quiet") else "softmax")
    return Cfg(
        n_layer=c["n_layer"],
        n_head=c["n_head"],
        n_embd=c["n_embd"],
        block_size=c["block_size"],
        vocab_size=c["vocab_size"],
        bias=c["bias"],
        dropout=c["dropout"],
        attention=attention,
        clip_zeta=c.get("clip_zeta", 1.0),
        clip_alpha=c.get("clip_alpha", 12.0),
        gate_init=c.get("gate_init", 0.25),
        quiet_form="stable" if traj else "surftmex",
        activation=c.get("activation", "gelu"),
        tie_weights=c.get("tie_weights", True),
        init=c.get("init", "nanogpt"),
    )


def cfg_json(cfg: Cfg):
    d = {k: getattr(cfg, k) for k in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "bias", "dropout")}
    d["attention"] = cfg.attention
    d["quiet"] = cfg.attention == "quiet"
    if cfg.attention == "clipped":
        d["clip_zeta"] = cfg.clip_zeta
        d["clip_alpha"] = cfg.clip_alpha
        d["clip_gamma"] = -cfg.clip_alpha / cfg.block_size
    if cfg.attention == "gated":
        d["gate_init"] = cfg.gate_init
    if cfg.attention == "quiet":
        d["quiet_form"] = cfg.quiet_form
    # the model options, written only where they are not nanoGPT's (older files have none)
    for k, default in (("activation", "gelu"), ("tie_weights", True), ("init", "nanogpt")):
        if getattr(cfg, k) != default:
            d[k] = getattr(cfg, k)
    if cfg.attention == "softpick":
        d["softpick_eps"] = SOFTPICK_EPS
    return d


# ----------------------------------------------------------------------------------------------------------
# data


def shakespeare_train_tokens():
    """nanoGPT data/shakespeare_char/prepare.py: vocab = sorted chars of the whole text; train.bin = the
    first int(n*0.9) characters as uint16."""
    text = (REPO / "assets" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    n = len(text)
    train = text[: int(n * 0.9)]
    return np.array([stoi[c] for c in train], dtype=np.uint16), len(chars)


def get_batch(data, B, T, gen):
    """nanoGPT train.py get_batch with an explicit generator."""
    ix = torch.randint(len(data) - T, (B,), generator=gen)
    x = torch.stack([torch.from_numpy(data[i : i + T].astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + T].astype(np.int64)) for i in ix])
    return x, y


# ----------------------------------------------------------------------------------------------------------
# one step


def perturb(model, cfg, seed):
    """README `*_perturbed`: LN weights 1 + 0.2 N, biases 0.1 N, c_attn.weight 0.25 N, other weights += 0.02 N,
    drawn in nanoGPT's parameter order from Generator(seed), so that every variant gets the same values;
    then the variants' own tensors from Generator(seed + 1): sink N(0,1), gate weights 0.2 N (gate logits
    of order 1), gate biases 0.5 N."""
    own = ("attn.sink", ".c_gate.", ".c_outgate.")
    g = torch.Generator().manual_seed(seed)
    gv = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        ps = named_params(model)
        for n, p in [(n, p) for n, p in ps if not any(o in n for o in own)]:
            r = torch.randn(p.shape, generator=g)
            if ".ln_" in n and n.endswith("weight"):
                p.copy_(1 + 0.2 * r)
            elif n.endswith("bias"):
                p.copy_(0.1 * r)
            elif n.endswith("attn.c_attn.weight"):
                p.copy_(0.25 * r)
            else:
                p.add_(0.02 * r)
        for n, p in [(n, p) for n, p in ps if any(o in n for o in own)]:
            r = torch.randn(p.shape, generator=gv)
            p.copy_(r if n.endswith("attn.sink") else r * (0.2 if n.endswith("weight") else 0.5))


def res_stats(x):
    a = x.detach().double().flatten()
    mu = a.mean()
    c = a - mu
    var = (c**2).mean()
    return {
        "max_abs": a.abs().max().item(),
        "mean": mu.item(),
        "std_pop": var.sqrt().item(),
        "excess_kurtosis": ((c**4).mean() / var**2 - 3).item(),
        "numel": a.numel(),
    }


def adamw_groups(model, wd):
    ps = named_params(model)
    decay = [p for n, p in ps if p.dim() >= 2]
    nodecay = [p for n, p in ps if p.dim() < 2]
    return [{"params": decay, "weight_decay": wd}, {"params": nodecay, "weight_decay": 0.0}], ps


def one_step(cfg: Cfg, sd, idx, targets, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, wd=0.1):
    """Everything of a one-step case from weights `sd` and a batch."""
    out = {}
    model = GPT(cfg).eval()
    load_params(model, sd)
    logits, loss = model(idx, targets)
    loss.backward()
    out["logits"], out["loss"] = logits.detach(), loss.detach()
    out["residual_embed_input"] = res_stats(model.residuals[0])
    out["residual_after_block"] = [dict(layer=l, **res_stats(r)) for l, r in enumerate(model.residuals[1:])]
    if cfg.attention in ("quiet", "sink", "clipped", "relu", "sigmoid", "softpick"):
        nm = []
        for l, blk in enumerate(model.transformer.h):
            null = 1.0 - blk.attn.last_probs.double().sum(-1)
            nm.append({"layer": l, "mean": null.mean().item(), "min": null.min().item(), "max": null.max().item()})
        out["null_attention_mass"] = nm
    ps = named_params(model)
    out["grads"] = {n: p.grad.detach().clone() for n, p in ps}

    # the two parts of the tied gradient: the same forward with lm_head untied
    m2 = GPT(cfg).eval()
    load_params(m2, sd)
    w_head = sd["transformer.wte.weight"].clone().float().requires_grad_(True)
    _, l2 = m2(idx, targets, lm_head_weight=w_head)
    l2.backward()
    out["tied"] = {"wte_as_embedding": m2.transformer.wte.weight.grad.detach().clone(), "wte_as_lm_head": w_head.grad.detach().clone()}

    # clip + AdamW, nanoGPT groups
    norm = torch.nn.utils.clip_grad_norm_([p for _, p in ps], 1.0)
    groups, _ = adamw_groups(model, wd)
    opt = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
    opt.step()
    out["after"] = {n: p.detach().clone() for n, p in ps}
    out["state"] = {}
    for n, p in ps:
        out["state"][f"exp_avg.{n}"] = opt.state[p]["exp_avg"].clone()
        out["state"][f"exp_avg_sq.{n}"] = opt.state[p]["exp_avg_sq"].clone()
    out["norm"] = norm.item()
    out["decay_params"] = [n for n, p in ps if p.dim() >= 2]
    out["nodecay_params"] = [n for n, p in ps if p.dim() < 2]

    # float64
    m64 = GPT(cfg).double().eval()
    load_params(m64, {k: v.double() for k, v in sd.items()})
    lg64, ls64 = m64(idx, targets)
    ls64.backward()
    out["ref64"] = {"logits": lg64.detach(), "loss": ls64.detach()}
    for n, p in named_params(m64):
        out["ref64"][f"grad.{n}"] = p.grad.detach().clone()

    # the manual attention path vs SDPA (the softmax-normalised variants)
    if cfg.attention in ("softmax", "gated", "outgate"):
        mm = GPT(Cfg(**{**asdict(cfg), "manual": True})).eval()
        load_params(mm, sd)
        lgm, lsm = mm(idx, targets)
        lsm.backward()
        out["manual_vs_sdpa"] = {
            "manual_vs_sdpa_max_abs_logits": (lgm - logits).abs().max().item(),
            "manual_vs_sdpa_abs_loss": (lsm - loss).abs().item(),
            "manual_vs_sdpa_max_abs_grad": max((p.grad - out["grads"][n]).abs().max().item() for n, p in named_params(mm)),
        }
    else:
        out["manual_vs_sdpa"] = None
    return out


def write_one_step(case_dir: Path, name, cfg, sd, idx, targets, meta):
    case_dir.mkdir(parents=True, exist_ok=True)
    r = one_step(cfg, sd, idx, targets)
    md = {"case": name, "tied": TIED}
    order = quiet_order(cfg)
    save_file({n: sd[n].contiguous() for n in order}, case_dir / "model.safetensors", md)
    save_file({"idx": idx, "targets": targets, "logits": r["logits"].contiguous(), "loss": r["loss"].reshape(())}, case_dir / "batch.safetensors", md)
    save_file({n: r["grads"][n].contiguous() for n in order}, case_dir / "grads.safetensors", md)
    save_file({n: r["after"][n].contiguous() for n in order}, case_dir / "after_adamw.safetensors", md)
    save_file({k: v.contiguous() for k, v in r["state"].items()}, case_dir / "adamw_state.safetensors", md)
    save_file({k: v.contiguous() for k, v in r["tied"].items()}, case_dir / "grads_tied_parts.safetensors", md)
    save_file({k: v.contiguous().reshape(v.shape) for k, v in r["ref64"].items()}, case_dir / "reference_f64.safetensors", md)
    g64 = r["ref64"]
    stats = {
        "case": name,
        "config": cfg_json(cfg),
        **meta,
        "loss": r["loss"].item(),
        "residual_after_block": r["residual_after_block"],
        "residual_embed_input": r["residual_embed_input"],
        "stats_conventions": "float64 over all B*T*C elements of the float32 residual stream x (block output, before ln_f); population moments; excess_kurtosis = E[(x-mu)^4]/sigma^4 - 3",
        "quiet_null_attention_mass": r.get("null_attention_mass") if cfg.attention == "quiet" else None,
        "null_attention_mass": r.get("null_attention_mass"),
        "grad_clip": {"max_norm": 1.0, "total_norm_preclip": r["norm"], "clip_coef_applied": min(1.0, 1.0 / (r["norm"] + 1e-6)), "clipping_active": r["norm"] > 1.0},
        "adamw": {
            "lr": 1e-3,
            "betas": [0.9, 0.95],
            "eps": 1e-8,
            "weight_decay": 0.1,
            "decay_params": [n for n in order if n in r["decay_params"]],
            "nodecay_params": [n for n in order if n in r["nodecay_params"]],
            "torch_impl": "torch.optim.AdamW, foreach/fused = None/None",
        },
        "param_order": order,
        "param_shapes": {n: list(sd[n].shape) for n in order},
        "num_params": sum(sd[n].numel() for n in order),
        "f32_vs_f64": {
            "logits_max_abs": (r["logits"].double() - g64["logits"]).abs().max().item(),
            "loss_abs": abs(r["loss"].item() - g64["loss"].item()),
            "grads_max_abs": max((r["grads"][n].double() - g64[f"grad.{n}"]).abs().max().item() for n in order),
            "grads_max_rel_to_tensor_max": max(
                (r["grads"][n].double() - g64[f"grad.{n}"]).abs().max().item() / max(g64[f"grad.{n}"].abs().max().item(), 1e-30) for n in order
            ),
        },
        "manual_vs_sdpa": r["manual_vs_sdpa"],
        "tied_grad_split_max_abs_err": (r["tied"]["wte_as_embedding"] + r["tied"]["wte_as_lm_head"] - r["grads"]["transformer.wte.weight"]).abs().max().item(),
        "torch_version": torch.__version__,
        "generator": "scripts/make_golden.py",
    }
    (case_dir / "stats.json").write_text(json.dumps(stats, indent=1))
    return stats


def base_weights(cfg: Cfg, model_seed, perturbed, perturb_seed, variant_seed):
    torch.manual_seed(model_seed)
    model = GPT(cfg)
    model.init_variant(variant_seed)
    if perturbed:
        perturb(model, cfg, perturb_seed)
    return {n: p.detach().clone() for n, p in named_params(model)}


# clipped: with the default alpha = 12 at block_size 16, gamma = -0.75 would zero every weight below 3/7,
# i.e. nearly all of them; these exact binary fractions keep most weights alive and exercise both clips.
CLIP_CASE = dict(clip_zeta=1.125, clip_alpha=1.5)


def make_one_step(out: Path, name):
    base = name.replace("_perturbed", "")
    variant = base.split("_")[-1]
    perturbed = name.endswith("_perturbed")
    cfg = Cfg(attention=variant, quiet_form="surftmex")
    if variant == "clipped":
        cfg = Cfg(attention=variant, **CLIP_CASE)
    model_seed, batch_seed, perturb_seed, variant_seed = 1234, 1235, 1236, 1237
    sd = base_weights(cfg, model_seed, perturbed, perturb_seed, variant_seed)
    data, V = shakespeare_train_tokens()
    assert V == cfg.vocab_size
    idx, targets = get_batch(data, 3, 16, torch.Generator().manual_seed(batch_seed))
    meta = {
        "batch": {"B": 3, "T": 16, "data": "shakespeare", "batch_seed": batch_seed},
        "model_seed": model_seed,
        "perturbed": perturbed,
        "perturb_seed": perturb_seed if perturbed else None,
        "variant_init_seed": variant_seed,
    }
    st = write_one_step(out / name, name, cfg, sd, idx, targets, meta)
    print(f"{name}: loss {st['loss']:.6f}, grad norm {st['grad_clip']['total_norm_preclip']:.4f}, f32 vs f64 grads {st['f32_vs_f64']['grads_max_abs']:.1e}")


# ----------------------------------------------------------------------------------------------------------
# trajectories


def get_lr(it, s):
    """nanoGPT train.py get_lr."""
    lr, min_lr, warm, decay = s["learning_rate"], s["min_lr"], s["warmup_iters"], s["lr_decay_iters"]
    if not s.get("decay_lr", True):
        return lr
    if it < warm:
        return lr * (it + 1) / (warm + 1)
    if it > decay:
        return min_lr
    ratio = (it - warm) / (decay - warm)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
    return min_lr + coeff * (lr - min_lr)


ADAMW = dict(betas=[0.9, 0.95], eps=1e-8, weight_decay=0.1)


def run_traj(cfg, sd, idx, targets, sched, dtype, adamw=ADAMW, sgd=None, clip=1.0):
    """S iterations of nanoGPT's loop; the optimizer is torch.optim.AdamW (`adamw`: betas, eps,
    weight_decay) or, with `sgd` (momentum, weight_decay), torch.optim.SGD (dampening 0, no Nesterov),
    both with nanoGPT's groups. clip = 0: no clipping (the norm is still measured)."""
    model = GPT(cfg).to(dtype).eval()
    load_params(model, {k: v.to(dtype) for k, v in sd.items()})
    if sgd is None:
        groups, ps = adamw_groups(model, adamw["weight_decay"])
        opt = torch.optim.AdamW(groups, lr=sched["learning_rate"], betas=tuple(adamw["betas"]), eps=adamw["eps"])
        state_keys = ["exp_avg", "exp_avg_sq"]
    else:
        groups, ps = adamw_groups(model, sgd["weight_decay"])
        opt = torch.optim.SGD(groups, lr=sched["learning_rate"], momentum=sgd["momentum"], dampening=0, nesterov=False)
        state_keys = ["momentum_buffer"]
    S, A = idx.shape[0], idx.shape[1]
    losses, norms, lrs = [], [], []
    for it in range(S):
        lr = get_lr(it, sched)
        for g in opt.param_groups:
            g["lr"] = lr
        tot = 0.0
        for a in range(A):
            _, loss = model(idx[it, a], targets[it, a])
            tot += loss.item()
            (loss / A).backward()
        norm = torch.nn.utils.clip_grad_norm_([p for _, p in ps], clip if clip > 0 else float("inf"))
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(tot / A)
        norms.append(norm.item())
        lrs.append(lr)
    params = {n: p.detach().clone() for n, p in ps}
    state = {}
    for n, p in ps:
        for k in state_keys:
            state[f"{k}.{n}"] = opt.state[p][k].clone()
    return losses, norms, lrs, params, state


TRAJ = dict(B=4, T=16, A=2, S=20, model_seed=2024, data_seed=2025, sched=dict(learning_rate=0.01, min_lr=0.001, warmup_iters=5, lr_decay_iters=20, decay_lr=True))
# No softpick trajectory: its float32 runs are rounding-dominated. Query 0's weight p_00 = d / (|d| + eps),
# d = e^{s_00} - 1, is a step of width eps = 1e-8, and the backward amplifies rounding by w = e^s / N, up to
# ~1/|d| where a row's sum N of |e^s - 1| is small. From nanoGPT's init (scores ~1e-2), PyTorch's own
# float32 and float64 runs differ by 1.1e-3 in loss and 2.8e-3 in the parameters after 20 steps, and two
# float64 implementations (PyTorch's, quietgpt's) by 1e-9 in loss, 5% in grad norm; from the `_perturbed`
# weights (scores of order 1) float32 still moves the parameters by 9e-5, against the tests' 1e-4. Either
# way a float32 comparison would test rounding. (quietgpt's f64 engine follows PyTorch's float64 run from
# the perturbed weights to 2.5e-14 in loss over the 20 steps.)
TRAJ_VARIANTS = [v for v in VARIANTS if v != "softpick"]


def traj_batches(data, S, A, B, T, seed):
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for _ in range(S * A):
        x, y = get_batch(data, B, T, g)
        xs.append(x)
        ys.append(y)
    return torch.stack(xs).view(S, A, B, T), torch.stack(ys).view(S, A, B, T)


# The model options beside nanoGPT's, as quietgpt's configs/bb-guo.toml uses them (ReLU MLP, untied lm_head,
# PyTorch's default init, no biases), with the two optimizers: SGD with momentum, weight decay and an active
# clip under warmup + cosine; AdamW with Guo et al.'s betas (0.9, 0.99), a constant lr and no clipping.
OPTS_MODEL = dict(bias=False, activation="relu", tie_weights=False, init="pytorch")
OPTS = {
    "traj_opts_relu_untied_sgd": dict(
        sgd=dict(momentum=0.9, weight_decay=0.1),
        clip=0.7,  # its grad norms are 0.58..0.92: about half the steps are clipped
        sched=dict(learning_rate=0.1, min_lr=0.01, warmup_iters=5, lr_decay_iters=20, decay_lr=True),
    ),
    "traj_opts_relu_untied_adamw": dict(
        adamw=dict(betas=[0.9, 0.99], eps=1e-8, weight_decay=0.1),
        clip=0.0,
        sched=dict(learning_rate=0.001, min_lr=0.001, warmup_iters=0, lr_decay_iters=20, decay_lr=False),
    ),
}
GROUPS = "decay on tensors of 2+ dims (nanoGPT configure_optimizers)"


def traj_spec(name):
    """(cfg, optimizer settings) of a trajectory case."""
    if name in OPTS:
        o = OPTS[name]
        spec = dict(adamw=o.get("adamw", ADAMW), sgd=o.get("sgd"), clip=o["clip"], sched=o["sched"])
        return Cfg(quiet_form="stable", **OPTS_MODEL), spec
    variant = name.split("_")[-1]
    cfg = Cfg(attention=variant, quiet_form="stable", **(CLIP_CASE if variant == "clipped" else {}))
    return cfg, dict(adamw=ADAMW, sgd=None, clip=1.0, sched=TRAJ["sched"])


def traj_spec_json(tj):
    """The optimizer settings of a stored trajectory.json (older ones: AdamW, clip 1)."""
    sgd = tj.get("sgd")
    adamw = {k: tj["adamw"][k] for k in ("betas", "eps", "weight_decay")} if "adamw" in tj else ADAMW
    return dict(adamw=adamw, sgd=sgd and {k: sgd[k] for k in ("momentum", "weight_decay")}, clip=tj.get("grad_clip", 1.0), sched=tj["schedule"])


def state_file(spec):
    return "adamw_state.safetensors" if spec["sgd"] is None else "sgd_state.safetensors"


def make_traj(out: Path, name):
    cfg, spec = traj_spec(name)
    P = TRAJ
    torch.manual_seed(P["model_seed"])
    model = GPT(cfg)
    model.init_variant(P["model_seed"] + 1)
    sd = {n: p.detach().clone() for n, p in named_params(model)}
    data, _ = shakespeare_train_tokens()
    idx, targets = traj_batches(data, P["S"], P["A"], P["B"], P["T"], P["data_seed"])
    opt = dict(adamw=spec["adamw"], sgd=spec["sgd"], clip=spec["clip"])
    l32, n32, lrs, p32, s32 = run_traj(cfg, sd, idx, targets, spec["sched"], torch.float32, **opt)
    l64, n64, _, p64, _ = run_traj(cfg, sd, idx, targets, spec["sched"], torch.float64, **opt)
    order = quiet_order(cfg)
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    md = {"case": name, "tied": TIED if cfg.tie_weights else "lm_head.weight is its own tensor (untied)"}
    save_file({n: sd[n].contiguous() for n in order}, d / "model.safetensors", md)
    save_file({"idx": idx.contiguous(), "targets": targets.contiguous()}, d / "batches.safetensors", md)
    save_file({n: p32[n].contiguous() for n in order}, d / "after_steps.safetensors", md)
    save_file({k: v.contiguous() for k, v in s32.items()}, d / state_file(spec), md)
    if spec["sgd"] is None:
        optimizer = {"adamw": {**spec["adamw"], "groups": GROUPS}}
    else:
        optimizer = {"sgd": {**spec["sgd"], "dampening": 0.0, "nesterov": False, "groups": GROUPS}}
    per = [abs(a - b) for a, b in zip(l32, l64)]
    j = {
        "case": name,
        "config": cfg_json(cfg),
        "micro_batch": P["B"],
        "seq_len": P["T"],
        "gradient_accumulation_steps": P["A"],
        "steps": P["S"],
        "model_seed": P["model_seed"],
        "variant_init_seed": P["model_seed"] + 1,
        "data_seed": P["data_seed"],
        "schedule": spec["sched"],
        **optimizer,
        "grad_clip": spec["clip"],
        "clipped_steps": sum(n > spec["clip"] for n in n32) if spec["clip"] > 0 else 0,
        "losses": l32,
        "grad_norms_before_clip": n32,
        "lrs": lrs,
        "losses_f64": l64,
        "grad_norms_before_clip_f64": n64,
        "f32_vs_f64": {
            "max_loss_abs": max(per),
            "loss_abs_per_step": per,
            "params_after_max_abs": max((p32[n].double() - p64[n]).abs().max().item() for n in order),
        },
        "param_order": order,
        "torch": torch.__version__,
        "generator": "scripts/make_golden.py",
    }
    (d / "trajectory.json").write_text(json.dumps(j, indent=1))
    print(f"{name}: losses {l32[0]:.4f} -> {l32[-1]:.4f}, f32 vs f64 max loss {max(per):.1e}, grad norms {min(n32):.3f}..{max(n32):.3f}")


# ----------------------------------------------------------------------------------------------------------
# --check: recompute a stored case from its own model and batch


def maxdiff(a, b):
    a, b = a.double(), b.double()
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.numel() == 0:
        return 0.0
    nan = torch.isnan(a) | torch.isnan(b)
    if nan.any():
        return float("nan")
    return (a - b).abs().max().item()


def cmp_file(path: Path, ours: dict, report, prefix=""):
    stored = load_file(path)
    keys = sorted(stored)
    missing = [k for k in keys if prefix + k not in ours]
    assert not missing, f"{path.name}: no recomputed value for {missing}"
    worst, bitwise = 0.0, True
    for k in keys:
        d = maxdiff(ours[prefix + k].reshape(stored[k].shape), stored[k])
        bitwise &= torch.equal(ours[prefix + k].reshape(stored[k].shape).to(stored[k].dtype), stored[k])
        worst = max(worst, d)
    report.append((path.name, worst, bitwise, len(keys)))


def check_one_step(d: Path):
    st = json.loads((d / "stats.json").read_text())
    cfg = cfg_from_json(st["config"], traj=False)
    sd = load_file(d / "model.safetensors")
    b = load_file(d / "batch.safetensors")
    r = one_step(cfg, sd, b["idx"], b["targets"])
    rep = []
    cmp_file(d / "batch.safetensors", {"idx": b["idx"], "targets": b["targets"], "logits": r["logits"], "loss": r["loss"]}, rep)
    cmp_file(d / "grads.safetensors", r["grads"], rep)
    cmp_file(d / "after_adamw.safetensors", r["after"], rep)
    cmp_file(d / "adamw_state.safetensors", r["state"], rep)
    cmp_file(d / "grads_tied_parts.safetensors", r["tied"], rep)
    cmp_file(d / "reference_f64.safetensors", r["ref64"], rep)
    js = []
    js.append(("grad norm", abs(r["norm"] - st["grad_clip"]["total_norm_preclip"])))
    for l, (a, b_) in enumerate(zip(r["residual_after_block"], st["residual_after_block"])):
        js.append((f"residual_after_block[{l}] (max over fields)", max(abs(a[k] - b_[k]) for k in ("max_abs", "mean", "std_pop", "excess_kurtosis"))))
    a, b_ = r["residual_embed_input"], st["residual_embed_input"]
    js.append(("residual_embed_input", max(abs(a[k] - b_[k]) for k in ("max_abs", "mean", "std_pop", "excess_kurtosis"))))
    nm = st.get("quiet_null_attention_mass") or st.get("null_attention_mass")
    if nm:
        js.append(("null attention mass", max(abs(a[k] - b_[k]) for a, b_ in zip(r["null_attention_mass"], nm) for k in ("mean", "min", "max"))))
    return rep, js


def check_traj(d: Path):
    tj = json.loads((d / "trajectory.json").read_text())
    cfg = cfg_from_json(tj["config"], traj=True)
    sd = load_file(d / "model.safetensors")
    b = load_file(d / "batches.safetensors")
    spec = traj_spec_json(tj)
    opt = dict(adamw=spec["adamw"], sgd=spec["sgd"], clip=spec["clip"])
    l32, n32, lrs, p32, s32 = run_traj(cfg, sd, b["idx"], b["targets"], spec["sched"], torch.float32, **opt)
    l64, _, _, _, _ = run_traj(cfg, sd, b["idx"], b["targets"], spec["sched"], torch.float64, **opt)
    rep = []
    cmp_file(d / "after_steps.safetensors", p32, rep)
    cmp_file(d / state_file(spec), s32, rep)
    js = [
        ("losses (f32)", max(abs(a - b_) for a, b_ in zip(l32, tj["losses"]))),
        ("grad_norms_before_clip", max(abs(a - b_) for a, b_ in zip(n32, tj["grad_norms_before_clip"]))),
        ("lrs (bitwise: 0)", max(abs(a - b_) for a, b_ in zip(lrs, tj["lrs"]))),
        ("losses_f64", max(abs(a - b_) for a, b_ in zip(l64, tj["losses_f64"]))),
    ]
    return rep, js


def check(d: Path):
    setup_torch()
    traj = (d / "trajectory.json").exists()
    rep, js = check_traj(d) if traj else check_one_step(d)
    print(f"== {d.name} ({'trajectory' if traj else 'one step'})")
    for name, worst, bitwise, n in rep:
        print(f"  {name:32s} {n:3d} tensors  max abs diff {worst:.3e}{'  (bitwise equal)' if bitwise else ''}")
    for name, v in js:
        print(f"  {name:44s} abs diff {v:.3e}")
    return rep, js


# ----------------------------------------------------------------------------------------------------------


def all_cases():
    one = []
    for v in VARIANTS:
        one += [f"small_bias_{v}", f"small_bias_{v}_perturbed"]
    return one + [f"traj_small_bias_{v}" for v in TRAJ_VARIANTS] + list(OPTS)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="write cases into this folder")
    ap.add_argument("--cases", nargs="*", help=f"which cases (default all: {' '.join(all_cases())})")
    ap.add_argument("--check", type=Path, nargs="*", help="case folders to recompute and compare")
    a = ap.parse_args()
    setup_torch()
    if a.check:
        for d in a.check:
            check(d)
        return
    if not a.out:
        ap.error("--out or --check")
    for name in a.cases or all_cases():
        if name.startswith("traj_"):
            make_traj(a.out, name)
        elif name.startswith("small_bias_"):
            make_one_step(a.out, name)
        else:
            sys.exit(f"unknown case {name}")


if __name__ == "__main__":
    main()
