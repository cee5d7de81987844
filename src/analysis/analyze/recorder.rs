//! The probe behind `analyze`: it streams every observed activation into per-tensor accumulators and
//! the attention probabilities into per-head ones, then turns them into an `Analysis`.

use super::super::params::named_tensors;
use super::super::stats::{count_beyond_sigmas, ChannelMaxAbs, Moments, LLM_INT8_THRESHOLD};
use super::sinks::{head_grams, push_heads, FirstNormAcc, HeadAcc as ScoreAcc, MassiveAcc};
use super::types::*;
use super::{AnalyzeOptions, SINK_THRESHOLD, WEIGHT_OUTLIER_SIGMAS};
use crate::config::ModelConfig;
use crate::data::{Backcopy, TaskLoss};
use crate::engine::cpu::{Gpt, Point, Probe};
use crate::{Error, Result};

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
/// (ln_1, attn_out, ln_2, mlp_hidden, mlp_out, residual), 1 + 6L = ln_f. The residual stream also goes
/// to the first-position norms and the massive activations, c_attn's q, k, v to the logit gap and the
/// value drain (`sinks`).
pub struct Recorder {
    n_layer: usize,
    n_head: usize,
    n_embd: usize,
    /// gate values per token (0 without a gate)
    gate_groups: usize,
    acts: Vec<Acc>,
    heads: Vec<HeadAcc>,            // (L, NH)
    first_norms: Vec<FirstNormAcc>, // (L)
    massive: Vec<MassiveAcc>,       // (L)
    scores: Vec<ScoreAcc>,          // (L, NH)
    /// head_grams of each layer's c_proj, for the model of the current `run`
    grams: Vec<Vec<f64>>,
    /// the length of the current `run`'s windows
    t: usize,
    loss_sum: f64,
    loss_seen: bool,
    pub(super) sequences: usize,
    block: usize,
    error: Option<Error>,
    /// The backcopy task, when the windows come from it: the copy and bigram losses of each `run`.
    pub(super) task: Option<(Backcopy, TaskLoss)>,
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
            n_embd: c,
            gate_groups: cfg.attention.gate_groups(cfg.n_head, c).unwrap_or(0),
            acts,
            heads: vec![head; l * cfg.n_head],
            first_norms: vec![FirstNormAcc::default(); l],
            massive: vec![MassiveAcc::default(); l],
            scores: vec![ScoreAcc::default(); l * cfg.n_head],
            grams: vec![],
            t: 0,
            loss_sum: 0.0,
            loss_seen: false,
            sequences: 0,
            block: 0,
            error: None,
            task: None,
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
            Point::Gate | Point::Qkv => return None,
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
        self.grams = (0..self.n_layer)
            .map(|l| match model.tensor(&format!("transformer.h.{l}.attn.c_proj.weight")) {
                Some(w) if w.len() == self.n_embd * self.n_embd => head_grams(w, self.n_embd, self.n_head),
                _ => vec![],
            })
            .collect();
        self.t = t;
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
        if let (Some((bb, acc)), Some(y)) = (self.task.as_mut(), targets) {
            acc.add(bb, idx, y, model.logits());
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
        let (mut first_norms, mut massive) = (self.first_norms, self.massive);
        let embedding = acts.next().expect("slot 0");
        let mut layers = Vec::with_capacity(self.n_layer);
        let nh = self.n_head;
        let mut heads_all = Vec::new();
        for l in 0..self.n_layer {
            let mut next = || acts.next().expect("6 slots per layer");
            let (ln_1, attn_out, ln_2, mlp_hidden, mlp_out, residual) =
                (next(), next(), next(), next(), next(), next());
            let range = l * nh..(l + 1) * nh;
            let heads: Vec<HeadStats> = self.heads[range.clone()]
                .iter()
                .zip(&self.scores[range])
                .enumerate()
                .map(|(h, (a, s))| head(h, a, s))
                .collect();
            heads_all.extend(heads.iter().cloned());
            let (first_norm, massive) = (first_norms[l].finish(), massive[l].finish());
            layers.push(LayerStats {
                layer: l,
                ln_1,
                attn_out,
                ln_2,
                mlp_hidden,
                mlp_out,
                residual,
                first_norm,
                massive,
                heads,
            });
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
            copy_loss: self.task.as_ref().map(|(_, l)| l.copy()).filter(|x| x.is_finite()),
            bigram_loss: self.task.as_ref().map(|(_, l)| l.bigram()).filter(|x| x.is_finite()),
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
        let (t, c) = (self.t, self.n_embd);
        if point == Point::Qkv && layer < self.n_layer {
            let nh = self.n_head;
            if let Some(g) = self.grams.get(layer).filter(|g| g.len() == c * c / nh) {
                push_heads(&mut self.scores[layer * nh..(layer + 1) * nh], x, g, t, c);
            } else {
                self.error.get_or_insert(Error::Data(format!("layer {layer}: no attn.c_proj weight of {c}x{c}")));
            }
            return;
        }
        if point == Point::Residual && layer < self.n_layer {
            self.first_norms[layer].push(x, t, c);
            self.massive[layer].push(x, t, c);
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

fn head(h: usize, a: &HeadAcc, s: &ScoreAcc) -> HeadStats {
    let rows = a.rows.max(1) as f64;
    let sink = (a.sink_rows > 0).then(|| a.sink_sum / a.sink_rows as f64).filter(|s| s.is_finite());
    let fin = |v: f64| if v.is_finite() { v } else { 0.0 };
    let scores = s.finish();
    HeadStats {
        head: h,
        null_mass_mean: fin(a.null_sum / rows),
        null_mass_min: fin(a.null_min),
        null_mass_max: fin(a.null_max),
        sink,
        is_sink: sink.is_some_and(|s| s > SINK_THRESHOLD),
        gate_mean: (a.gate_count > 0).then(|| a.gate_sum / a.gate_count as f64).filter(|g| g.is_finite()),
        logit_gap: scores.logit_gap,
        drain_first: scores.drain_first,
        drain_others: scores.drain_others,
        drain_ratio: scores.drain_ratio,
    }
}

/// Every parameter tensor in nanoGPT order.
fn weights(model: &Gpt) -> Vec<WeightStats> {
    named_tensors(model)
        .map(|(t, w)| {
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
