//! Post-training fake quantization of a trained GPT, and its val loss against float32.
//!
//! What is quantized (as in Bondarenko et al. 2023, "Quantizable Transformers"): the weight and the
//! input of each of the four Linear layers of every block — attn.c_attn, attn.c_proj, mlp.c_fc,
//! mlp.c_proj. Biases, LayerNorms, wte/wpe (an embedding lookup is not a matmul) and the lm_head (tied
//! to wte, or untied `lm_head.weight`: the head, as Bondarenko et al. leave it) stay float32.
//!
//! The gated variants' gate maps (attn.c_gate, attn.c_outgate) are Linear layers too, and Bondarenko et
//! al. quantize every Linear layer but the head, their gates included: their weights are quantized like
//! the others. Their input is ln_1(x), the very tensor c_attn reads, and the forward computes the gate
//! from it after the c_attn hook: one activation, one quantizer (as for q, k and v). The gate values and
//! the sink logits (per-head scalars) stay float32, like the softmax.
//!
//! * Weights: symmetric, per tensor or per output channel (a row of the (OC, C) matrix), range ±max|w|.
//!   They are fake-quantized in `model.params`, which is restored to the original bits afterwards.
//! * Activations: asymmetric per tensor (one range per (layer, Linear) input), fixed before evaluation
//!   by calibration on the first `calib_windows` non-overlapping windows of the *train* split, run
//!   through the float32 model (static quantization; the val split is never used to pick ranges):
//!   - min-max: the extreme values seen;
//!   - percentile p: the (100 − p)-th and p-th percentiles *of the values* (not of |x|), from a
//!     histogram. The inputs are far from symmetric (gelu(x) ≥ −0.17 feeds mlp.c_proj; LayerNorm
//!     outliers sit on one side in a few channels), and an asymmetric quantizer spends its 2^b levels
//!     on [lo, hi]: clipping each tail on its own keeps that. A |x| percentile would force a symmetric
//!     range and waste up to half the levels on the empty side.
//!
//! The loss is the mean cross-entropy over the first `max_windows` (default all) non-overlapping
//! block_size windows of the val split, batched by `model.max_batch`; each batch's mean is weighted by
//! its token count.

//!
//! Layout: this file holds the settings, the report and the evaluation loop; `calibrate` the probes
//! (min-max, histogram, fake quantizer) and the percentile histogram.

mod calibrate;

pub use super::windows::count_windows;
pub use calibrate::Histogram;

use super::params::{update_tensors, ParamSnapshot};
use super::quant::QuantScheme;
use super::windows::Windows;
use crate::config::AttentionKind;
use crate::data::{Dataset, Split};
use crate::engine::cpu::{Gpt, Linear, Probe};
use crate::engine::params::Kind;
use crate::{Error, Result};
use calibrate::{FakeQuantProbe, HistogramProbe, MinMaxProbe};
use serde::{Deserialize, Serialize};

/// The Linear layers of a block, in forward order; a (layer, Linear) input is site `4·layer + index`.
pub const LINEARS: [Linear; 4] = [Linear::Qkv, Linear::AttnProj, Linear::Fc, Linear::FcProj];
/// The weights quantized: those of the four Linear layers, and of the gated variants' gate maps (absent,
/// so skipped, in the other variants).
pub const WEIGHT_KINDS: [Kind; 6] = [Kind::QkvW, Kind::AttProjW, Kind::FcW, Kind::FcProjW, Kind::GateW, Kind::OutGateW];

fn site(layer: usize, linear: Linear) -> usize {
    4 * layer + LINEARS.iter().position(|&l| l == linear).unwrap_or(0)
}

/// How an activation range is chosen from the calibration data.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeMethod {
    MinMax,
    /// [P_(100−p), P_p] of the values, p in (50, 100].
    Percentile(f64),
}

/// Activation quantization: the scheme and how its range is calibrated.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActQuant {
    pub scheme: QuantScheme,
    pub range: RangeMethod,
}

/// One configuration to evaluate; `None` leaves that side in float32.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    pub name: String,
    pub weights: Option<QuantScheme>,
    pub activations: Option<ActQuant>,
}

