//! `quietgpt experiment`: train every arm for every seed, analyse and fake-quantize each final model,
//! and write a report comparing the arms over seeds (`report`). An arm is an attention variant, or a
//! name with config overrides of its own (a control such as another optimizer; see `arms`).
//!
//! Pairing. Run (arm, seed) uses `config.seed = seed`; the trainer draws the initial weights, the
//! data order and dropout from separate streams of that seed, so runs with the same seed start from the
//! same weights and see the same batches: only the arm differs, and the report compares arms seed by
//! seed (a paired t-test).
//!
//! Layout of the output directory `out`:
//!   runs/<arm>-seed<seed>/  ckpt.safetensors (final), metrics.jsonl (trainer events),
//!                           analysis.json and quant.json (final, in full), analysis-iter<N>.json
//!                           (with `analyze_every`), done.json (the run's record, written last)
//!   locks/<arm>-seed<seed>/ the run's lock while a process checks, trains and records it
//!   experiment.json         the plan (`plan::PlanFile`), for `--merge`
//!   report.md, metrics.json, *.png
//!
//! Resuming. `done.json` is written atomically after the run's analysis and quantization, so its
//! presence means the run is complete. A re-run loads it instead of training. It also holds what the
//! run was made from (`RunSpec`: the config, the data's fingerprint and the analysis options); if that
//! differs from what the new arguments ask for, the experiment stops before training anything and names
//! the keys that changed: silently mixing runs of two configs in one report would be worse than an
//! error, and a new `--out` keeps both. The command checks this before it writes anything (the data it
//! would prepare is fingerprinted in memory first). A run without `done.json` was interrupted: it
//! resumes from its own checkpoint when that was made from the same config (and its intermediate
//! analyses are on disk), and starts again from scratch otherwise (its directory is cleared).
//!
//! One process per run: each run is locked (`locks/<run>/`) while it is checked, trained and recorded,
//! and its trainer locks its run directory. An unsharded experiment also locks `out` as a whole, as
//! `--merge` does; shards (`run_shard`) do not, so that they run side by side (see `plan`). A run that
//! diverges (a non-finite loss or gradient norm) is recorded as diverged, left
//! out of the statistics and named in the report; the other runs go on.
//!
//! Intermediate analyses (`analyze_every = N`): training runs in segments, the trainer's
//! `config.max_iters` raised to N, 2N, .. and finally to the real max_iters on the same in-memory
//! `Trainer`. Nothing else in the loop depends on max_iters (the learning rate follows
//! `lr_decay_iters`), so the trained weights are exactly those of one uninterrupted run; each segment
//! end adds one evaluation (from its own RNG stream, which moves no training state). At each segment
//! end the model is analysed and evaluated in float32 and W8A8 only (the full quantization table is
//! for the final model).

//!
//! Layout: `arms` (what `--variants` lists), `presets` (the quick and default presets), `runner`
//! (training, evaluation, histogram samples, the report), `plan` (shards, the plan file, `merge`),
//! `resume` (finished runs and what changed); the records themselves are plain data in
//! `analysis::record`, re-exported here.

mod arms;
mod plan;
mod presets;
mod resume;
mod runner;

pub use super::record::*;
pub use arms::Arm;
pub use plan::{parse_shard, wait_lock, PlanFile, PLAN_FILE};
pub use presets::{Preset, BB, BB_QUICK, DEFAULT, QUICK};

