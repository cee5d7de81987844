//! Running an experiment: the plan (seed-major), training each unfinished run in segments with its
//! intermediate analyses, the final analysis and quantize-eval, the histogram samples, and the report.

use super::resume::read_curve;
use super::{run_name, Arm, Experiment, DONE_FILE};
use crate::analysis::analyze::{analyze, Analysis};
use crate::analysis::quantize_eval::{quantize_eval, QuantEvalOptions, QuantReport, Setting};
use crate::analysis::record::{DataFingerprint, HistSamples, QuantResult, RunRecord, RunSpec, Snapshot, Summary};
use crate::analysis::report;
use crate::analysis::windows::Windows;
use crate::config::Config;
use crate::data::{check_same_vocab, Dataset, Split};
use crate::engine::cpu::{Point, Probe};
use crate::fs::{write_json_atomic, DirLock};
use crate::train::checkpoint::{self, CKPT_FILE};
use crate::train::trainer::{Event, Trainer, METRICS_FILE};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

impl Experiment {
    /// Train what is not finished, then write the report; `say` gets progress lines. Returns the
    /// records (in seed-major order) and the report's path.
    pub fn run(&self, say: &mut dyn FnMut(&str)) -> Result<(Vec<RunRecord>, PathBuf)> {
        self.validate()?;
        self.lock()?;
        let fp = self.data_fingerprint()?;
        self.write_plan(&fp)?;
        let records = self.train_runs(&self.plan(), &fp, say)?;
        let path = self.write_report(&records, vec![], say)?;
        Ok((records, path))
    }

    /// The fingerprint of the prepared data in `base.data_dir` (checking its length against block_size).
    pub fn data_fingerprint(&self) -> Result<DataFingerprint> {
        let data = Dataset::for_config(&self.base, Path::new(&self.base.data_dir))?;
        data.check_block_size(self.base.block_size)?;
        Ok(DataFingerprint::of(&data))
    }

    /// Train the unfinished runs of `runs` (a part of `plan()`), each under its own lock; the records
    /// of all of them, finished before or now.
    pub(super) fn train_runs(
        &self,
        runs: &[(&Arm, u64)],
        fp: &DataFingerprint,
        say: &mut dyn FnMut(&str),
    ) -> Result<Vec<RunRecord>> {
        // Check every finished run first, so that a changed argument fails before any training.
        let done = self.check_finished(fp)?;
        let plan = self.plan();
        let mut todo_iters = 0;
        for (&(a, s), d) in plan.iter().zip(&done) {
            if d.is_none() && runs.contains(&(a, s)) {
                todo_iters += self.config(a, s)?.max_iters;
            }
        }
        let mut clock = Clock { start: Instant::now(), iters_done: 0, iters_total: todo_iters };
        let mut records = vec![];
        for (k, &(a, s)) in runs.iter().enumerate() {
            let tag = format!("[run {}/{}] {} seed {s}", k + 1, runs.len(), a.name);
            let finished = |r: RunRecord, say: &mut dyn FnMut(&str)| {
                say(&format!("{tag}: already finished ({}), skipping", self.run_dir(a, s).join(DONE_FILE).display()));
                r
            };
            let spec = self.spec(a, s, fp)?;
            if let Some(r) = self.load_done(a, s, &spec)? {
                records.push(finished(r, say));
                continue;
            }
            // Another process may have finished it meanwhile: look again under the run's lock.
            let what = format!("experiment, run {}", run_name(&a.name, s));
            let _lock = DirLock::acquire(&self.out.join(LOCKS_DIR).join(run_name(&a.name, s)), &what)?;
            let r = match self.load_done(a, s, &spec)? {
                Some(r) => finished(r, say),
                None => self.train(a, s, &spec, &tag, &mut clock, say)?,
            };
            records.push(r);
        }
        let diverged = records.iter().filter(|r| r.diverged.is_some()).count();
        if diverged > 0 {
            say(&format!(
                "{diverged} of {} runs diverged; the report leaves them out of the statistics",
                records.len()
            ));
        }
        Ok(records)
    }

    /// The histogram samples and the report of `records`; `missing` names the runs without a record.
    pub(super) fn write_report(
        &self,
        records: &[RunRecord],
        missing: Vec<String>,
        say: &mut dyn FnMut(&str),
    ) -> Result<PathBuf> {
        let samples = self.histogram_samples(records, say)?;
        say("writing the report");
        report::write(&self.report_meta(missing), records, &samples)
    }