impl Setting {
    /// W8A8 (min-max and percentile activations, per-tensor and per-channel weights), W8 only,
    /// A8 only, W4 per channel, and W4A8 per channel.
    pub fn standard(percentile: f64) -> Vec<Setting> {
        let s = |name: &str, weights, activations| Setting { name: name.into(), weights, activations };
        let a8 = Some(ActQuant { scheme: QuantScheme::activations(8), range: RangeMethod::MinMax });
        let a8p = Some(ActQuant { scheme: QuantScheme::activations(8), range: RangeMethod::Percentile(percentile) });
        let (w8, w8c, w4c) = (
            Some(QuantScheme::weights(8)),
            Some(QuantScheme::weights_per_channel(8)),
            Some(QuantScheme::weights_per_channel(4)),
        );
        vec![
            s("W8A8", w8, a8),
            s(&format!("W8A8-p{percentile}"), w8, a8p),
            s("W8A8-pc", w8c, a8),
            s("W8", w8, None),
            s("A8", None, a8),
            s("W4-pc", w4c, None),
            s("W4A8-pc", w4c, a8),
        ]
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct QuantEvalOptions {
    /// Val windows to evaluate (None = all of them).
    pub max_windows: Option<usize>,
    /// Train windows for activation calibration: windows 0..calib_windows (fewer if the split is short).
    pub calib_windows: usize,
    /// Evaluated after the float32 baseline, which always comes first.
    pub settings: Vec<Setting>,
}

impl Default for QuantEvalOptions {
    fn default() -> Self {
        QuantEvalOptions { max_windows: None, calib_windows: 64, settings: Setting::standard(99.99) }
    }
}

/// The result of one setting; gap = loss − float32 loss (nats per token).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SettingResult {
    pub name: String,
    pub weights: Option<QuantScheme>,
    pub activations: Option<ActQuant>,
    pub loss: f64,
    pub perplexity: f64,
    pub gap: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantReport {
    pub attention: AttentionKind,
    pub block_size: usize,
    pub val_windows: usize,
    pub val_tokens: usize,
    pub calib_windows: usize,
    /// "fp32" first, then the settings in order.
    pub results: Vec<SettingResult>,
}

impl QuantReport {
    pub fn get(&self, name: &str) -> Option<&SettingResult> {
        self.results.iter().find(|r| r.name == name)
    }

    /// A fixed-width table: one row per setting.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} attention; val: {} windows of {} tokens ({} tokens); activation ranges from {} train windows\n",
            self.attention, self.val_windows, self.block_size, self.val_tokens, self.calib_windows
        );
        let w = self.results.iter().map(|r| r.name.len()).max().unwrap_or(0).max(7);
        s += &format!(
            "{:w$}  {:22}  {:32}  {:>8}  {:>10}  {:>9}\n",
            "setting", "weights", "activations", "val loss", "perplexity", "gap"
        );
        for r in &self.results {
            let wt = r.weights.map_or("float32".into(), |q| describe(&q));
            let at = r.activations.map_or("float32".into(), |a| match a.range {
                RangeMethod::MinMax => format!("{}, min-max", describe(&a.scheme)),
                RangeMethod::Percentile(p) => format!("{}, p{p}", describe(&a.scheme)),
            });
            s += &format!("{:w$}  {wt:22}  {at:32}  {:8.4}  {:10.3}  {:+9.5}\n", r.name, r.loss, r.perplexity, r.gap);
        }
        s
    }
}

/// "int8 sym per-channel", "uint8 asym per-tensor", ...
fn describe(q: &QuantScheme) -> String {
    let (ty, kind) = if q.symmetric { ("int", "sym") } else { ("uint", "asym") };
    format!("{ty}{} {kind} {}", q.bits, if q.per_channel { "per-channel" } else { "per-tensor" })
}

/// Evaluate float32 and every setting of `opts` on the val split of `data`. `model.params` is the same
/// after the call as before (also when it fails).
pub fn quantize_eval(model: &mut Gpt, data: &Dataset, opts: &QuantEvalOptions) -> Result<QuantReport> {
    quantize_eval_with(model, data, opts, &mut |_| {})
}

/// `quantize_eval`, calling `on_result` as each setting finishes (for progress output).
pub fn quantize_eval_with(
    model: &mut Gpt,
    data: &Dataset,
    opts: &QuantEvalOptions,
    on_result: &mut dyn FnMut(&SettingResult),
) -> Result<QuantReport> {
    for s in &opts.settings {
        s.weights.iter().chain(s.activations.as_ref().map(|a| &a.scheme)).try_for_each(QuantScheme::validate)?;
        if let Some(ActQuant { range: RangeMethod::Percentile(p), .. }) = s.activations {
            if !(p > 50.0 && p <= 100.0) {
                return Err(Error::Config(format!("setting {}: percentile must be in (50, 100], got {p}", s.name)));
            }
        }
    }
    let original = ParamSnapshot::take(model);
    let out = evaluate_all(model, data, opts, &original, on_result);
    original.restore(model);
    out
}

