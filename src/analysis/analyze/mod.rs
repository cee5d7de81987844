//! Outlier analysis of a trained model on a fixed evaluation set: activation statistics per layer and
//! module, weight statistics per tensor, and attention statistics per head (null mass, sink on token 0,
//! and the mean gate of the gated variants).
//!
//! Null mass of a row is 1 − Σ_j p_ij over the weights the model uses (`Gpt::attention_probs`): the
//! null key's weight for quiet, p_sink = exp(σ_h − lse) for the learned sink, the mass the clip removed
//! for clipped softmax (≥ 0 with ζ = 1; it can be negative for ζ > 1), 1 − Σ_j p_ij as it comes for relu,
//! sigmoid and softpick (no normalisation to 1: relu and sigmoid rows can sum to far more than 1, so theirs
//! can be far below 0; softpick's is in [0, 1]), and 0 up to rounding for softmax and the gated variants
//! (whose "doing nothing" shows in the gate instead: `gate_mean`).
//!
//! The evaluation set is deterministic: the first `windows` non-overlapping windows of the val split
//! (`Dataset::window(Split::Val, k, block_size, ..)`, k = 0, 1, ..), run in batches of `batch`
//! without dropout. Every activation statistic is over all B·T·C elements of all windows at once
//! (B·T·4C for the MLP hidden), streamed batch by batch in f64 (see `stats`).
//!
//! Kurtosis. Two numbers are reported, both with population moments over all elements of the tensor:
//!   `kurtosis`        = E[(x−μ)⁴] / σ⁴      (Pearson's, "raw"; 3 for a Gaussian)
//!   `excess_kurtosis` = E[(x−μ)⁴] / σ⁴ − 3  (0 for a Gaussian; golden stats.json uses this one)
//! Bondarenko, Nagel & Blankevoort (2023, "Quantizable Transformers") report "the kurtosis of x", x the
//! output of an attention layer, averaged over layers; their tables (values in the thousands) do not
//! say raw or excess, and at that size the −3 does not matter. `kurtosis` is the raw one, to compare
//! with them; `excess_kurtosis` to compare with stats.json.

//!
//! Sinks and massive activations, per layer: the residual stream's first-position norm against the
//! others' (Guo et al. 2024), its three largest |x| with where they are and their ratio to the median
//! |x| (Sun et al. 2024), and per head the first-position attention (`sink`), the logit gap and the
//! value drain (definitions in `sinks`). All of them read the residual stream *after* each block (the
//! `residual` tensor: x + attn + mlp, the next block's input, before ln_f for the last block).
//!
//! Layout: `types` (the report's data), `recorder` (the probe that accumulates it), `sinks` (the
//! sink and massive-activation accumulators), `table` (the text summary); this file holds the options
//! and the two entry points.

mod recorder;
pub mod sinks;
mod table;
mod types;

pub use recorder::Recorder;
pub use types::*;

use super::windows::Windows;
use crate::data::{Dataset, Split, TaskLoss};
use crate::engine::cpu::Gpt;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// A weight w is an outlier of its tensor when |w − μ| > 6σ.
pub const WEIGHT_OUTLIER_SIGMAS: f64 = 6.0;
/// A head is a "sink" head when its mean attention on token 0 exceeds this.
pub const SINK_THRESHOLD: f64 = 0.3;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalyzeOptions {
    /// How many val windows of block_size tokens (fewer if the split is shorter).
    pub windows: usize,
    /// Windows per forward pass; capped at the model's `max_batch`.
    pub batch: usize,
    /// How many of the largest channels to list per activation.
    pub top_k_channels: usize,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions { windows: 32, batch: 8, top_k_channels: 8 }
    }
}

/// Analysis on the first `opts.windows` val windows of `data` (see the module docs).
pub fn analyze(model: &mut Gpt, data: &Dataset, opts: &AnalyzeOptions) -> Result<Analysis> {
    let t = model.config.block_size;
    let b = check_opts(model, opts)?;
    let mut rec = Recorder::new(&model.config);
    let mut windows = Windows::new(data, Split::Val, t, b, opts.windows);
    rec.task = data.task.clone().map(|bb| (bb, TaskLoss::default()));
    while let Some(w) = windows.next_batch() {
        rec.run(model, w.x, Some(w.y), w.n, t)?;
    }
    if rec.sequences == 0 {
        return Err(Error::Data(format!(
            "the val split has {} tokens, fewer than one window of block_size + 1 = {}",
            data.tokens(Split::Val).len(),
            t + 1
        )));
    }
    rec.finish(model, opts, "val")
}

/// Analysis of one given batch idx (b, t), with optional targets (for the loss). For tests and for
/// inputs that do not come from a `Dataset`.
pub fn analyze_batch(
    model: &mut Gpt,
    idx: &[u32],
    targets: Option<&[u32]>,
    b: usize,
    t: usize,
    opts: &AnalyzeOptions,
) -> Result<Analysis> {
    check_opts(model, opts)?;
    let mut rec = Recorder::new(&model.config);
    rec.run(model, idx, targets, b, t)?;
    rec.finish(model, opts, "given")
}

/// The batch size to use.
fn check_opts(model: &Gpt, opts: &AnalyzeOptions) -> Result<usize> {
    if opts.windows == 0 || opts.batch == 0 {
        return Err(Error::Config("analysis needs at least one window and a batch of at least 1".into()));
    }
    Ok(opts.batch.min(model.max_batch))
}
