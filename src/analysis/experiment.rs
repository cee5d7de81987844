//! `quietgpt experiment`: train every attention variant for every seed, analyse and fake-quantize each
//! final model, and write a report comparing the variants over seeds (`report`).
//!
//! Pairing. Run (variant, seed) uses `config.seed = seed`; the trainer draws the initial weights, the
//! data order and dropout from separate streams of that seed, so runs with the same seed start from the
//! same weights and see the same batches: only the attention differs, and the report compares
//! variants seed by seed (a paired t-test).
//!
//! Layout of the output directory `out`:
//!   runs/<variant>-seed<seed>/  ckpt.safetensors (final), metrics.jsonl (trainer events),
//!                               analysis.json and quant.json (final, in full), analysis-iter<N>.json
//!                               (with `analyze_every`), done.json (the run's record, written last)
//!   report.md, metrics.json, *.png
//!
//! Resuming. `done.json` is written atomically after the run's analysis and quantization, so its
//! presence means the run is complete. A re-run loads it instead of training. It also holds what the
//! run was made from (`RunSpec`: the config, the data's fingerprint and the analysis options); if that
//! differs from what the new arguments ask for, the experiment stops before training anything and names
//! the keys that changed: silently mixing runs of two configs in one report would be worse than an
//! error, and a new `--out` keeps both. A run without `done.json` was interrupted and starts again from
//! scratch (its directory is cleared).
//!
//! Intermediate analyses (`analyze_every = N`): training runs in segments, the trainer's
//! `config.max_iters` raised to N, 2N, .. and finally to the real max_iters on the same in-memory
//! `Trainer`. Nothing else in the loop depends on max_iters (the learning rate follows
//! `lr_decay_iters`), so the trained weights are exactly those of one uninterrupted run; each segment
//! end adds one evaluation (from its own RNG stream, which moves no training state). At each segment
//! end the model is analysed and evaluated in float32 and W8A8 only (the full quantization table is
//! for the final model).

use super::analyze::{analyze, Analysis, AnalyzeOptions};
use super::quantize_eval::{quantize_eval, QuantEvalOptions, QuantReport, Setting};
use super::report;
use crate::config::{AttentionKind, Config};
use crate::data::{prepare, read_input, write_atomic, Dataset, TokenizerKind, TRAIN_BIN, VAL_BIN};
use crate::train::trainer::{Event, Trainer, METRICS_FILE};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A named set of defaults: the config preset of the runs and evaluation sizes.
pub struct Preset {
    pub name: &'static str,
    /// The config preset (`configs/<name>.toml`) the runs start from, before the user's overrides.
    pub config: &'static str,
    pub seeds: usize,
    pub analyze_windows: usize,
    /// Val windows for quantize-eval (0 = all).
    pub quant_windows: usize,
    pub calib_windows: usize,
    pub hist_windows: usize,
}

/// The default experiment: 2 variants × 3 seeds in about 30 minutes on a 2-core CPU.
///
/// Budget. Measured on the 2-core machine this was written on (other builds often shared it, so the
/// numbers vary by ±30%): `quietgpt bench --preset tiny` (4/4/128, block 64, batch 12) takes 30–40 ms
/// per iteration; 6 layers of 4 heads at n_embd 128 take about 1.7× that (55–70 ms: time grows with
/// layers × tokens), 6/6/192 about 3× (100–125 ms). Six runs in 30 minutes leave 300 s per run.
/// One run of this preset: 3000 iterations × ~68 ms ≈ 205 s; 21 evaluations of 2 × 20 forward
/// batches ≈ 23 s; the analysis (32 windows) under 1 s; quantize-eval (float32 and 7 settings on the
/// first 256 of the 1742 val windows, 64 calibration windows) ≈ 8 s. About 240 s per run, 24 minutes
/// for the six, plus a few seconds for the report. Checked: one run of this preset took 261 s with
/// other compile jobs on the machine (load ≈ 2.5 on the 2 cores), i.e. 26 minutes for the six.
///
/// Why this shape. Within the budget, depth and training length are what outliers need: they are
/// absent at initialisation and grow as attention heads learn to "do nothing" (Bondarenko et al.
/// 2023), and the residual stream accumulates them block after block. So the budget goes to 6 layers
/// trained for 3000 iterations (2.3M tokens, about 2.3 epochs of Tiny Shakespeare; val loss ≈ 1.8)
/// rather than to width: 6/6/192 would fit only ~1700 iterations. Block 64 keeps attention cheap;
/// dropout 0 (as nanoGPT's CPU recipe), so that the only randomness is the initialisation and the
/// data order, both shared by a seed's runs. Quantize-eval over all val windows would take ~57 s per
/// run: capped at 256 windows (16k tokens), the gap is still measured on the same tokens for every
/// variant and seed.
pub const DEFAULT: Preset = Preset {
    name: "default",
    config: "experiment",
    seeds: 3,
    analyze_windows: 32,
    quant_windows: 256,
    calib_windows: 64,
    hist_windows: 8,
};

