//! The attention variant (`AttentionKind`).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// The attention variant: how each attention row is normalised, or what gates the attention output.
/// One enum; the kernels read it at one call site each (`model::attention::normalize`, the fused
/// kernel's row normaliser, and the gate around the attention core in `model::gpt`).
///
/// Sources: softmax1 (Evan Miller, "Attention Is Off By One", 2023); clipped softmax and gated attention
/// (Bondarenko, Nagel & Blankevoort, "Quantizable Transformers: Removing Outliers by Helping Attention
/// Heads Do Nothing", NeurIPS 2023); the output gate (Qiu et al., "Gated Attention for Large Language
/// Models: Non-linearity, Sparsity, and Attention-Sink-Free", 2025); the learned sink logit (OpenAI
/// gpt-oss, 2025).
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
}

impl AttentionKind {
    pub const ALL: [AttentionKind; 6] = [
        AttentionKind::Softmax,
        AttentionKind::Quiet,
        AttentionKind::Clipped,
        AttentionKind::Gated,
        AttentionKind::Outgate,
        AttentionKind::Sink,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AttentionKind::Softmax => "softmax",
            AttentionKind::Quiet => "quiet",
            AttentionKind::Clipped => "clipped",
            AttentionKind::Gated => "gated",
            AttentionKind::Outgate => "outgate",
            AttentionKind::Sink => "sink",
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

    /// Whether rows may sum to less than 1 (a null key, or the clip): quiet, sink and clipped.
    pub fn has_null_mass(self) -> bool {
        matches!(self, AttentionKind::Quiet | AttentionKind::Sink | AttentionKind::Clipped)
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