    /// A trainer that continues the interrupted run in `dir` from its checkpoint, with the snapshots
    /// it already made; None (after saying why) when there is nothing to continue from.
    fn resumable(&self, dir: &Path, cfg: &Config, stops: &[usize], say: &mut dyn FnMut(&str)) -> Option<Resumed> {
        let path = dir.join(CKPT_FILE);
        if !path.exists() {
            return None;
        }
        let ck = match checkpoint::load(&path) {
            Ok(ck) => ck,
            Err(e) => {
                say(&format!("  cannot continue from {} ({e})", path.display()));
                return None;
            }
        };
        // The config as the trainer saved it: max_iters is the segment's, the paths may differ.
        let plain = |c: &Config| {
            let mut c = c.clone();
            (c.max_iters, c.out_dir, c.data_dir, c.threads) = (0, String::new(), String::new(), 0);
            c
        };
        let at = ck.state.iter_num;
        if plain(&ck.config) != plain(cfg) || at > cfg.max_iters {
            say(&format!("  {} was made from other settings", path.display()));
            return None;
        }
        let snapshots: Vec<Snapshot> = std::fs::read_to_string(dir.join(SNAPSHOTS_FILE))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let snapshots: Vec<Snapshot> = snapshots.into_iter().filter(|s| s.iter <= at).collect();
        let needed = stops.iter().filter(|&&s| s < at && s < cfg.max_iters).count();
        if snapshots.iter().filter(|s| s.iter < at).count() != needed {
            say(&format!("  the intermediate analyses before iter {at} are missing"));
            return None;
        }
        drop(ck);
        let overrides = [
            format!("data_dir={}", toml::Value::String(cfg.data_dir.clone())),
            format!("threads={}", cfg.threads),
            format!("max_iters={at}"),
        ];
        match Trainer::resume(dir, &overrides) {
            Ok(tr) => Some(Resumed { tr, snapshots }),
            Err(e) => {
                say(&format!("  cannot continue from {} ({e})", path.display()));
                None
            }
        }
    }

