//! Post-training fake quantization of a trained GPT, and its val loss against float32.
//!
//! What is quantized (as in Bondarenko et al. 2023, "Quantizable Transformers"): the weight and the
//! input of each of the four Linear layers of every block — attn.c_attn, attn.c_proj, mlp.c_fc,
//! mlp.c_proj. Biases, LayerNorms, wte/wpe (an embedding lookup is not a matmul) and the lm_head (tied
//! to wte) stay float32.
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

use super::quant::{QuantParams, QuantScheme};
use crate::config::AttentionKind;
use crate::data::{Dataset, Split};
use crate::model::params::Kind;
use crate::model::{Gpt, Linear, Probe};
use crate::{Error, Result};
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
    let original = model.params.clone();
    let out = evaluate_all(model, data, opts, &original, on_result);
    model.params.copy_from_slice(&original);
    out
}

fn evaluate_all(
    model: &mut Gpt,
    data: &Dataset,
    opts: &QuantEvalOptions,
    original: &[f32],
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
        model.params.copy_from_slice(original);
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
    for t in model.layout.named().iter().filter(|t| WEIGHT_KINDS.contains(&t.kind)) {
        scheme.fake_quantize_minmax(&mut model.params[t.offset..t.offset + t.len], t.shape[0])?;
    }
    Ok(())
}

/// Non-overlapping windows of `block` inputs (+1 target) in a split: window i covers [i·block, (i+1)·block].
pub fn count_windows(data: &Dataset, split: Split, block: usize) -> usize {
    if block == 0 {
        return 0;
    }
    data.tokens(split).len().saturating_sub(1) / block
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
    let (mut x, mut y) = (vec![0u32; b * t], vec![0u32; b * t]);
    let (mut sum, mut tokens) = (0.0, 0usize);
    let mut k = 0;
    while k < n {
        let nb = b.min(n - k);
        for (i, (xr, yr)) in x.chunks_exact_mut(t).zip(y.chunks_exact_mut(t)).take(nb).enumerate() {
            if !data.window(split, k + i, t, xr, yr) {
                return Err(Error::Data(format!("the {split} split has no window {} of {t} tokens", k + i)));
            }
        }
        let loss = model.forward_probe(
            &x[..nb * t],
            Some(&y[..nb * t]),
            nb,
            t,
            None,
            probe.as_deref_mut().map(|p| p as &mut dyn Probe),
        )?;
        sum += loss.unwrap_or(f64::NAN) * (nb * t) as f64;
        tokens += nb * t;
        k += nb;
    }
    if tokens == 0 {
        return Err(Error::Data(format!("no {split} windows to evaluate")));
    }
    Ok(sum / tokens as f64)
}

/// Records the min and max of every Linear input (leaves them unchanged).
struct MinMaxProbe {
    ranges: Vec<(f32, f32)>,
}

impl Probe for MinMaxProbe {
    fn linear_input(&mut self, layer: usize, linear: Linear, x: &mut [f32]) {
        if let Some(r) = self.ranges.get_mut(site(layer, linear)) {
            *r = x.iter().filter(|v| v.is_finite()).fold(*r, |(lo, hi), &v| (lo.min(v), hi.max(v)));
        }
    }
}

/// Fixed-size histograms of every Linear input over its calibrated [min, max].
struct HistogramProbe {
    hists: Vec<Histogram>,
}

impl Probe for HistogramProbe {
    fn linear_input(&mut self, layer: usize, linear: Linear, x: &mut [f32]) {
        if let Some(h) = self.hists.get_mut(site(layer, linear)) {
            h.add(x);
        }
    }
}

/// Fake-quantizes every Linear input with its calibrated parameters.
struct FakeQuantProbe {
    params: Vec<QuantParams>,
}

impl Probe for FakeQuantProbe {
    fn linear_input(&mut self, layer: usize, linear: Linear, x: &mut [f32]) {
        if let Some(p) = self.params.get(site(layer, linear)) {
            x.iter_mut().for_each(|v| *v = p.apply(*v));
        }
    }
}

/// 2^15 equal bins over [lo, hi]: 256 KiB per site whatever the calibration size. A percentile is
/// located to within one bin, (hi − lo)/32768, far below the 8-bit step (hi − lo)/255 of even the
/// unclipped range.
#[derive(Clone, Debug)]
pub struct Histogram {
    lo: f32,
    hi: f32,
    counts: Vec<u64>,
}

const BINS: usize = 1 << 15;

impl Histogram {
    pub fn new(lo: f32, hi: f32) -> Self {
        Histogram { lo, hi, counts: vec![0; BINS] }
    }

    /// Count the finite values of x; values outside [lo, hi] go to the end bins.
    pub fn add(&mut self, x: &[f32]) {
        let (lo, span) = (self.lo as f64, self.hi as f64 - self.lo as f64);
        let per = if span > 0.0 { BINS as f64 / span } else { 0.0 };
        for &v in x.iter().filter(|v| v.is_finite()) {
            let i = ((v as f64 - lo) * per).max(0.0) as usize;
            self.counts[i.min(BINS - 1)] += 1;
        }
    }

    /// [lo_p, hi_p] with at most ⌊(1 − p/100)·n⌋ of the n values below lo_p and as many above hi_p:
    /// hi_p is the upper edge of the bin where the top tail first exceeds that count (lo_p the lower
    /// edge, from below), so the range errs on the wide side by under one bin. p = 100 gives [lo, hi].
    pub fn percentile_range(&self, p: f64) -> (f32, f32) {
        let n: u64 = self.counts.iter().sum();
        let tail = ((1.0 - p / 100.0).max(0.0) * n as f64).floor() as u64;
        let width = (self.hi as f64 - self.lo as f64) / BINS as f64;
        let edge = |i: usize| (self.lo as f64 + i as f64 * width) as f32;
        let first = |mut it: Box<dyn Iterator<Item = usize> + '_>| {
            let mut cum = 0;
            it.find(|&i| {
                cum += self.counts[i];
                cum > tail
            })
        };
        match (first(Box::new(0..BINS)), first(Box::new((0..BINS).rev()))) {
            (Some(a), Some(b)) if n > 0 => (edge(a).max(self.lo), edge(b + 1).min(self.hi)),
            _ => (self.lo, self.hi),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles() {
        // 0..9999 and one outlier at 1e6: p99.99 clips only the outlier, p100 keeps it.
        let mut x: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
        x.push(1e6);
        let mut h = Histogram::new(0.0, 1e6);
        h.add(&x);
        let (lo, hi) = h.percentile_range(99.99);
        assert_eq!(lo, 0.0);
        assert!((9_999.0..9_999.0 + 1e6 / BINS as f32 + 1.0).contains(&hi), "{hi}");
        assert_eq!(h.percentile_range(100.0), (0.0, 1e6));
        // a constant input: the range collapses to the point and stays finite
        let mut h = Histogram::new(2.0, 2.0);
        h.add(&[2.0; 10]);
        assert_eq!(h.percentile_range(99.0), (2.0, 2.0));
    }
}
