//! The experiment's records: what each run was made from (`RunSpec`), what it measured (`RunRecord`,
//! stored as its `done.json`), and the values sampled for the report's histograms. Plain data: the
//! runner (`experiment`) fills it, the report (`report`) reads it, and this module depends on neither.

use super::analyze::{Analysis, AnalyzeOptions};
use super::quantize_eval::QuantReport;
use crate::config::{AttentionKind, Config};
use crate::data::{fnv1a, Dataset};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The options that change a run's results besides its config (part of `RunSpec`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    pub analyze: AnalyzeOptions,
    /// Val windows for quantize-eval, 0 = all.
    pub quant_windows: usize,
    pub calib_windows: usize,
    /// Analyse every this many iterations as well (0 = the final model only).
    pub analyze_every: usize,
}

/// What a finished run was made from; a re-run reuses it only if this is unchanged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The run's config with `out_dir`, `data_dir` and `threads` blanked (where the files are and how
    /// many threads ran do not change what is trained; `data` checks the data itself).
    pub config: Config,
    pub data: DataFingerprint,
    pub options: RunOptions,
    /// The arm's own `key=value` overrides (see `experiment::Arm`), as given; none for an arm that is an
    /// attention variant alone (which older records, without the field, were).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
}

/// Identifies the prepared data: sizes and an FNV-1a hash of both splits' token ids.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataFingerprint {
    pub vocab_size: usize,
    pub train_tokens: usize,
    pub val_tokens: usize,
    pub fnv1a: String,
}

impl DataFingerprint {
    /// Of text: its vocabulary (BOS included) and tokens; of the backcopy task: what defines it.
    pub fn of(data: &Dataset) -> Self {
        match &data.task {
            Some(task) => {
                let h = fnv1a(task.describe().bytes());
                DataFingerprint {
                    vocab_size: data.vocab_size(),
                    train_tokens: 0,
                    val_tokens: 0,
                    fnv1a: format!("{h:016x}"),
                }
            }
            None => Self::of_tokens(data.vocab_size(), &data.train, &data.val),
        }
    }

    /// The fingerprint of data not written yet (`data::tokenize`'s result).
    pub fn of_tokens(vocab_size: usize, train: &[u16], val: &[u16]) -> Self {
        let h = fnv1a(train.iter().chain(val).flat_map(|t| t.to_le_bytes()));
        DataFingerprint { vocab_size, train_tokens: train.len(), val_tokens: val.len(), fnv1a: format!("{h:016x}") }
    }
}

/// One evaluation of the trainer (from metrics.jsonl).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    pub iter: usize,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
}

/// One quantization setting's val loss and gap to float32 (null when not finite).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantResult {
    pub name: String,
    pub loss: Option<f64>,
    pub gap: Option<f64>,
}

/// Per-layer numbers of an analysis. The sink fields (absent from records written before them) read
/// the residual stream after the block and the layer's heads; definitions in `analysis::analyze`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    pub max_abs_residual: Option<f64>,
    pub max_abs_attn_out: Option<f64>,
    pub kurtosis_attn_out: Option<f64>,
    pub kurtosis_residual: Option<f64>,
    pub outlier_fraction_residual: Option<f64>,
    /// ‖x_0‖ / mean_{t≥1} ‖x_t‖ and / median, and ‖x_0‖ − mean_{t≥1} ‖x_t‖ (`FirstNorm`).
    #[serde(default)]
    pub first_norm_ratio: Option<f64>,
    #[serde(default)]
    pub first_norm_ratio_median: Option<f64>,
    #[serde(default)]
    pub first_norm_diff: Option<f64>,
    /// The largest |x| (Sun et al.'s top-1 massive activation) and its ratio to the median |x|.
    #[serde(default)]
    pub massive_top1: Option<f64>,
    #[serde(default)]
    pub massive_ratio: Option<f64>,
    /// Mean over the layer's heads of the attention on the first position (queries i ≥ 1), and the
    /// fraction of its heads above `SINK_THRESHOLD` (Gu et al.'s sink metric).
    #[serde(default)]
    pub sink_mean: Option<f64>,
    #[serde(default)]
    pub sink_fraction: Option<f64>,
    /// Mean over the layer's heads of the logit gap, of ‖W_O^h v_0‖ and of the drain ratio.
    #[serde(default)]
    pub logit_gap: Option<f64>,
    #[serde(default)]
    pub drain_first: Option<f64>,
    #[serde(default)]
    pub drain_ratio: Option<f64>,
}

