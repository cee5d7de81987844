//! The activation and gradient buffers of the CPU engine, allocated once for (max_batch, block_size), and
//! where layer l's slice of each per-layer buffer sits (`Layer`).
//!
//! Some buffers serve two roles whose lives do not overlap; each field's comment says which, and the
//! backward pass binds the second role to a local of its own name (`dlogits`, `datty`, `dfch`, …).

use super::attention::backward_scratch;
use super::real::Real;
use crate::config::ModelConfig;
use crate::engine::profile::Profile;
use std::ops::Range;

crate::buffers! {
    /// Forward activations, sized for (max_batch, block_size); per-layer ones hold L copies. Laid out by
    /// shard (see `shard`): with one shard, (L, B, T, ·) as the comments say. LayerNorm outputs and
    /// gelu(fch) are not kept per layer: backward remakes them (one pass each) from what is, which
    /// saves 6 of 16 (B, T, C) buffers per layer.
    pub(crate) struct Acts {
        encoded: Token,       // (B, T, C)
        ln1_mean: Token,      // (L, B, T)
        ln1_rstd: Token,      // (L, B, T)
        qkv: Token,           // (L, B, T, 3C)
        atty: Token,          // (L, B, T, C) attention core output (before the gate)
        gate: Token,          // (L, B, T, G) gate values σ(z), gated variants only
        attg: Token,          // (L, B, T, C) gated attention output (c_proj input), gated variants only
        att: TokenPair,       // (L, B, NH, T, T) probabilities, only when `store_attention` (reference kernel)
        lse: Token,           // (L, B, NH, T) row log-normalisers of the fused kernel
        residual2: Token,     // (L, B, T, C)
        ln2_mean: Token,      // (L, B, T)
        ln2_rstd: Token,      // (L, B, T)
        fch: Token,           // (L, B, T, 4C) c_fc output; backward overwrites it with gelu'(fch)
        residual3: Token,     // (L, B, T, C)
        lnf: Token,           // (B, T, C)
        lnf_mean: Token,      // (B, T)
        lnf_rstd: Token,      // (B, T)
        logits: Token,        // (B, T, V); backward writes ∂L/∂logits over them
        losses: Token,        // (B, T)
        proj: Token,          // (B, T, C) output of a c_proj before its residual add (not needed in backward)
        ln: Token,            // (B, T, C) the LayerNorm output at hand: made in forward, remade in backward
        hidden: Token,        // (B, T, 4C) gelu(fch): made in forward, remade in backward, where it then
                              // becomes ∂L/∂ gelu output and (in place) ∂L/∂ c_fc output
    }
}

crate::buffers! {
    /// Gradient buffers for one layer at a time, reused across layers.
    pub(crate) struct GradActs {
        dresidual: Token,     // (B, T, C) ∂L/∂ residual stream
        dproj: Token,         // (B, T, C) ∂L/∂ c_proj output (after undoing dropout)
        dln: Token,           // (B, T, C) ∂L/∂ LayerNorm output; before, ∂L/∂ attention c_proj input
        dattc: Token,         // (B, T, C) ∂L/∂ attention core output (gated variants)
        dgate: Token,         // (B, T, G) ∂L/∂ gate logits (gated variants)
        dnull: Seq,           // (B, NH) ∂L/∂ sink logits per sequence (sink)
        dqkv: Token,          // (B, T, 3C)
        datt_row: Token,      // (B, NH, 2T) scratch of the reference attention backward
    }
}

impl<F: Real> Acts<Vec<F>> {
    /// The forward buffers of a model for batches of up to `b` sequences (the attention probabilities
    /// are made on first use, only for the reference kernel).
    pub fn new(config: &ModelConfig, b: usize) -> Self {
        let (l, c, t, v, nh) = (config.n_layer, config.n_embd, config.block_size, config.vocab_size, config.n_head);
        let bt = b * t;
        let g = config.attention.gate_groups(nh, c).unwrap_or(0);
        let z = |n: usize| vec![F::ZERO; n];
        Acts {
            encoded: z(bt * c),
            ln1_mean: z(l * bt),
            ln1_rstd: z(l * bt),
            qkv: z(l * bt * 3 * c),
            atty: z(l * bt * c),
            gate: z(l * bt * g),
            attg: if g > 0 { z(l * bt * c) } else { Vec::new() },
            att: Vec::new(),
            lse: z(l * b * nh * t),
            residual2: z(l * bt * c),
            ln2_mean: z(l * bt),
            ln2_rstd: z(l * bt),
            fch: z(l * bt * 4 * c),
            residual3: z(l * bt * c),
            lnf: z(bt * c),
            lnf_mean: z(bt),
            lnf_rstd: z(bt),
            logits: z(bt * v),
            losses: z(bt),
            proj: z(bt * c),
            ln: z(bt * c),
            hidden: z(bt * 4 * c),
        }
    }
}

