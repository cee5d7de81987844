//! Outlier analysis of a trained model on a fixed evaluation set: activation statistics per layer and
//! module, weight statistics per tensor, and attention statistics per head (null mass, sink on token 0,
//! and the mean gate of the gated variants).
//!
//! Null mass of a row is 1 − Σ_j p_ij over the weights the model uses (`Gpt::attention_probs`): the
//! null key's weight for quiet, p_sink = exp(σ_h − lse) for the learned sink, the mass the clip removed
//! for clipped softmax (≥ 0 with ζ = 1; it can be negative for ζ > 1), and 0 up to rounding for softmax
//! and the gated variants (whose "doing nothing" shows in the gate instead: `gate_mean`).
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

use super::stats::{count_beyond_sigmas, ChannelMaxAbs, Moments, LLM_INT8_THRESHOLD};
use crate::config::ModelConfig;
use crate::data::{Dataset, Split};
use crate::model::{Gpt, Point, Probe};
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
    pub heads: Vec<HeadStats>,
}

/// One attention head over all windows. p_ij = attention of query i on key j (j ≤ i).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadStats {
    pub head: usize,
    /// Mean over rows (every window and query i) of 1 − Σ_j p_ij: > 0 for quiet attention, p_sink for
    /// the learned sink, the clipped-away mass for clipped softmax, 0 up to rounding (~1e-7) for softmax
    /// and the gated variants.
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
}

/// Statistics of one parameter tensor (nanoGPT name; lm_head is tied to wte and not repeated).
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
}