/// The numbers of an `Analysis` that the report uses. Kurtosis is the excess kurtosis
/// E[(x−μ)⁴]/σ⁴ − 3 of all elements of a layer's tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Mean loss over the analysed windows.
    pub loss: Option<f64>,
    /// max over layers of max |x| of the residual stream after the block.
    pub max_abs_residual: Option<f64>,
    /// Mean over layers of the attention output's excess kurtosis (after c_proj, before the residual
    /// add): Bondarenko et al.'s "average kurtosis" of the attention layers' output.
    pub kurtosis_attn_out: Option<f64>,
    /// Mean over layers of the residual stream's excess kurtosis.
    pub kurtosis_residual: Option<f64>,
    /// Σ_l count(|x| > 6) / Σ_l numel over the residual stream of every layer.
    pub outlier_fraction: Option<f64>,
    /// Mean over all heads of the mean attention of queries 1..T−1 on token 0.
    pub sink_mass: Option<f64>,
    /// Mean over all heads of 1 − Σ_j p_ij.
    pub null_mass: Option<f64>,
    pub sink_heads: usize,
    pub layers: Vec<LayerSummary>,
    /// max |x| of the residual stream per layer and channel (L × C).
    pub residual_channel_max: Vec<Vec<f32>>,
    /// Max over layers of the first position's norm / the others' mean norm.
    #[serde(default)]
    pub first_norm_ratio: Option<f64>,
    /// Max over layers of the largest |x| / the median |x|.
    #[serde(default)]
    pub massive_ratio: Option<f64>,
    /// Mean over all heads of the logit gap, and of the value-drain ratio.
    #[serde(default)]
    pub logit_gap: Option<f64>,
    #[serde(default)]
    pub drain_ratio: Option<f64>,
    /// Losses of the data task's probes by name (e.g. copy, bigram), where the data has a task; none
    /// otherwise.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub task_losses: BTreeMap<String, f64>,
}

fn fin(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn max(xs: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    xs.into_iter().flatten().filter(|x| x.is_finite()).reduce(f64::max)
}

fn mean(xs: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = xs.into_iter().flatten().filter(|x| x.is_finite()).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

impl Summary {
    /// No numbers: the summary of a run that diverged.
    pub fn empty() -> Self {
        Summary {
            loss: None,
            max_abs_residual: None,
            kurtosis_attn_out: None,
            kurtosis_residual: None,
            outlier_fraction: None,
            sink_mass: None,
            null_mass: None,
            sink_heads: 0,
            layers: vec![],
            residual_channel_max: vec![],
            first_norm_ratio: None,
            massive_ratio: None,
            logit_gap: None,
            drain_ratio: None,
            task_losses: BTreeMap::new(),
        }
    }

    pub fn of(a: &Analysis) -> Self {
        let layers: Vec<LayerSummary> = a
            .layers
            .iter()
            .map(|l| {
                let top = l.massive.top.first();
                let heads = || l.heads.iter();
                LayerSummary {
                    max_abs_residual: fin(l.residual.max_abs),
                    max_abs_attn_out: fin(l.attn_out.max_abs),
                    kurtosis_attn_out: l.attn_out.excess_kurtosis.and_then(fin),
                    kurtosis_residual: l.residual.excess_kurtosis.and_then(fin),
                    outlier_fraction_residual: fin(l.residual.outlier_fraction),
                    first_norm_ratio: l.first_norm.ratio_mean,
                    first_norm_ratio_median: l.first_norm.ratio_median,
                    first_norm_diff: l.first_norm.diff_mean,
                    massive_top1: top.and_then(|m| fin(m.value.abs() as f64)),
                    massive_ratio: top.and_then(|m| m.ratio_to_median),
                    sink_mean: mean(heads().map(|h| h.sink)),
                    sink_fraction: (!l.heads.is_empty())
                        .then(|| heads().filter(|h| h.is_sink).count() as f64 / l.heads.len() as f64),
                    logit_gap: mean(heads().map(|h| h.logit_gap)),
                    drain_first: mean(heads().map(|h| h.drain_first)),
                    drain_ratio: mean(heads().map(|h| h.drain_ratio)),
                }
            })
            .collect();
        let (outliers, numel) =
            a.layers.iter().fold((0u64, 0u64), |(o, n), l| (o + l.residual.outliers, n + l.residual.numel));
        let heads = a.layers.iter().flat_map(|l| &l.heads);
        Summary {
            first_norm_ratio: max(layers.iter().map(|l| l.first_norm_ratio)),
            massive_ratio: max(layers.iter().map(|l| l.massive_ratio)),
            logit_gap: mean(heads.clone().map(|h| h.logit_gap)),
            drain_ratio: mean(heads.clone().map(|h| h.drain_ratio)),
            task_losses: [("copy", a.copy_loss), ("bigram", a.bigram_loss)]
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_string(), v?)))
                .collect(),
            loss: a.loss.and_then(fin),
            max_abs_residual: layers.iter().filter_map(|l| l.max_abs_residual).reduce(f64::max),
            kurtosis_attn_out: mean(layers.iter().map(|l| l.kurtosis_attn_out)),
            kurtosis_residual: mean(layers.iter().map(|l| l.kurtosis_residual)),
            outlier_fraction: (numel > 0).then(|| outliers as f64 / numel as f64),
            sink_mass: mean(heads.clone().map(|h| h.sink)),
            null_mass: mean(heads.map(|h| Some(h.null_mass_mean))),
            sink_heads: a.attention.sink_heads,
            layers,
            residual_channel_max: a
                .layers
                .iter()
                .map(|l| l.residual.channel_inf_norm.iter().map(|&x| if x.is_finite() { x } else { 0.0 }).collect())
                .collect(),
        }
    }
}

