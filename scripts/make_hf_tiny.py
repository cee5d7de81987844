"""Tiny random GPT-2 checkpoints in exactly the layout `GPT2LMHeadModel.save_pretrained` writes, with
transformers' logits for fixed inputs, for tests/hf.rs (no network needed to run the tests).

    pip install -r scripts/requirements-hf.txt
    python scripts/make_hf_tiny.py            # writes tests/hf/ (or: ... tiny-gpt2-relu-untied, one model)

Three models: `tiny-gpt2` (2 layers, 2 heads, n_embd 32, n_positions 32, vocab 96, gelu_new = tanh GELU,
GPT-2's own), `tiny-gpt2-erf` (1 layer, activation_function "gelu", exact erf GELU) and
`tiny-gpt2-relu-untied` (1 layer, activation_function "relu", tie_word_embeddings false: an lm_head.weight
of its own). Every tensor,
LayerNorm and biases included, is random (GPT-2's init leaves biases 0 and LayerNorm weights 1, which
would not test their mapping), scaled so that the logits are far from uniform.
"""
import json
import os

import torch
from transformers import GPT2Config, GPT2LMHeadModel

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "hf")


def make(name, n_layer, activation, seed, tie=True):
    torch.manual_seed(seed)
    cfg = GPT2Config(
        n_layer=n_layer, n_head=2, n_embd=32, n_positions=32, vocab_size=96,
        activation_function=activation, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=tie,
    )
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("ln_1.weight") or n.endswith("ln_2.weight") or n.endswith("ln_f.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif n.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    d = os.path.join(OUT, name)
    model.save_pretrained(d, safe_serialization=True)
    g = torch.Generator().manual_seed(seed + 1)
    idx = torch.randint(0, cfg.vocab_size, (2, 24), generator=g)
    with torch.no_grad():
        logits = model(idx).logits
    with open(os.path.join(OUT, name + "-logits.json"), "w") as f:
        json.dump({
            "transformers": __import__("transformers").__version__,
            "torch": torch.__version__,
            "idx": idx.tolist(),
            "shape": list(logits.shape),
            "logits": [round(float(x), 7) for x in logits.flatten()],
        }, f)
        f.write("\n")
    print(name, "max |logit|", float(logits.abs().max()))


if __name__ == "__main__":
    import sys
    which = sys.argv[1:]  # model names (default: all)
    for args in [("tiny-gpt2", 2, "gelu_new", 0), ("tiny-gpt2-erf", 1, "gelu", 1), ("tiny-gpt2-relu-untied", 1, "relu", 2, False)]:
        if not which or args[0] in which:
            make(*args)