use super::analyze::AnalyzeOptions;
use super::report::ReportMeta;
use crate::config::{AttentionKind, Config};
use crate::data::{prepare, read_input, tokenize, Dataset, TokenizerKind, TRAIN_BIN, VAL_BIN};
use crate::fs::DirLock;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Make sure `data_dir` holds prepared data: with `input`, that text prepared (left as it is when the
/// data there is already exactly what the text gives); without, Tiny Shakespeare (downloaded into
/// `data_dir`) if `train.bin` or `val.bin` is missing. It holds `data_dir`'s lock while it checks and
/// writes, waiting for another experiment process (a shard) that holds it. Returns whether it prepared.
pub fn ensure_data(input: Option<&Path>, data_dir: &Path, kind: TokenizerKind) -> Result<bool> {
    let have = || data_dir.join(TRAIN_BIN).exists() && data_dir.join(VAL_BIN).exists();
    if input.is_none() && have() {
        return Ok(false);
    }
    let _lock = plan::wait_lock(data_dir, "experiment, preparing its data")?;
    if input.is_none() && have() {
        return Ok(false);
    }
    let text = read_input(input, data_dir)?;
    if input.is_some() && have() {
        let (tok, train, val) = tokenize(&text, kind)?;
        if let Ok(d) = Dataset::open(data_dir) {
            if d.tokenizer == tok && d.train == train && d.val == val {
                return Ok(false);
            }
        }
    }
    prepare(&text, data_dir, kind)?;
    Ok(true)
}

/// The fingerprint of the data `ensure_data` would leave in `data_dir`, without writing anything: of
/// `input` tokenized in memory, or of the prepared data already there. None when it would have to be
/// downloaded first.
pub fn planned_data(input: Option<&Path>, data_dir: &Path, kind: TokenizerKind) -> Result<Option<DataFingerprint>> {
    if let Some(p) = input {
        let text = read_input(Some(p), data_dir)?;
        let (tok, train, val) = tokenize(&text, kind)?;
        return Ok(Some(DataFingerprint::of_tokens(tok.vocab_size(), &train, &val)));
    }
    if data_dir.join(TRAIN_BIN).exists() && data_dir.join(VAL_BIN).exists() {
        return Ok(Some(DataFingerprint::of(&Dataset::open(data_dir)?)));
    }
    Ok(None)
}

/// The whole experiment; `run` does it (or `run_shard` its share, and `merge` the report).
pub struct Experiment {
    /// Config of every run (data_dir set); each arm's overrides, its attention, `seed` and `out_dir`
    /// are set per run.
    pub base: Config,
    pub arms: Vec<Arm>,
    pub seeds: Vec<u64>,
    pub out: PathBuf,
    pub options: RunOptions,
    /// Val windows whose values the report's histograms show.
    pub hist_windows: usize,
    /// The layer whose sink metrics the report plots through training (None: the last).
    pub plot_layer: Option<usize>,
    /// The lock on `out`, once taken (`lock`).
    held: OnceLock<DirLock>,
}

impl Experiment {
    /// `preset`'s defaults with `overrides` (`key=value`, as `train`) on top. The presets decay the
    /// learning rate over the whole run, so an override of `max_iters` alone moves `lr_decay_iters` with it.
    pub fn new(preset: &Preset, overrides: &[String], arms: Vec<Arm>, seeds: Vec<u64>, out: PathBuf) -> Result<Self> {
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
        let hist_windows = preset.hist_windows;
        Ok(Experiment { base, arms, seeds, out, options, hist_windows, plot_layer: None, held: OnceLock::new() })
    }

    /// Lock the output directory for this experiment (until it is dropped): an unsharded `run` and
    /// `merge` do; shards lock only the runs they train (`runner`).
    pub fn lock(&self) -> Result<()> {
        if self.held.get().is_none() {
            let what = format!("experiment, {} arms x {} seeds", self.arms.len(), self.seeds.len());
            let _ = self.held.set(DirLock::acquire(&self.out, &what)?);
        }
        Ok(())
    }

    /// The runs in the order they are done (seed-major, so that an interrupted experiment has whole pairs).
    pub fn plan(&self) -> Vec<(&Arm, u64)> {
        self.seeds.iter().flat_map(|&s| self.arms.iter().map(move |a| (a, s))).collect()
    }

    /// Shard `i` of `n`'s runs: run k of `plan()` goes to shard k mod n.
    pub fn shard_plan(&self, i: usize, n: usize) -> Vec<(&Arm, u64)> {
        self.plan().into_iter().enumerate().filter(|(k, _)| n > 0 && k % n == i).map(|(_, r)| r).collect()
    }

    /// The record of every finished run of the plan (None where unfinished), after checking that each was
    /// made from what the arguments ask for with the data `data`; an error naming the keys otherwise.
    /// Reads only.
    pub fn check_finished(&self, data: &DataFingerprint) -> Result<Vec<Option<RunRecord>>> {
        self.validate()?;
        self.plan().into_iter().map(|(a, s)| self.load_done(a, s, &self.spec(a, s, data)?)).collect()
    }

    /// The arm the others are compared with: softmax's if there is one, else the first.
    pub fn baseline(&self) -> String {
        let softmax = AttentionKind::Softmax.to_string();
        match self.arms.iter().find(|a| a.name == softmax) {
            Some(a) => a.name.clone(),
            None => self.arms.first().map_or(softmax, |a| a.name.clone()),
        }
    }

    pub fn run_dir(&self, arm: &Arm, seed: u64) -> PathBuf {
        self.out.join("runs").join(run_name(&arm.name, seed))
    }

    /// The config of one run.
    pub fn config(&self, arm: &Arm, seed: u64) -> Result<Config> {
        let mut c = arm.apply(&self.base)?;
        c.seed = seed;
        c.out_dir = self.run_dir(arm, seed).display().to_string();
        // The final model is analysed from memory, but the report's histograms load the checkpoint,
        // which must be the final one, not the best.
        c.always_save_checkpoint = true;
        c.eval_only = false;
        Ok(c)
    }

    pub(super) fn spec(&self, arm: &Arm, seed: u64, data: &DataFingerprint) -> Result<RunSpec> {
        let mut config = self.config(arm, seed)?;
        (config.out_dir, config.data_dir, config.threads) = (String::new(), String::new(), 0);
        Ok(RunSpec { config, data: data.clone(), options: self.options.clone(), overrides: arm.overrides.clone() })
    }

    /// For metrics.json.
    pub fn describe(&self) -> serde_json::Value {
        self.report_meta(vec![]).describe()
    }

    pub(super) fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.arms.is_empty() || self.seeds.is_empty() {
            return bad("an experiment needs at least one arm (--variants) and one seed".into());
        }
        for (i, a) in self.arms.iter().enumerate() {
            if self.arms[..i].iter().any(|b| b.name == a.name) {
                return bad(format!("arm '{}' is listed twice", a.name));
            }
            let c = self.config(a, self.seeds[0])?;
            if c.max_iters == 0 {
                return bad(format!("arm '{}': max_iters must be at least 1 for an experiment", a.name));
            }
            if c.block_size != self.base.block_size {
                return bad(format!(
                    "arm '{}': block_size must be the experiment's (the runs share their windows)",
                    a.name
                ));
            }
        }
        for (i, s) in self.seeds.iter().enumerate() {
            if self.seeds[..i].contains(s) {
                return bad(format!("seed {s} is listed twice"));
            }
        }
        if self.options.analyze.windows == 0 || self.hist_windows == 0 || self.options.calib_windows == 0 {
            return bad("the analysis, histogram and calibration window counts must be at least 1".into());
        }
        if let Some(l) = self.plot_layer.filter(|&l| l >= self.base.n_layer) {
            return bad(format!("--plot_layer {l}: the model has layers 0..{}", self.base.n_layer - 1));
        }
        Ok(())
    }

    /// What the report needs to know about the experiment; `missing` names the runs it lacks.
    pub fn report_meta(&self, missing: Vec<String>) -> ReportMeta {
        ReportMeta {
            base: self.base.clone(),
            arms: self.arms.clone(),
            seeds: self.seeds.clone(),
            baseline: self.baseline(),
            options: self.options.clone(),
            hist_windows: self.hist_windows,
            out: self.out.clone(),
            plot_layer: self.plot_layer.unwrap_or(self.base.n_layer.saturating_sub(1)),
            missing,
        }
    }
}

/// `<arm>-seed<seed>`: a run's folder under `runs/`, and its name in messages.
pub fn run_name(arm: &str, seed: u64) -> String {
    format!("{arm}-seed{seed}")
}

pub const DONE_FILE: &str = "done.json";
