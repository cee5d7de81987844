//! Running an experiment: the plan (seed-major), training each unfinished run in segments with its
//! intermediate analyses, the final analysis and quantize-eval, the histogram samples, and the report.

use super::resume::read_curve;
use super::{Experiment, DONE_FILE};
use crate::analysis::analyze::{analyze, Analysis};
use crate::analysis::quantize_eval::{quantize_eval, QuantEvalOptions, QuantReport, Setting};
use crate::analysis::record::{DataFingerprint, HistSamples, QuantResult, RunRecord, RunSpec, Snapshot, Summary};
use crate::analysis::report;
use crate::analysis::windows::Windows;
use crate::config::AttentionKind;
use crate::data::{check_same_vocab, Dataset, Split};
use crate::engine::cpu::{Point, Probe};
use crate::fs::write_json_atomic;
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
        let samples = self.histogram_samples(&records, say)?;
        say("writing the report");
        let path = report::write(&self.report_meta(), &records, &samples)?;
        Ok((records, path))
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
                write_json_atomic(&dir.join(format!("analysis-iter{stop}.json")), &a)?;
                snapshots.push(Snapshot { iter: stop, summary: Summary::of(&a), quant: QuantResult::list(&q) });
            }
        }
        tr.config.max_iters = max;
        clock.iters_done = base_done + max;
        say(&format!("{tag}: trained; analysing and quantizing"));
        let (a, q) = self.evaluate(&mut tr, None)?;
        write_json_atomic(&dir.join("analysis.json"), &a)?;
        write_json_atomic(&dir.join("quant.json"), &q)?;
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
            quant: QuantResult::list(&q),
            snapshots,
        };
        write_json_atomic(&dir.join(DONE_FILE), &rec)?;
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

    /// The histogram samples of the first seed's run of each variant (see `HistSamples`), over the first
    /// `hist_windows` val windows, from each run's final checkpoint.
    fn histogram_samples(&self, runs: &[RunRecord], say: &mut dyn FnMut(&str)) -> Result<Vec<HistSamples>> {
        let first = self.seeds.first().copied();
        let firsts: Vec<&RunRecord> = self
            .variants
            .iter()
            .filter_map(|&v| runs.iter().find(|r| r.variant == v && Some(r.seed) == first))
            .collect();
        if firsts.is_empty() {
            return Ok(vec![]);
        }
        say(&format!("report: value histograms of {} val windows per first-seed run", self.hist_windows));
        let data = Dataset::open(Path::new(&self.base.data_dir))?;
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
        let path = self.run_dir(r.variant, r.seed).join(CKPT_FILE);
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
        Ok(HistSamples { variant: r.variant, seed: r.seed, residual, attn_out })
    }
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
