//! The experiment's report: statistics over seeds, `report.md`, `metrics.json` and the figures.
//!
//! Statistics (no stats crate; the Student t quantiles come from a table):
//! * per variant and metric, over the n seeds whose value is finite: the mean x̄, the sample standard
//!   deviation s (n − 1 in the denominator) and the 95% confidence interval x̄ ± t_{0.975, n−1}·s/√n;
//! * each variant against the baseline (softmax) by a paired comparison: runs with the same seed share
//!   the initial weights and the data order, so d_i = variant_i − baseline_i removes the seed-to-seed
//!   variation both share. The mean difference d̄ gets the interval d̄ ± t_{0.975, n−1}·s_d/√n and the
//!   paired t statistic t = d̄ / (s_d/√n) with n − 1 degrees of freedom; the difference is "significant
//!   at 5%" iff the interval excludes 0 (equivalently |t| > t_{0.975, n−1}, a two-sided test). With
//!   fewer than 2 pairs there is no s_d and nothing can be said.
//!
//! `write` takes plain data (the experiment's `ReportMeta`, the run records and the histogram samples)
//! and runs no model. Layout: this file aggregates; `markdown` writes report.md, `figures` the PNGs;
//! the t statistics are in `analysis::ttest`.

mod figures;
mod markdown;
mod trajectories;

pub use super::ttest::{mean_ci, paired, t975, Paired, Stat};

use super::experiment::Arm;
use super::record::{HistSamples, RunOptions, RunRecord};
use crate::config::Config;
use crate::fs::{write_atomic, write_json_atomic};
use crate::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What the report needs to know about the experiment besides its runs.
#[derive(Clone, Debug)]
pub struct ReportMeta {
    /// The config every run starts from (each arm's overrides, attention, seed and out_dir are per run).
    pub base: Config,
    /// The arms (`experiment::Arm`), in the report's column order.
    pub arms: Vec<Arm>,
    /// In the experiment's order; `by_seed` lists runs in it.
    pub seeds: Vec<u64>,
    /// The arm the others are compared with.
    pub baseline: String,
    pub options: RunOptions,
    /// Val windows of the histogram samples.
    pub hist_windows: usize,
    /// The output directory: report.md, metrics.json and the figures go there.
    pub out: PathBuf,
    /// The layer whose sink metrics are plotted through training.
    pub plot_layer: usize,
    /// The runs of the plan that have no record (not finished when the report was written).
    pub missing: Vec<String>,
}

impl ReportMeta {
    /// The "experiment" entry of metrics.json.
    pub fn describe(&self) -> serde_json::Value {
        let names: Vec<&str> = self.arms.iter().map(|a| a.name.as_str()).collect();
        serde_json::json!({
            "variants": names, "arms": self.arms, "seeds": self.seeds, "baseline": self.baseline, "out": self.out,
            "base_config": self.base, "options": self.options, "hist_windows": self.hist_windows,
            "plot_layer": self.plot_layer, "missing_runs": self.missing,
        })
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.arms.iter().map(|a| a.name.as_str())
    }
}

/// One number of a run that the report aggregates.
pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub get: fn(&RunRecord) -> Option<f64>,
}

/// The metrics of the summary table, in order (definitions in `Experiment`'s `Summary`).
pub const METRICS: &[Metric] = &[
    Metric { key: "val_loss", label: "val loss (final eval, eval_iters random batches)", get: |r| r.val_loss },
    Metric { key: "fp32_loss", label: "val loss (float32, fixed val windows)", get: |r| r.quant_loss("fp32") },
    Metric {
        key: "max_abs_residual",
        label: "max \\|x\\| of the residual stream (max over layers)",
        get: |r| r.summary.max_abs_residual,
    },
    Metric {
        key: "kurtosis_attn_out",
        label: "excess kurtosis of the attention output (mean over layers)",
        get: |r| r.summary.kurtosis_attn_out,
    },
    Metric {
        key: "kurtosis_residual",
        label: "excess kurtosis of the residual stream (mean over layers)",
        get: |r| r.summary.kurtosis_residual,
    },
    Metric {
        key: "outlier_fraction",
        label: "outlier fraction, \\|x\\| > 6 in the residual stream (all layers)",
        get: |r| r.summary.outlier_fraction,
    },
    Metric {
        key: "sink_mass",
        label: "sink mass: mean attention on token 0 (all heads)",
        get: |r| r.summary.sink_mass,
    },
    Metric { key: "null_mass", label: "null mass: mean 1 − Σ_j p_ij (all heads)", get: |r| r.summary.null_mass },
    Metric {
        key: "sink_head_fraction",
        label: "sink heads: fraction with first-position attention > 0.3 (all heads)",
        get: |r| mean_of(r.summary.layers.iter().map(|l| l.sink_fraction)),
    },
    Metric {
        key: "first_norm_ratio",
        label: "first position's residual norm / the others' mean (max over layers)",
        get: |r| r.summary.first_norm_ratio,
    },
    Metric {
        key: "massive_ratio",
        label: "largest \\|x\\| / median \\|x\\| of the residual stream (max over layers)",
        get: |r| r.summary.massive_ratio,
    },
    Metric { key: "logit_gap", label: "logit gap s_i0 − mean_j s_ij (all heads)", get: |r| r.summary.logit_gap },
    Metric {
        key: "drain_ratio",
        label: "value drain ‖W_O v_0‖ / mean_t ‖W_O v_t‖ (all heads)",
        get: |r| r.summary.drain_ratio,
    },
    Metric {
        key: "first_norm_diff",
        label: "first position's residual norm − the others' mean (max over layers)",
        get: |r| r.summary.layers.iter().filter_map(|l| l.first_norm_diff).reduce(f64::max),
    },
    Metric {
        key: "copy_loss",
        label: "backcopy: val loss on copy positions (fixed val windows)",
        get: |r| r.summary.task_losses.get("copy").copied(),
    },
    Metric {
        key: "bigram_loss",
        label: "backcopy: val loss on bigram positions (fixed val windows)",
        get: |r| r.summary.task_losses.get("bigram").copied(),
    },
    Metric { key: "w8a8_gap", label: "W8A8 loss gap (per-tensor, min-max)", get: |r| r.quant_gap("W8A8") },
    Metric { key: "w4_gap", label: "W4 loss gap (weights only, per-channel)", get: |r| r.quant_gap("W4-pc") },
];