impl<F: Real> GradActs<Vec<F>> {
    /// No buffers: an inference-only model never pays for them.
    pub fn none() -> Self {
        let e = Vec::new;
        GradActs { dresidual: e(), dproj: e(), dln: e(), dattc: e(), dgate: e(), dnull: e(), dqkv: e(), datt_row: e() }
    }

    /// Made on the first backward. `dproj` only with dropout (see `ensure_dropout`).
    pub fn ensure(&mut self, config: &ModelConfig, b: usize) {
        if !self.dresidual.is_empty() {
            return;
        }
        let (c, t, nh) = (config.n_embd, config.block_size, config.n_head);
        let bt = b * t;
        let g = config.attention.gate_groups(nh, c).unwrap_or(0);
        let z = |n: usize| vec![F::ZERO; n];
        *self = GradActs {
            dresidual: z(bt * c),
            dproj: Vec::new(),
            dln: z(bt * c),
            dattc: if g > 0 { z(bt * c) } else { Vec::new() },
            dgate: z(bt * g),
            dnull: z(b * nh),
            dqkv: z(bt * 3 * c),
            datt_row: z(backward_scratch(b, t, nh)),
        };
    }

    /// The dropped-out ∂L/∂(c_proj output), needed only when dropout is on.
    pub fn ensure_dropout(&mut self, config: &ModelConfig, b: usize) {
        if self.dproj.is_empty() {
            self.dproj = vec![F::ZERO; b * config.block_size * config.n_embd];
        }
    }
}

/// What each shard has of its own.
#[derive(Default)]
pub(crate) struct ShardState<F> {
    /// ∂loss/∂params of this shard's sequences; zero between backwards. Shard 0 holds the model's `grads`
    /// during a backward instead.
    pub grads: Vec<F>,
    /// LayerNorm's per-block partial parameter gradients.
    pub ln_scratch: Vec<F>,
    /// Per-thread scratch of the fused attention kernel.
    pub attn_scratch: Vec<F>,
    pub profile: Profile,
}

/// Layer l's slice of each per-layer buffer in a shard of b sequences of length t, whose per-layer
/// buffers are laid out (L, b, T, ·): the index arithmetic of both passes, written once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layer {
    pub l: usize,
    n: usize,
    c: usize,
    g: usize,
    heads: usize,
}

impl Layer {
    /// Layer l of a shard of `n` = b·t tokens, width `c`, `g` gates per token, `heads` = b·NH·t rows.
    pub fn new(l: usize, n: usize, c: usize, g: usize, heads: usize) -> Self {
        Layer { l, n, c, g, heads }
    }

    fn span(&self, width: usize) -> Range<usize> {
        self.l * self.n * width..(self.l + 1) * self.n * width
    }

    /// (B, T): LayerNorm means and reciprocal deviations
    pub fn rows(&self) -> Range<usize> {
        self.span(1)
    }

    /// (B, T, C)
    pub fn c(&self) -> Range<usize> {
        self.span(self.c)
    }

    /// (B, T, 3C): q, k, v
    pub fn c3(&self) -> Range<usize> {
        self.span(3 * self.c)
    }

    /// (B, T, 4C): the MLP hidden layer
    pub fn c4(&self) -> Range<usize> {
        self.span(4 * self.c)
    }

    /// (B, T, G): the gates of the gated variants
    pub fn gates(&self) -> Range<usize> {
        self.span(self.g)
    }

    /// (B, NH, T): one value per attention row
    pub fn heads(&self) -> Range<usize> {
        self.l * self.heads..(self.l + 1) * self.heads
    }

    /// (B, NH, T, T): attention probabilities, for rows of length `t`
    pub fn pairs(&self, t: usize) -> Range<usize> {
        self.l * self.heads * t..(self.l + 1) * self.heads * t
    }

    /// The same slices of layer l + 1.
    pub fn next(&self) -> Layer {
        Layer { l: self.l + 1, ..*self }
    }
}