/// `--quick`: a CI smoke test of the whole pipeline (2 layers of n_embd 32, 100 iterations, 2 seeds,
/// a handful of windows); a few seconds on 2 cores. The numbers it reports mean nothing.
pub const QUICK: Preset = Preset {
    name: "quick",
    config: "experiment-quick",
    seeds: 2,
    analyze_windows: 8,
    quant_windows: 16,
    calib_windows: 8,
    hist_windows: 4,
};

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
    pub fn of(data: &Dataset) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &t in data.train.iter().chain(&data.val) {
            for b in t.to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
        DataFingerprint {
            vocab_size: data.tokenizer.vocab_size(),
            train_tokens: data.train.len(),
            val_tokens: data.val.len(),
            fnv1a: format!("{h:016x}"),
        }
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

/// Per-layer numbers of an analysis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    pub max_abs_residual: Option<f64>,
    pub max_abs_attn_out: Option<f64>,
    pub kurtosis_attn_out: Option<f64>,
    pub kurtosis_residual: Option<f64>,
    pub outlier_fraction_residual: Option<f64>,
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
}

fn fin(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn mean(xs: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = xs.into_iter().flatten().filter(|x| x.is_finite()).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

impl Summary {
    pub fn of(a: &Analysis) -> Self {
        let layers: Vec<LayerSummary> = a
            .layers
            .iter()
            .map(|l| LayerSummary {
                max_abs_residual: fin(l.residual.max_abs),
                max_abs_attn_out: fin(l.attn_out.max_abs),
                kurtosis_attn_out: l.attn_out.excess_kurtosis.and_then(fin),
                kurtosis_residual: l.residual.excess_kurtosis.and_then(fin),
                outlier_fraction_residual: fin(l.residual.outlier_fraction),
            })
            .collect();
        let (outliers, numel) =
            a.layers.iter().fold((0u64, 0u64), |(o, n), l| (o + l.residual.outliers, n + l.residual.numel));
        let heads = a.layers.iter().flat_map(|l| &l.heads);
        Summary {
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
}

impl RunRecord {
    pub fn quant_loss(&self, name: &str) -> Option<f64> {
        self.quant.iter().find(|q| q.name == name).and_then(|q| q.loss)
    }
    pub fn quant_gap(&self, name: &str) -> Option<f64> {
        self.quant.iter().find(|q| q.name == name).and_then(|q| q.gap)
    }
}

/// Make sure `data_dir` holds prepared data: with `input`, prepare it from that text (always, so the
/// data is what the file says); without, prepare Tiny Shakespeare (downloaded into `data_dir`) if
/// `train.bin` or `val.bin` is missing. Returns whether it prepared.
pub fn ensure_data(input: Option<&Path>, data_dir: &Path, kind: TokenizerKind) -> Result<bool> {
    if input.is_none() && data_dir.join(TRAIN_BIN).exists() && data_dir.join(VAL_BIN).exists() {
        return Ok(false);
    }
    let text = read_input(input, data_dir)?;
    prepare(&text, data_dir, kind)?;
    Ok(true)
}

/// The whole experiment; `run` does it.
pub struct Experiment {
    /// Config of every run (data_dir set); `attention`, `seed` and `out_dir` are set per run.
    pub base: Config,
    pub variants: Vec<AttentionKind>,
    pub seeds: Vec<u64>,
    pub out: PathBuf,
    pub options: RunOptions,
    /// Val windows whose values the report's histograms show.
    pub hist_windows: usize,
}

impl Experiment {
    /// `preset`'s defaults with `overrides` (`key=value`, as `train`) on top. The presets decay the
    /// learning rate over the whole run, so an override of `max_iters` alone moves `lr_decay_iters` with it.
    pub fn new(
        preset: &Preset,
        overrides: &[String],
        variants: Vec<AttentionKind>,
        seeds: Vec<u64>,
        out: PathBuf,
    ) -> Result<Self> {
        let key = |o: &String| crate::config::parse_override(o).map(|(k, _)| k).unwrap_or_default();
        let mut all: Vec<String> = overrides.to_vec();
        if let Some(m) = overrides.iter().rev().find(|o| key(o) == "max_iters") {
            if !overrides.iter().any(|o| key(o) == "lr_decay_iters") {
                let v = m.split_once('=').map_or("", |(_, v)| v);
                all.push(format!("lr_decay_iters={v}"));
            }
        }
        let base = Config::build(Some(preset.config), None, &all)?;
        let options = RunOptions {
            analyze: AnalyzeOptions { windows: preset.analyze_windows, ..AnalyzeOptions::default() },
            quant_windows: preset.quant_windows,
            calib_windows: preset.calib_windows,
            analyze_every: 0,
        };
        Ok(Experiment { base, variants, seeds, out, options, hist_windows: preset.hist_windows })
    }

    /// The variant the others are compared with: softmax if requested, else the first one.
    pub fn baseline(&self) -> AttentionKind {
        match self.variants.first() {
            Some(&first) if !self.variants.contains(&AttentionKind::Softmax) => first,
            _ => AttentionKind::Softmax,
        }
    }

    pub fn run_dir(&self, v: AttentionKind, seed: u64) -> PathBuf {
        self.out.join("runs").join(format!("{v}-seed{seed}"))
    }

    /// The config of one run.
    pub fn config(&self, v: AttentionKind, seed: u64) -> Config {
        let mut c = self.base.clone();
        c.attention = v;
        c.seed = seed;
        c.out_dir = self.run_dir(v, seed).display().to_string();
        // The final model is analysed from memory, but the report's histograms load the checkpoint,
        // which must be the final one, not the best.
        c.always_save_checkpoint = true;
        c.eval_only = false;
        c
    }

    fn spec(&self, v: AttentionKind, seed: u64, data: &DataFingerprint) -> RunSpec {
        let mut config = self.config(v, seed);
        (config.out_dir, config.data_dir, config.threads) = (String::new(), String::new(), 0);
        RunSpec { config, data: data.clone(), options: self.options.clone() }
    }

    /// For metrics.json.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "variants": self.variants, "seeds": self.seeds, "baseline": self.baseline(), "out": self.out,
            "base_config": self.base, "options": self.options, "hist_windows": self.hist_windows,
        })
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.variants.is_empty() || self.seeds.is_empty() {
            return bad("an experiment needs at least one variant and one seed".into());
        }
        for (i, v) in self.variants.iter().enumerate() {
            if self.variants[..i].contains(v) {
                return bad(format!("variant '{v}' is listed twice"));
            }
        }
        for (i, s) in self.seeds.iter().enumerate() {
            if self.seeds[..i].contains(s) {
                return bad(format!("seed {s} is listed twice"));
            }
        }
        if self.base.max_iters == 0 {
            return bad("max_iters must be at least 1 for an experiment".into());
        }
        if self.options.analyze.windows == 0 || self.hist_windows == 0 || self.options.calib_windows == 0 {
            return bad("the analysis, histogram and calibration window counts must be at least 1".into());
        }
        Ok(())
    }

    /// Train what is not finished, then write the report; `say` gets progress lines. Returns the
    /// records (in seed-major order) and the report's path.
    pub fn run(&self, say: &mut dyn FnMut(&str)) -> Result<(Vec<RunRecord>, PathBuf)> {
        self.validate()?;
        let data = Dataset::open(Path::new(&self.base.data_dir))?;
        data.check_block_size(self.base.block_size)?;
        let fp = DataFingerprint::of(&data);
        drop(data);
        // Seed-major order, so that an interrupted experiment has whole pairs.
        let plan: Vec<(AttentionKind, u64)> =
            self.seeds.iter().flat_map(|&s| self.variants.iter().map(move |&v| (v, s))).collect();
        // Check every finished run first, so that a changed argument fails before any training.
        let mut done: Vec<Option<RunRecord>> = vec![];
        for &(v, s) in &plan {
            done.push(self.load_done(v, s, &self.spec(v, s, &fp))?);
        }
        let todo_iters = done.iter().filter(|d| d.is_none()).count() * self.base.max_iters;
        let mut clock = Clock { start: Instant::now(), iters_done: 0, iters_total: todo_iters };
        let mut records = vec![];
        for (k, (&(v, s), d)) in plan.iter().zip(done).enumerate() {
            let tag = format!("[run {}/{}] {v} seed {s}", k + 1, plan.len());
            let r = match d {
                Some(r) => {
                    say(&format!(
                        "{tag}: already finished ({}), skipping",
                        self.run_dir(v, s).join(DONE_FILE).display()
                    ));
                    r
                }
                None => self.train(v, s, &self.spec(v, s, &fp), &tag, &mut clock, say)?,
            };
            records.push(r);
        }
        say("writing the report");
        let path = report::write(self, &records, say)?;
        Ok((records, path))
    }

    /// The run's record if it is finished with the same spec; an error if finished with another.
    fn load_done(&self, v: AttentionKind, seed: u64, spec: &RunSpec) -> Result<Option<RunRecord>> {
        let path = self.run_dir(v, seed).join(DONE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let rec: RunRecord = serde_json::from_str(&text).map_err(|e| {
            Error::Data(format!("{}: unreadable ({e}); delete that run directory to redo the run", path.display()))
        })?;
        if rec.spec != *spec {
            return Err(Error::Config(format!(
                "{} was finished with different settings ({}); re-run with the original arguments, pass a new --out, \
                 or delete the run directory to redo it",
                path.display(),
                spec_diff(&rec.spec, spec)
            )));
        }
        Ok(Some(rec))
    }

    fn train(
        &self,
        v: AttentionKind,
        seed: u64,
        spec: &RunSpec,
        tag: &str,
        clock: &mut Clock,
        say: &mut dyn FnMut(&str),
    ) -> Result<RunRecord> {
        let dir = self.run_dir(v, seed);
        if dir.exists() {
            say(&format!("{tag}: unfinished run found (no {DONE_FILE}); starting it again"));
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let t0 = Instant::now();
        let cfg = self.config(v, seed);
        let max = cfg.max_iters;
        let mut tr = Trainer::new(cfg)?;
        let every = self.options.analyze_every;
        let stops: Vec<usize> =
            (1..).map(|k| k * every.max(1)).take_while(|&i| every > 0 && i < max).chain([max]).collect();
        let mut snapshots = vec![];
        let base_done = clock.iters_done;
        for &stop in &stops {
            tr.config.max_iters = stop;
            tr.run(&mut |e| {
                if let Event::Eval { iter, train_loss, val_loss, .. } = e {
                    clock.iters_done = base_done + iter;
                    say(&format!(
                        "{tag}: iter {iter}/{max}, train loss {train_loss:.4}, val loss {val_loss:.4}, ETA {}",
                        clock.eta()
                    ));
                }
            })?;
            if stop < max {
                let (a, q) = self.evaluate(&mut tr, Some("W8A8"))?;
                write_json(&dir.join(format!("analysis-iter{stop}.json")), &a)?;
                snapshots.push(Snapshot { iter: stop, summary: Summary::of(&a), quant: quant_results(&q) });
            }
        }
        tr.config.max_iters = max;
        clock.iters_done = base_done + max;
        say(&format!("{tag}: trained; analysing and quantizing"));
        let (a, q) = self.evaluate(&mut tr, None)?;
        write_json(&dir.join("analysis.json"), &a)?;
        write_json(&dir.join("quant.json"), &q)?;
        let curve = read_curve(&dir.join(METRICS_FILE))?;
        let last = curve.last().cloned();
        let rec = RunRecord {
            variant: v,
            seed,
            spec: spec.clone(),
            seconds: t0.elapsed().as_secs_f64(),
            iter: max,
            train_loss: last.as_ref().and_then(|p| p.train_loss),
            val_loss: last.and_then(|p| p.val_loss),
            curve,
            summary: Summary::of(&a),
            quant: quant_results(&q),
            snapshots,
        };
        write_json(&dir.join(DONE_FILE), &rec)?;
        let opt = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.4}"));
        say(&format!(
            "{tag}: done in {}: val loss {}, max |x| {}, W8A8 gap {}, ETA {}",
            duration(rec.seconds),
            opt(rec.val_loss),
            opt(rec.summary.max_abs_residual),
            opt(rec.quant_gap("W8A8")),
            clock.eta()
        ));
        Ok(rec)
    }

    /// Analysis and quantize-eval of the trainer's current model (`only`: fp32 and that one setting).
    fn evaluate(&self, tr: &mut Trainer, only: Option<&str>) -> Result<(Analysis, QuantReport)> {
        let a = analyze(&mut tr.model, &tr.data, &self.options.analyze)?;
        let settings = Setting::standard(99.99).into_iter().filter(|s| only.is_none_or(|o| s.name == o)).collect();
        let o = &self.options;
        let qopts = QuantEvalOptions {
            max_windows: (o.quant_windows > 0).then_some(o.quant_windows),
            calib_windows: o.calib_windows,
            settings,
        };
        let q = quantize_eval(&mut tr.model, &tr.data, &qopts)?;
        Ok((a, q))
    }
}

pub const DONE_FILE: &str = "done.json";

/// ETA from the elapsed time per finished training iteration of this invocation (evaluations,
/// analyses and quantization included once a run has finished).
struct Clock {
    start: Instant,
    iters_done: usize,
    iters_total: usize,
}

impl Clock {
    fn eta(&self) -> String {
        if self.iters_done == 0 {
            return "?".into();
        }
        let per = self.start.elapsed().as_secs_f64() / self.iters_done as f64;
        duration(per * self.iters_total.saturating_sub(self.iters_done) as f64)
    }
}

/// 45s, 12m, 1h05m
fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", (s + 30) / 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn quant_results(q: &QuantReport) -> Vec<QuantResult> {
    q.results.iter().map(|r| QuantResult { name: r.name.clone(), loss: fin(r.loss), gap: fin(r.gap) }).collect()
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Data(format!("{}: {e}", path.display())))? + "\n";
    write_atomic(path, text.as_bytes())
}