/// Mean of the finite values, None without any.
fn mean_of(xs: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = xs.flatten().filter(|x| x.is_finite()).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Everything `metrics.json` holds besides the runs.
#[derive(Clone, Debug, Serialize)]
pub struct Aggregate {
    pub baseline: String,
    /// arm → metric key → statistic over seeds.
    pub metrics: BTreeMap<String, BTreeMap<String, Option<Stat>>>,
    /// arm → quantization setting → statistic of its loss gap over seeds.
    pub quant_gaps: BTreeMap<String, BTreeMap<String, Option<Stat>>>,
    pub comparisons: Vec<Comparison>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// The arm compared with the baseline arm.
    pub variant: String,
    pub baseline: String,
    pub metric: String,
    pub paired: Paired,
}

/// The runs of one arm, in the experiment's seed order (None where a seed is missing).
fn by_seed<'a>(exp: &ReportMeta, runs: &'a [RunRecord], arm: &str) -> Vec<Option<&'a RunRecord>> {
    exp.seeds.iter().map(|&s| runs.iter().find(|r| r.arm == arm && r.seed == s)).collect()
}

fn values(runs: &[Option<&RunRecord>], get: impl Fn(&RunRecord) -> Option<f64>) -> Vec<Option<f64>> {
    runs.iter().map(|r| r.and_then(&get)).collect()
}

/// Quantization settings in the order of the first run that did not diverge (fp32 left out: its gap is 0).
fn settings(runs: &[RunRecord]) -> Vec<String> {
    let first = runs.iter().find(|r| r.diverged.is_none());
    first.map_or(vec![], |r| r.quant.iter().filter(|q| q.name != "fp32").map(|q| q.name.clone()).collect())
}

pub fn aggregate(exp: &ReportMeta, runs: &[RunRecord]) -> Aggregate {
    let baseline = exp.baseline.clone();
    let stat = |vals: Vec<Option<f64>>| mean_ci(&vals.into_iter().flatten().collect::<Vec<_>>());
    let (mut metrics, mut quant_gaps, mut comparisons) = (BTreeMap::new(), BTreeMap::new(), vec![]);
    let base = by_seed(exp, runs, &baseline);
    for v in exp.names() {
        let rs = by_seed(exp, runs, v);
        let m = METRICS.iter().map(|m| (m.key.to_string(), stat(values(&rs, m.get)))).collect();
        metrics.insert(v.to_string(), m);
        let q = settings(runs).into_iter().map(|s| (s.clone(), stat(values(&rs, |r| r.quant_gap(&s))))).collect();
        quant_gaps.insert(v.to_string(), q);
        if v != baseline {
            for m in METRICS {
                let paired = paired(&values(&rs, m.get), &values(&base, m.get));
                let (variant, baseline) = (v.to_string(), baseline.clone());
                comparisons.push(Comparison { variant, baseline, metric: m.key.into(), paired });
            }
        }
    }
    Aggregate { baseline, metrics, quant_gaps, comparisons }
}

/// Write report.md, metrics.json and the figures into `meta.out`; returns the report's path. `samples`
/// are the histogram values of the first seed's run of each variant.
pub fn write(meta: &ReportMeta, runs: &[RunRecord], samples: &[HistSamples]) -> Result<PathBuf> {
    let agg = aggregate(meta, runs);
    let figures = figures::draw(meta, runs, &agg, samples)?;
    let json = serde_json::json!({ "experiment": meta.describe(), "runs": runs, "aggregate": &agg });
    write_json_atomic(&meta.out.join("metrics.json"), &json)?;
    let md = markdown::markdown(meta, runs, &agg, &figures);
    let path = meta.out.join("report.md");
    write_atomic(&path, md.as_bytes())?;
    Ok(path)
}
