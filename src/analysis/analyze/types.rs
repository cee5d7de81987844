//! What `analyze` reports: plain, serialisable data (the JSON of `quietgpt analyze --json`).

use crate::config::ModelConfig;
use serde::{Deserialize, Serialize};

/// Statistics of one activation tensor over the whole evaluation set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivationStats {
    /// Finite elements (B·T·C over all windows).
    pub numel: u64,
    pub mean: f64,
    /// Population standard deviation.
    pub std_pop: f64,
    /// max |x|
    pub max_abs: f64,
    /// E[(x−μ)⁴]/σ⁴ − 3; null when σ = 0.
    pub excess_kurtosis: Option<f64>,
    /// E[(x−μ)⁴]/σ⁴ (raw, Bondarenko et al.); null when σ = 0.
    pub kurtosis: Option<f64>,
    /// Count of |x| > 6 (LLM.int8()).
    pub outliers: u64,
    pub outlier_fraction: f64,
    /// NaN / inf elements (left out of everything else).
    pub nonfinite: u64,
    /// The channels with the largest |x|, largest first.
    pub top_channels: Vec<ChannelNorm>,
    /// max |x| of every channel (length C, or 4C for the MLP hidden).
    pub channel_inf_norm: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelNorm {
    pub channel: usize,
    pub max_abs: f32,
}

/// The activations of one block, in forward order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerStats {
    pub layer: usize,
    pub ln_1: ActivationStats,
    /// Attention output after c_proj, before the residual add.
    pub attn_out: ActivationStats,
    pub ln_2: ActivationStats,
    /// MLP hidden after GELU (4C channels).
    pub mlp_hidden: ActivationStats,
    /// MLP output after c_proj, before the residual add.
    pub mlp_out: ActivationStats,
    /// Residual stream after the block.
    pub residual: ActivationStats,
    /// The first position's norm against the others', on the residual stream after the block (the same
    /// tensor as `residual`: x + attn + mlp, the next block's input; before ln_f for the last block).
    #[serde(default)]
    pub first_norm: FirstNorm,
    /// The largest |x| of the residual stream after the block, where they are, and the median |x|.
    #[serde(default)]
    pub massive: Massive,
    pub heads: Vec<HeadStats>,
}

/// ‖x_0‖₂ (L2 over channels at position 0 of each window; the BOS token when the data has one) against
/// ‖x_t‖₂ of the positions t ≥ 1, over all windows (Guo et al. 2024 report first − mean of the others).
/// Null where there is nothing to compare (T = 1, no finite norm).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FirstNorm {
    /// Mean over windows of ‖x_0‖.
    pub first: Option<f64>,
    /// Mean and median of ‖x_t‖ over every window and position t ≥ 1.
    pub others_mean: Option<f64>,
    pub others_median: Option<f64>,
    /// first / others_mean, first / others_median
    pub ratio_mean: Option<f64>,
    pub ratio_median: Option<f64>,
    /// first − others_mean, first − others_median
    pub diff_mean: Option<f64>,
    pub diff_median: Option<f64>,
}

/// Sun et al.'s massive activations: the largest |x| of a tensor against its median |x|.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Massive {
    /// Median of |x| over every element (all windows, positions and channels).
    pub median_abs: Option<f64>,
    /// The 3 largest |x| (largest first; ties: the first in window, position, channel order).
    pub top: Vec<MassiveValue>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MassiveValue {
    /// x itself (with its sign).
    pub value: f32,
    /// |x| / median_abs
    pub ratio_to_median: Option<f64>,
    /// Index of the window in the evaluation set (0 = the first), position within the window, channel.
    pub window: usize,
    pub position: usize,
    pub channel: usize,
}

/// One attention head over all windows. p_ij = attention of query i on key j (j ≤ i).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadStats {
    pub head: usize,
    /// Mean over rows (every window and query i) of 1 − Σ_j p_ij: > 0 for quiet attention, p_sink for
    /// the learned sink, the clipped-away mass for clipped softmax, anything ≤ 1 for relu and sigmoid
    /// (rows not normalised), in [0, 1] for softpick, 0 up to rounding (~1e-7) for softmax and the gated
    /// variants.
    pub null_mass_mean: f64,
    pub null_mass_min: f64,
    pub null_mass_max: f64,
    /// Mean of p_i0 over windows and queries i = 1..T−1. Query 0 is left out: it sees only token 0,
    /// so p_00 is 1 under softmax whatever the head does. Null when T = 1.
    pub sink: Option<f64>,
    /// sink > SINK_THRESHOLD
    pub is_sink: bool,
    /// Mean gate value σ(z) of the head over tokens (and over its channels for `outgate`); null for the
    /// variants without a gate.
    #[serde(default)]
    pub gate_mean: Option<f64>,
    /// Mean over windows and queries i ≥ 1 of s_i0 − mean_{1≤j≤i} s_ij, s_ij = q_i·k_j/√hs the scaled
    /// score before the row normaliser: how much more the head's logits favour the first position.
    #[serde(default)]
    pub logit_gap: Option<f64>,
    /// Value drain: ‖W_O^h v_0^h‖₂, the first position's value through head h's slice of c_proj (no
    /// bias, no gate), mean over windows; and the mean over windows and positions t ≥ 1 of ‖W_O^h v_t^h‖₂.
    #[serde(default)]
    pub drain_first: Option<f64>,
    #[serde(default)]
    pub drain_others: Option<f64>,
    /// drain_first / drain_others (< 1: the first position's value is drained).
    #[serde(default)]
    pub drain_ratio: Option<f64>,
}

/// Statistics of one parameter tensor (nanoGPT name; a tied lm_head is wte and not repeated, an untied
/// one is `lm_head.weight`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightStats {
    pub name: String,
    pub shape: Vec<usize>,
    pub numel: u64,
    pub mean: f64,
    pub std_pop: f64,
    pub max_abs: f64,
    pub excess_kurtosis: Option<f64>,
    pub kurtosis: Option<f64>,
    /// Count of |w − μ| > 6σ (μ, σ of this tensor).
    pub beyond_6_sigma: u64,
    pub nonfinite: u64,
}

/// Attention over all layers and heads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionSummary {
    /// Mean of the heads' null_mass_mean.
    pub null_mass_mean: f64,
    /// Heads with is_sink, and all heads.
    pub sink_heads: usize,
    pub heads: usize,
    /// sink_heads / heads.
    pub sink_head_fraction: f64,
    /// Mean of the heads' gate_mean (gated variants only).
    #[serde(default)]
    pub gate_mean: Option<f64>,
}

/// The thresholds used, so that the JSON explains itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub activation_abs: f64,
    pub weight_sigmas: f64,
    pub sink: f64,
}

/// The whole report; `serde_json` for machines, `table()` for people.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub model: ModelConfig,
    /// Evaluation set: `windows` sequences of `block` tokens from the `split` split.
    pub split: String,
    pub windows: usize,
    pub block: usize,
    /// Mean cross-entropy over the evaluated tokens (null without targets or if not finite).
    pub loss: Option<f64>,
    pub thresholds: Thresholds,
    /// wte[idx] + wpe, the input of block 0.
    pub embedding: ActivationStats,
    pub layers: Vec<LayerStats>,
    /// ln_f output.
    pub ln_f: ActivationStats,
    pub attention: AttentionSummary,
    pub weights: Vec<WeightStats>,
    /// The backcopy task's loss on copy positions and on bigram positions of the evaluated windows
    /// (`data::TaskLoss`); null for text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bigram_loss: Option<f64>,
}