/// Analysis on the first `opts.windows` val windows of `data` (see the module docs).
pub fn analyze(model: &mut Gpt, data: &Dataset, opts: &AnalyzeOptions) -> Result<Analysis> {
    let t = model.config.block_size;
    let b = check_opts(model, opts)?;
    let mut rec = Recorder::new(&model.config);
    let (mut x, mut y) = (vec![0u32; b * t], vec![0u32; b * t]);
    let mut k = 0;
    while k < opts.windows {
        let mut n = 0;
        while n < b
            && k < opts.windows
            && data.window(Split::Val, k, t, &mut x[n * t..(n + 1) * t], &mut y[n * t..(n + 1) * t])
        {
            n += 1;
            k += 1;
        }
        if n == 0 {
            break;
        }
        rec.run(model, &x[..n * t], Some(&y[..n * t]), n, t)?;
        if n < b {
            break;
        }
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

/// One activation tensor's accumulators.
struct Acc {
    moments: Moments,
    channels: ChannelMaxAbs,
}

/// One head's attention accumulators.
#[derive(Clone)]
struct HeadAcc {
    null_sum: f64,
    null_min: f64,
    null_max: f64,
    rows: u64,
    sink_sum: f64,
    sink_rows: u64,
    gate_sum: f64,
    gate_count: u64,
}

/// The probe: streams every observed activation into its accumulators, and the attention
/// probabilities after each forward. Slots: 0 = embedding, 1 + 6l + k = layer l's k-th point
/// (ln_1, attn_out, ln_2, mlp_hidden, mlp_out, residual), 1 + 6L = ln_f.
pub struct Recorder {
    n_layer: usize,
    n_head: usize,
    /// gate values per token (0 without a gate)
    gate_groups: usize,
    acts: Vec<Acc>,
    heads: Vec<HeadAcc>, // (L, NH)
    loss_sum: f64,
    loss_seen: bool,
    sequences: usize,
    block: usize,
    error: Option<Error>,
}

const POINTS_PER_LAYER: usize = 6;

impl Recorder {
    pub fn new(cfg: &ModelConfig) -> Self {
        let (l, c) = (cfg.n_layer, cfg.n_embd);
        let acts = (0..2 + POINTS_PER_LAYER * l)
            .map(|s| {
                let width =
                    if s > 0 && s <= POINTS_PER_LAYER * l && (s - 1) % POINTS_PER_LAYER == 3 { 4 * c } else { c };
                Acc { moments: Moments::new(LLM_INT8_THRESHOLD), channels: ChannelMaxAbs::new(width) }
            })
            .collect();
        let head = HeadAcc {
            null_sum: 0.0,
            null_min: f64::INFINITY,
            null_max: f64::NEG_INFINITY,
            rows: 0,
            sink_sum: 0.0,
            sink_rows: 0,
            gate_sum: 0.0,
            gate_count: 0,
        };
        Recorder {
            n_layer: l,
            n_head: cfg.n_head,
            gate_groups: cfg.attention.gate_groups(cfg.n_head, c).unwrap_or(0),
            acts,
            heads: vec![head; l * cfg.n_head],
            loss_sum: 0.0,
            loss_seen: false,
            sequences: 0,
            block: 0,
            error: None,
        }
    }

    fn slot(&self, layer: usize, point: Point) -> Option<usize> {
        let k = match point {
            Point::Embedding => return (layer == 0).then_some(0),
            Point::LnF => return (layer == self.n_layer).then_some(1 + POINTS_PER_LAYER * self.n_layer),
            Point::Ln1 => 0,
            Point::AttnOut => 1,
            Point::Ln2 => 2,
            Point::MlpHidden => 3,
            Point::MlpOut => 4,
            Point::Residual => 5,
            Point::Gate => return None,
        };
        (layer < self.n_layer).then_some(1 + POINTS_PER_LAYER * layer + k)
    }

    /// One probed forward of idx (b, t) and its attention probabilities.
    pub fn run(&mut self, model: &mut Gpt, idx: &[u32], targets: Option<&[u32]>, b: usize, t: usize) -> Result<()> {
        if model.config.n_layer != self.n_layer || model.config.n_head != self.n_head {
            return Err(Error::Config("the recorder was made for another model shape".into()));
        }
        if self.sequences > 0 && t != self.block {
            return Err(Error::Config(format!("all batches must have the same length ({} here, {t} now)", self.block)));
        }
        // The reference attention kernel keeps the probabilities; the fused one used in training does not.
        let was = model.stores_attention();
        model.set_store_attention(true);
        let loss = model.forward_probe(idx, targets, b, t, None, Some(&mut *self as &mut dyn Probe<f32>));
        if loss.is_err() {
            model.set_store_attention(was);
        }
        let loss = loss?;
        if let Some(e) = self.error.take() {
            model.set_store_attention(was);
            return Err(e);
        }
        if let Some(l) = loss {
            self.loss_sum += l * b as f64;
            self.loss_seen = true;
        }
        self.sequences += b;
        self.block = t;
        for l in 0..self.n_layer {
            self.attention(l, model.attention_probs(l), b, t);
        }
        model.set_store_attention(was);
        Ok(())
    }

    /// Null mass and sink of each head of layer l; probs is (B, NH, T, T), row i holds p_i·.
    fn attention(&mut self, l: usize, probs: &[f32], b: usize, t: usize) {
        let nh = self.n_head;
        for (k, plane) in probs.chunks_exact(t * t).take(b * nh).enumerate() {
            let h = &mut self.heads[l * nh + k % nh];
            for (i, row) in plane.chunks_exact(t).enumerate() {
                let null = 1.0 - row.iter().map(|&p| p as f64).sum::<f64>();
                h.null_sum += null;
                h.null_min = h.null_min.min(null);
                h.null_max = h.null_max.max(null);
                h.rows += 1;
                if i > 0 {
                    h.sink_sum += row[0] as f64;
                    h.sink_rows += 1;
                }
            }
        }
    }

    /// The report, with the model's weight statistics.
    pub fn finish(self, model: &Gpt, opts: &AnalyzeOptions, split: &str) -> Result<Analysis> {
        if self.sequences == 0 {
            return Err(Error::Data("nothing was analysed: no batch was run".into()));
        }
        let k = opts.top_k_channels;
        let mut acts = self.acts.into_iter().map(|a| activation(a, k));
        let embedding = acts.next().expect("slot 0");
        let mut layers = Vec::with_capacity(self.n_layer);
        let nh = self.n_head;
        let mut heads_all = Vec::new();
        for l in 0..self.n_layer {
            let mut next = || acts.next().expect("6 slots per layer");
            let (ln_1, attn_out, ln_2, mlp_hidden, mlp_out, residual) =
                (next(), next(), next(), next(), next(), next());
            let heads: Vec<HeadStats> =
                self.heads[l * nh..(l + 1) * nh].iter().enumerate().map(|(h, a)| head(h, a)).collect();
            heads_all.extend(heads.iter().cloned());
            layers.push(LayerStats { layer: l, ln_1, attn_out, ln_2, mlp_hidden, mlp_out, residual, heads });
        }
        let ln_f = acts.next().expect("ln_f slot");
        let n = heads_all.len();
        let sink_heads = heads_all.iter().filter(|h| h.is_sink).count();
        let gates: Vec<f64> = heads_all.iter().filter_map(|h| h.gate_mean).collect();
        let attention = AttentionSummary {
            null_mass_mean: heads_all.iter().map(|h| h.null_mass_mean).sum::<f64>() / n.max(1) as f64,
            sink_heads,
            heads: n,
            sink_head_fraction: sink_heads as f64 / n.max(1) as f64,
            gate_mean: (!gates.is_empty()).then(|| gates.iter().sum::<f64>() / gates.len() as f64),
        };
        let loss = (self.loss_seen).then(|| self.loss_sum / self.sequences as f64).filter(|l| l.is_finite());
        Ok(Analysis {
            model: model.config.clone(),
            split: split.into(),
            windows: self.sequences,
            block: self.block,
            loss,
            thresholds: Thresholds {
                activation_abs: LLM_INT8_THRESHOLD,
                weight_sigmas: WEIGHT_OUTLIER_SIGMAS,
                sink: SINK_THRESHOLD,
            },
            embedding,
            layers,
            ln_f,
            attention,
            weights: weights(model),
        })
    }
}

impl Probe<f32> for Recorder {
    fn observe(&mut self, layer: usize, point: Point, x: &[f32]) {
        if point == Point::Gate && layer < self.n_layer && self.gate_groups > 0 {
            // x is (B, T, G); gate k belongs to head k / (G / NH)
            let (g, nh) = (self.gate_groups, self.n_head);
            let per_head = g / nh;
            for row in x.chunks_exact(g) {
                for (h, vals) in row.chunks_exact(per_head).enumerate() {
                    let acc = &mut self.heads[layer * nh + h];
                    acc.gate_sum += vals.iter().map(|&v| v as f64).sum::<f64>();
                    acc.gate_count += vals.len() as u64;
                }
            }
            return;
        }
        let Some(s) = self.slot(layer, point) else {
            self.error.get_or_insert(Error::Data(format!("unexpected activation {point:?} at layer {layer}")));
            return;
        };
        let acc = &mut self.acts[s];
        acc.moments.push(x);
        if let Err(e) = acc.channels.push(x) {
            self.error.get_or_insert(e);
        }
    }
}

fn activation(a: Acc, top_k: usize) -> ActivationStats {
    let m = &a.moments;
    ActivationStats {
        numel: m.count(),
        mean: m.mean(),
        std_pop: m.std(),
        max_abs: m.max_abs(),
        excess_kurtosis: m.excess_kurtosis(),
        kurtosis: m.kurtosis(),
        outliers: m.outliers(),
        outlier_fraction: m.outlier_fraction(),
        nonfinite: m.nonfinite(),
        top_channels: a
            .channels
            .top_k(top_k)
            .into_iter()
            .map(|(channel, max_abs)| ChannelNorm { channel, max_abs })
            .collect(),
        channel_inf_norm: a.channels.values().to_vec(),
    }
}

fn head(h: usize, a: &HeadAcc) -> HeadStats {
    let rows = a.rows.max(1) as f64;
    let sink = (a.sink_rows > 0).then(|| a.sink_sum / a.sink_rows as f64).filter(|s| s.is_finite());
    let fin = |v: f64| if v.is_finite() { v } else { 0.0 };
    HeadStats {
        head: h,
        null_mass_mean: fin(a.null_sum / rows),
        null_mass_min: fin(a.null_min),
        null_mass_max: fin(a.null_max),
        sink,
        is_sink: sink.is_some_and(|s| s > SINK_THRESHOLD),
        gate_mean: (a.gate_count > 0).then(|| a.gate_sum / a.gate_count as f64).filter(|g| g.is_finite()),
    }
}

/// Every parameter tensor in nanoGPT order.
fn weights(model: &Gpt) -> Vec<WeightStats> {
    model
        .layout
        .named()
        .iter()
        .map(|t| {
            let w = &model.params[t.offset..t.offset + t.len];
            let m = Moments::of(w, f64::INFINITY);
            WeightStats {
                name: t.name.clone(),
                shape: t.shape.clone(),
                numel: m.count(),
                mean: m.mean(),
                std_pop: m.std(),
                max_abs: m.max_abs(),
                excess_kurtosis: m.excess_kurtosis(),
                kurtosis: m.kurtosis(),
                beyond_6_sigma: count_beyond_sigmas(w, m.mean(), m.std(), WEIGHT_OUTLIER_SIGMAS),
                nonfinite: m.nonfinite(),
            }
        })
        .collect()
}

/// How many top channels the table shows per row (the JSON has `top_k_channels`).
const TABLE_CHANNELS: usize = 3;

impl Analysis {
    /// A readable summary: activations, attention heads, weights.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let m = &self.model;
        let loss = self.loss.map_or("-".into(), |l| format!("{l:.4}"));
        let _ = writeln!(
            s,
            "model: {} layers, {} heads, n_embd {}, {} attention | eval: {} {} windows of {} tokens, loss {loss}",
            m.n_layer, m.n_head, m.n_embd, m.attention, self.windows, self.split, self.block
        );
        let th = self.thresholds.activation_abs;
        let _ = writeln!(
            s,
            "\nactivations (moments over all elements; exkurt = E[(x-mu)^4]/sigma^4 - 3, kurt = raw; out = |x| > {th})"
        );
        let _ = writeln!(
            s,
            "{:<16} {:>10} {:>10} {:>10} {:>9} {:>9}  top channels c:max|x|",
            "point", "max|x|", "exkurt", "kurt", "out", "out%"
        );
        let mut row = |name: String, a: &ActivationStats| {
            let top: Vec<String> =
                a.top_channels.iter().take(TABLE_CHANNELS).map(|c| format!("{}:{:.3}", c.channel, c.max_abs)).collect();
            let _ = writeln!(
                s,
                "{name:<16} {:>10.4} {:>10} {:>10} {:>9} {:>8.4}%  {}{}",
                a.max_abs,
                opt(a.excess_kurtosis),
                opt(a.kurtosis),
                a.outliers,
                100.0 * a.outlier_fraction,
                top.join(" "),
                if a.nonfinite > 0 { format!("  ({} non-finite)", a.nonfinite) } else { String::new() }
            );
        };
        row("embedding".into(), &self.embedding);
        for l in &self.layers {
            let i = l.layer;
            row(format!("L{i} ln_1"), &l.ln_1);
            row(format!("L{i} attn_out"), &l.attn_out);
            row(format!("L{i} ln_2"), &l.ln_2);
            row(format!("L{i} mlp_hidden"), &l.mlp_hidden);
            row(format!("L{i} mlp_out"), &l.mlp_out);
            row(format!("L{i} residual"), &l.residual);
        }
        row("ln_f".into(), &self.ln_f);

        let a = &self.attention;
        let _ = writeln!(
            s,
            "\nattention (null = 1 - sum_j p_ij over rows; sink = mean p_i0 over queries i >= 1; * = sink > {})",
            self.thresholds.sink
        );
        let gated = a.gate_mean.is_some();
        let gate_head = if gated { format!(" {:>9}", "gate") } else { String::new() };
        let _ = writeln!(
            s,
            "{:<6} {:>5} {:>11} {:>11} {:>11} {:>9}{gate_head}",
            "layer", "head", "null mean", "null min", "null max", "sink"
        );
        for l in &self.layers {
            for h in &l.heads {
                let sink = h.sink.map_or("-".into(), |v| format!("{v:.4}"));
                let gate = if gated {
                    format!(" {:>9}", h.gate_mean.map_or("-".into(), |v| format!("{v:.4}")))
                } else {
                    String::new()
                };
                let star = if h.is_sink { " *" } else { "" };
                let _ = writeln!(
                    s,
                    "{:<6} {:>5} {:>11.3e} {:>11.3e} {:>11.3e} {sink:>9}{gate}{star}",
                    l.layer, h.head, h.null_mass_mean, h.null_mass_min, h.null_mass_max
                );
            }
        }
        if let Some(g) = a.gate_mean {
            let _ = writeln!(s, "mean gate {g:.4}");
        }
        let _ = writeln!(
            s,
            "sink heads: {} of {} ({:.1}%); mean null mass {:.4e}",
            a.sink_heads,
            a.heads,
            100.0 * a.sink_head_fraction,
            a.null_mass_mean
        );

        let _ = writeln!(
            s,
            "\nweights (per tensor; >{}sd = count of |w - mean| > {} std)",
            self.thresholds.weight_sigmas, self.thresholds.weight_sigmas
        );
        let _ = writeln!(
            s,
            "{:<36} {:>12} {:>10} {:>10} {:>10} {:>7}",
            "tensor", "shape", "max|w|", "std", "exkurt", ">6sd"
        );
        for w in &self.weights {
            let shape = w.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
            let _ = writeln!(
                s,
                "{:<36} {:>12} {:>10.4} {:>10.4} {:>10} {:>7}",
                w.name,
                shape,
                w.max_abs,
                w.std_pop,
                opt(w.excess_kurtosis),
                w.beyond_6_sigma
            );
        }
        s
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}
