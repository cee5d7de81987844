//! The attention variant (`AttentionKind`).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// The attention variant: how each attention row is normalised, or what gates the attention output.
/// One enum; the kernels read it at one call site each (`Variant::rule` in `engine::cpu::attention`,
/// read by the reference and the fused kernel's row normalisers, and the gate around the attention core
/// in `engine::cpu::attention_gate`).
///
/// Sources: softmax1 (Evan Miller, "Attention Is Off By One", 2023); clipped softmax and gated attention
/// (Bondarenko, Nagel & Blankevoort, "Quantizable Transformers: Removing Outliers by Helping Attention
/// Heads Do Nothing", NeurIPS 2023); the output gate (Qiu et al., "Gated Attention for Large Language
/// Models: Non-linearity, Sparsity, and Attention-Sink-Free", 2025); the learned sink logit (OpenAI
/// gpt-oss, 2025); ReLU attention (Guo et al., "Active-Dormant Attention Heads: Mechanistically
/// Demystifying Extreme-Token Phenomena in LLMs", arXiv 2410.13835, 2024); sigmoid attention without
/// normalisation (Gu et al., "When Attention Sink Emerges in Language Models: An Empirical View", ICLR
/// 2025); softpick (Zuhri et al., "Softpick: No Attention Sink, No Massive Activations with Rectified
/// Softmax", 2025). The formulas, their backward and their stable forms: `engine::cpu::attention` and
/// `engine::cpu::attention_rows`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttentionKind {
    /// p_j = exp(s_j) / Σ_k exp(s_k)
    Softmax,
    /// softmax1 ("quiet attention"): p_j = exp(s_j) / (1 + Σ_k exp(s_k)), a head may attend to nothing.
    Quiet,
    /// clipped softmax: p_j = clip((ζ − γ)·softmax(s)_j + γ, 0, 1), γ = −α/T (`clip_zeta`, `clip_alpha`,
    /// T = block_size): weights below −γ/(ζ−γ) become exact zeros.
    Clipped,
    /// softmax attention whose output of head h at token t is scaled by sigmoid(ln_1(x)_t · w_h + b_h):
    /// `attn.c_gate` (n_embd → n_head), one gate per head and token.
    Gated,
    /// softmax attention whose concatenated head outputs are multiplied elementwise by
    /// sigmoid(ln_1(x) W_g (+ b_g)) before c_proj: `attn.c_outgate` (n_embd → n_embd).
    Outgate,
    /// learned sink logit: p_j = exp(s_j) / (exp(σ_h) + Σ_k exp(s_k)) with one learned σ_h per head
    /// (`attn.sink`); softmax1 is σ_h = 0 fixed.
    Sink,
    /// ReLU attention: p_ij = max(s_ij, 0) / (i + 1), i the query's 0-based position in the window (i + 1
    /// visible keys), no normalisation by the sum (Guo et al. 2024, their BBM/model.py `attn_use_relu`).
    /// The weights depend on the query's absolute position in the window, not only on the scores.
    Relu,
    /// sigmoid attention: p_ij = sigmoid(s_ij) for each visible key, no normalisation (Gu et al. 2024,
    /// `sim = "sigmoid"`, `attention_normalize = False` in sail-sg/Attention-Sink: no bias added).
    Sigmoid,
    /// softpick: p_j = max(e^{s_j} − 1, 0) / (Σ_k |e^{s_k} − 1| + ε), ε = 1e-8 (Zuhri et al. 2025); a row
    /// whose scores are all ≤ 0 gives all zeros.
    Softpick,
}

impl AttentionKind {
    /// Every variant, once: the one list that tests, the experiment and the error messages walk.
    pub const ALL: [AttentionKind; 9] = [
        AttentionKind::Softmax,
        AttentionKind::Quiet,
        AttentionKind::Clipped,
        AttentionKind::Gated,
        AttentionKind::Outgate,
        AttentionKind::Sink,
        AttentionKind::Relu,
        AttentionKind::Sigmoid,
        AttentionKind::Softpick,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AttentionKind::Softmax => "softmax",
            AttentionKind::Quiet => "quiet",
            AttentionKind::Clipped => "clipped",
            AttentionKind::Gated => "gated",
            AttentionKind::Outgate => "outgate",
            AttentionKind::Sink => "sink",
            AttentionKind::Relu => "relu",
            AttentionKind::Sigmoid => "sigmoid",
            AttentionKind::Softpick => "softpick",
        }
    }

    /// Gate values per token for the gated variants: n_head (`gated`) or n_embd (`outgate`); each gate
    /// multiplies n_embd / groups consecutive channels of the attention output. None for the others.
    pub fn gate_groups(self, n_head: usize, n_embd: usize) -> Option<usize> {
        match self {
            AttentionKind::Gated => Some(n_head),
            AttentionKind::Outgate => Some(n_embd),
            _ => None,
        }
    }

    /// Whether a row's weights may sum to other than 1, so that its null mass 1 − Σ_j p_ij means
    /// something: a null key (quiet, sink), the clip (clipped), or no normalisation to 1 at all (relu and
    /// sigmoid, whose rows may sum to more than 1, and softpick, whose rows sum to at most 1). False for
    /// softmax and the gated variants, whose rows sum to 1.
    pub fn has_null_mass(self) -> bool {
        use AttentionKind::*;
        match self {
            Softmax | Gated | Outgate => false,
            Quiet | Sink | Clipped | Relu | Sigmoid | Softpick => true,
        }
    }
}

impl FromStr for AttentionKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        AttentionKind::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
            let names: Vec<&str> = AttentionKind::ALL.iter().map(|a| a.name()).collect();
            Error::Config(format!("unknown attention '{s}': expected one of {}", names.join(", ")))
        })
    }
}

impl std::fmt::Display for AttentionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