    fn train(
        &self,
        arm: &Arm,
        seed: u64,
        spec: &RunSpec,
        tag: &str,
        clock: &mut Clock,
        say: &mut dyn FnMut(&str),
    ) -> Result<RunRecord> {
        let dir = self.run_dir(arm, seed);
        let t0 = Instant::now();
        let cfg = self.config(arm, seed)?;
        let max = cfg.max_iters;
        let every = self.options.analyze_every;
        let stops: Vec<usize> =
            (1..).map(|k| k * every.max(1)).take_while(|&i| every > 0 && i < max).chain([max]).collect();
        let (mut tr, mut snapshots) = match self.resumable(&dir, &cfg, &stops, say) {
            Some(Resumed { tr, snapshots }) => {
                say(&format!(
                    "{tag}: unfinished run found (no {DONE_FILE}); continuing from its checkpoint at iter {}",
                    tr.state.iter_num
                ));
                (tr, snapshots)
            }
            None => {
                if dir.exists() {
                    say(&format!("{tag}: unfinished run found (no {DONE_FILE}); starting it again"));
                    std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                }
                (Trainer::new(cfg)?, vec![])
            }
        };
        let start = tr.state.iter_num;
        clock.iters_total = clock.iters_total.saturating_sub(start);
        let base_done = clock.iters_done;
        let mut diverged = None;
        for &stop in &stops {
            if snapshots.iter().any(|s| s.iter == stop) {
                continue;
            }
            if stop > tr.state.iter_num {
                tr.config.max_iters = stop;
                let res = tr.run(&mut |e| {
                    if let Event::Eval { iter, train_loss, val_loss, .. } = e {
                        clock.iters_done = base_done + iter - start;
                        say(&format!(
                            "{tag}: iter {iter}/{max}, train loss {train_loss:.4}, val loss {val_loss:.4}, ETA {}",
                            clock.eta()
                        ));
                    }
                });
                match res {
                    Err(Error::Diverged(m)) => {
                        diverged = Some(m);
                        break;
                    }
                    r => r?,
                }
            }
            if stop < max {
                let (a, q) = self.evaluate(&mut tr, Some("W8A8"))?;
                write_json_atomic(&dir.join(format!("analysis-iter{stop}.json")), &a)?;
                snapshots.push(Snapshot { iter: stop, summary: Summary::of(&a), quant: QuantResult::list(&q) });
                write_json_atomic(&dir.join(SNAPSHOTS_FILE), &snapshots)?;
            }
        }
        clock.iters_done = base_done + max - start;
        let curve = read_curve(&dir.join(METRICS_FILE))?;
        let opt = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.4}"));
        if let Some(m) = diverged {
            let rec = RunRecord {
                arm: arm.name.clone(),
                variant: arm.attention,
                seed,
                spec: spec.clone(),
                seconds: t0.elapsed().as_secs_f64(),
                iter: tr.state.iter_num,
                train_loss: None,
                val_loss: None,
                curve,
                summary: Summary::empty(),
                quant: vec![],
                snapshots,
                diverged: Some(m.clone()),
            };
            write_json_atomic(&dir.join(DONE_FILE), &rec)?;
            say(&format!(
                "{tag}: DIVERGED ({m}); recorded as diverged, going on with the other runs, ETA {}",
                clock.eta()
            ));
            return Ok(rec);
        }
        tr.config.max_iters = max;
        say(&format!("{tag}: trained; analysing and quantizing"));
        let (a, q) = self.evaluate(&mut tr, None)?;
        write_json_atomic(&dir.join("analysis.json"), &a)?;
        write_json_atomic(&dir.join("quant.json"), &q)?;
        let last = curve.last().cloned();
        let rec = RunRecord {
            arm: arm.name.clone(),
            variant: arm.attention,
            seed,
            spec: spec.clone(),
            seconds: t0.elapsed().as_secs_f64(),
            iter: max,
            train_loss: last.as_ref().and_then(|p| p.train_loss),
            val_loss: last.and_then(|p| p.val_loss),
            curve,
            summary: Summary::of(&a),
            quant: QuantResult::list(&q),
            snapshots,
            diverged: None,
        };
        write_json_atomic(&dir.join(DONE_FILE), &rec)?;
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
        let mut model = tr.cpu_model(tr.config.batch_size)?;
        let a = analyze(&mut model, &tr.data, &self.options.analyze)?;
        let settings = Setting::standard(99.99).into_iter().filter(|s| only.is_none_or(|o| s.name == o)).collect();
        let o = &self.options;
        let qopts = QuantEvalOptions {
            max_windows: (o.quant_windows > 0).then_some(o.quant_windows),
            calib_windows: o.calib_windows,
            settings,
        };
        let q = quantize_eval(&mut model, &tr.data, &qopts)?;
        Ok((a, q))
    }

    /// The histogram samples of the first seed's run of each arm (see `HistSamples`), over the first
    /// `hist_windows` val windows, from each run's final checkpoint.
    fn histogram_samples(&self, runs: &[RunRecord], say: &mut dyn FnMut(&str)) -> Result<Vec<HistSamples>> {
        let first = self.seeds.first().copied();
        let firsts: Vec<&RunRecord> = self
            .arms
            .iter()
            .filter_map(|a| runs.iter().find(|r| r.arm == a.name && Some(r.seed) == first && r.diverged.is_none()))
            .collect();
        if firsts.is_empty() {
            return Ok(vec![]);
        }
        say(&format!("report: value histograms of {} val windows per first-seed run", self.hist_windows));
        let data = Dataset::for_config(&self.base, Path::new(&self.base.data_dir))?;
        firsts.iter().map(|r| self.sample_values(r, &data)).collect()
    }

    /// Values of the residual stream ([0]) and the attention output ([1]) per layer, over the first
    /// `hist_windows` val windows, from the run's final checkpoint.
    fn sample_values(&self, r: &RunRecord, data: &Dataset) -> Result<HistSamples> {
        struct Collect([Vec<Vec<f32>>; 2]);
        impl Probe<f32> for Collect {
            fn observe(&mut self, layer: usize, point: Point, x: &[f32]) {
                let k = match point {
                    Point::Residual => 0,
                    Point::AttnOut => 1,
                    _ => return,
                };
                if let Some(v) = self.0[k].get_mut(layer) {
                    v.extend_from_slice(x);
                }
            }
        }
        let path = self.out.join("runs").join(run_name(&r.arm, r.seed)).join(CKPT_FILE);
        let batch = 8;
        let ck = checkpoint::load(&path)?;
        check_same_vocab(data, &path, &ck.tokenizer)?;
        let mut model = ck.cpu_model(batch)?;
        let (t, l) = (model.config.block_size, model.config.n_layer);
        let mut probe = Collect([vec![vec![]; l], vec![vec![]; l]]);
        let mut windows = Windows::new(data, Split::Val, t, batch, self.hist_windows);
        while let Some(w) = windows.next_batch() {
            model.forward_probe(w.x, None, w.n, t, None, Some(&mut probe as &mut dyn Probe<f32>))?;
        }
        let [residual, attn_out] = probe.0;
        Ok(HistSamples { arm: r.arm.clone(), seed: r.seed, residual, attn_out })
    }
}

/// Where the runs' locks are, under the output directory: `locks/<arm>-seed<seed>/`.
pub const LOCKS_DIR: &str = "locks";

/// The intermediate analyses' records so far (`Snapshot`s), beside a run's checkpoint, so that an
/// interrupted run can continue.
pub const SNAPSHOTS_FILE: &str = "snapshots.json";

/// An interrupted run's trainer, restored from its checkpoint, with its snapshots so far.
struct Resumed {
    tr: Trainer,
    snapshots: Vec<Snapshot>,
}

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