/// The eval events of metrics.jsonl, one per iteration (a segment boundary evaluates twice; the
/// values agree, the last is kept).
fn read_curve(path: &Path) -> Result<Vec<EvalPoint>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut points: std::collections::BTreeMap<usize, EvalPoint> = Default::default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if v["event"] == "eval" {
            if let Some(iter) = v["iter"].as_u64() {
                let (train_loss, val_loss) = (v["train_loss"].as_f64(), v["val_loss"].as_f64());
                points.insert(iter as usize, EvalPoint { iter: iter as usize, train_loss, val_loss });
            }
        }
    }
    Ok(points.into_values().collect())
}

/// "max_iters: 4000 → 2000, data changed" — the keys in which two specs differ.
fn spec_diff(old: &RunSpec, new: &RunSpec) -> String {
    let table = |c: &Config| toml::Table::try_from(c).unwrap_or_default();
    let (a, b) = (table(&old.config), table(&new.config));
    // Floats are f32 in the config: print them as such (0.001, not 0.0010000000474974513).
    let show = |v: Option<&toml::Value>| match v {
        Some(toml::Value::Float(f)) => (*f as f32).to_string(),
        Some(v) => v.to_string(),
        None => "?".into(),
    };
    let mut parts: Vec<String> = b
        .iter()
        .filter(|(k, v)| a.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: {} → {}", show(a.get(k)), show(Some(v))))
        .collect();
    if old.data != new.data {
        parts.push("the prepared data".into());
    }
    if old.options != new.options {
        parts.push(format!("analysis options: {:?} → {:?}", old.options, new.options));
    }
    if parts.is_empty() {
        parts.push("unknown".into());
    }
    parts.join(", ")
}