/// An analysis during training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub iter: usize,
    pub summary: Summary,
    /// fp32 and W8A8.
    pub quant: Vec<QuantResult>,
}

/// A finished run: `done.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The arm's name (runs/<arm>-seed<seed>/); records written before arms existed have none, and
    /// `experiment` reads them as the attention variant's name.
    #[serde(default)]
    pub arm: String,
    /// The arm's attention variant.
    pub variant: AttentionKind,
    pub seed: u64,
    pub spec: RunSpec,
    /// Wall time of training, analysis and quantization.
    pub seconds: f64,
    /// The final iteration (max_iters).
    pub iter: usize,
    /// The trainer's last evaluation (at max_iters).
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    /// Every evaluation of the trainer, one per iteration.
    pub curve: Vec<EvalPoint>,
    /// The final model's analysis and quantization results ("fp32" first).
    pub summary: Summary,
    pub quant: Vec<QuantResult>,
    /// Intermediate analyses (`analyze_every`), in iteration order.
    pub snapshots: Vec<Snapshot>,
    /// Set when training diverged (a non-finite loss or gradient norm): the trainer's message. Such a
    /// run has no analysis (`summary` is empty, `quant` too) and is left out of the statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged: Option<String>,
}

impl RunRecord {
    pub fn quant_loss(&self, name: &str) -> Option<f64> {
        self.quant.iter().find(|q| q.name == name).and_then(|q| q.loss)
    }
    pub fn quant_gap(&self, name: &str) -> Option<f64> {
        self.quant.iter().find(|q| q.name == name).and_then(|q| q.gap)
    }
}

impl QuantResult {
    /// The results of a quantize-eval, in its order ("fp32" first).
    pub fn list(q: &QuantReport) -> Vec<QuantResult> {
        q.results.iter().map(|r| QuantResult { name: r.name.clone(), loss: fin(r.loss), gap: fin(r.gap) }).collect()
    }
}

/// Values of one run's final model on the first val windows, for the report's histograms: per layer,
/// the residual stream after the block and the attention output (after c_proj, before the residual add).
#[derive(Clone, Debug, PartialEq)]
pub struct HistSamples {
    pub arm: String,
    pub seed: u64,
    pub residual: Vec<Vec<f32>>,
    pub attn_out: Vec<Vec<f32>>,
}