fn evaluate_all(
    model: &mut Gpt,
    data: &Dataset,
    opts: &QuantEvalOptions,
    original: &ParamSnapshot,
    on_result: &mut dyn FnMut(&SettingResult),
) -> Result<QuantReport> {
    let block = model.config.block_size;
    let val_windows = count_windows(data, Split::Val, block).min(opts.max_windows.unwrap_or(usize::MAX));
    if val_windows == 0 {
        return Err(Error::Data(format!(
            "the val split ({} tokens) holds no window of block_size {block} + 1 tokens to evaluate",
            data.val.len()
        )));
    }
    let needs_acts = opts.settings.iter().any(|s| s.activations.is_some());
    let needs_hist =
        opts.settings.iter().any(|s| matches!(s.activations, Some(ActQuant { range: RangeMethod::Percentile(_), .. })));
    let calib_windows = count_windows(data, Split::Train, block).min(opts.calib_windows);
    if needs_acts && calib_windows == 0 {
        return Err(Error::Data(format!(
            "activation quantization needs calibration windows: calib_windows is {} and the train split has {} tokens for block_size {block}",
            opts.calib_windows,
            data.train.len()
        )));
    }

    // Calibration on the float32 model: pass 1 min-max, pass 2 (if needed) histograms over [min, max].
    let n_sites = 4 * model.config.n_layer;
    let mut minmax = MinMaxProbe { ranges: vec![(f32::INFINITY, f32::NEG_INFINITY); n_sites] };
    let mut hist = HistogramProbe { hists: vec![] };
    if needs_acts {
        window_loss(model, data, Split::Train, calib_windows, Some(&mut minmax))?;
        for r in &mut minmax.ranges {
            if r.0 > r.1 {
                *r = (0.0, 0.0); // no finite value seen
            }
        }
        if needs_hist {
            hist.hists = minmax.ranges.iter().map(|&(lo, hi)| Histogram::new(lo, hi)).collect();
            window_loss(model, data, Split::Train, calib_windows, Some(&mut hist))?;
        }
    }

    let fp32 = window_loss(model, data, Split::Val, val_windows, None)?;
    let result = |name: &str, weights, activations, loss: f64| SettingResult {
        name: name.into(),
        weights,
        activations,
        loss,
        perplexity: loss.exp(),
        gap: loss - fp32,
    };
    let mut results = vec![result("fp32", None, None, fp32)];
    on_result(&results[0]);
    for s in &opts.settings {
        original.restore(model);
        if let Some(w) = &s.weights {
            quantize_weights(model, w)?;
        }
        let loss = match &s.activations {
            None => window_loss(model, data, Split::Val, val_windows, None)?,
            Some(a) => {
                let params = (0..n_sites)
                    .map(|i| {
                        let (lo, hi) = match a.range {
                            RangeMethod::MinMax => minmax.ranges[i],
                            RangeMethod::Percentile(p) => hist.hists[i].percentile_range(p),
                        };
                        a.scheme.params(lo, hi)
                    })
                    .collect::<Result<Vec<_>>>()?;
                window_loss(model, data, Split::Val, val_windows, Some(&mut FakeQuantProbe { params }))?
            }
        };
        results.push(result(&s.name, s.weights, s.activations, loss));
        on_result(results.last().expect("just pushed"));
    }
    Ok(QuantReport {
        attention: model.config.attention,
        block_size: block,
        val_windows,
        val_tokens: val_windows * block,
        calib_windows: if needs_acts { calib_windows } else { 0 },
        results,
    })
}

/// Fake-quantize the Linear weights of every block (`WEIGHT_KINDS`) in `model.params`, each (OC, C)
/// matrix with its own range (or one per row when per-channel).
pub fn quantize_weights(model: &mut Gpt, scheme: &QuantScheme) -> Result<()> {
    update_tensors(model, |t| WEIGHT_KINDS.contains(&t.kind), |t, w| scheme.fake_quantize_minmax(w, t.shape[0]))
}

/// Mean loss over windows 0..n of `split`, batched by `model.max_batch`, each batch weighted by its
/// token count; with a probe when given.
pub fn window_loss(
    model: &mut Gpt,
    data: &Dataset,
    split: Split,
    n: usize,
    mut probe: Option<&mut dyn Probe>,
) -> Result<f64> {
    let (t, b) = (model.config.block_size, model.max_batch);
    let mut windows = Windows::new(data, split, t, b, n);
    if windows.count() < n {
        return Err(Error::Data(format!("the {split} split has no window {} of {t} tokens", windows.count())));
    }
    let (mut sum, mut tokens) = (0.0, 0usize);
    while let Some(w) = windows.next_batch() {
        let nb = w.n;
        let loss =
            model.forward_probe(w.x, Some(w.y), nb, t, None, probe.as_deref_mut().map(|p| p as &mut dyn Probe))?;
        sum += loss.unwrap_or(f64::NAN) * (nb * t) as f64;
        tokens += nb * t;
    }
    if tokens == 0 {
        return Err(Error::Data(format!("no {split} windows to evaluate")));
    }
    Ok(sum / tokens as f64)
}
