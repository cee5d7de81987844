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

use super::experiment::{Experiment, LayerSummary, RunRecord};
use super::plot::{self, BarSeries, HistPanel, Series};
use crate::config::AttentionKind;
use crate::data::{write_atomic, Dataset, Split};
use crate::model::{Point, Probe};
use crate::train::checkpoint::{self, CKPT_FILE};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// t_{0.975, df} for df = 1..=30 (two-sided 95%).
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
    2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];
/// Beyond the table: (df, t) at the usual printed points; between them the next smaller df is used,
/// whose t is larger, so the interval errs on the wide (conservative) side.
const T975_TAIL: [(usize, f64); 3] = [(40, 2.021), (60, 2.000), (120, 1.980)];

/// The 0.975 quantile of Student's t with `df` degrees of freedom; None for df = 0.
pub fn t975(df: usize) -> Option<f64> {
    match df {
        0 => None,
        1..=30 => Some(T975[df - 1]),
        _ => Some(T975_TAIL.iter().rev().find(|(d, _)| df >= *d).map_or(T975[29], |&(_, t)| t)),
    }
}

/// Mean and 95% CI of one metric over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// Finite values used.
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n − 1); None for n < 2.
    pub sd: Option<f64>,
    /// t_{0.975, n−1}·s/√n; None for n < 2.
    pub ci_half_width: Option<f64>,
}

/// Mean ± 95% CI of the finite values of `xs`; None when there is none.
pub fn mean_ci(xs: &[f64]) -> Option<Stat> {
    let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n == 0 {
        return None;
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let sd = (n >= 2).then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
    let ci_half_width = sd.zip(t975(n.saturating_sub(1))).map(|(s, t)| t * s / (n as f64).sqrt());
    Some(Stat { n, mean, sd, ci_half_width })
}

/// A paired comparison of a variant with the baseline on one metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// Seeds where both values are finite.
    pub n: usize,
    /// Mean of d_i = variant_i − baseline_i (None without pairs).
    pub mean_diff: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// d̄ / (s_d/√n); None for n < 2 or s_d = 0.
    pub t: Option<f64>,
    /// Whether the 95% CI excludes 0; None when it cannot be assessed (n < 2).
    pub significant: Option<bool>,
}

/// Paired t-test of `variant` against `baseline`, index i of both being the same seed.
pub fn paired(variant: &[Option<f64>], baseline: &[Option<f64>]) -> Paired {
    let d: Vec<f64> = variant
        .iter()
        .zip(baseline)
        .filter_map(|(a, b)| Some(a.as_ref()? - b.as_ref()?))
        .filter(|d| d.is_finite())
        .collect();
    let s = mean_ci(&d);
    let mean_diff = s.as_ref().map(|s| s.mean);
    let hw = s.as_ref().and_then(|s| s.ci_half_width);
    let t = s.as_ref().and_then(|s| {
        let se = s.sd? / (s.n as f64).sqrt();
        (se > 0.0).then(|| s.mean / se)
    });
    let (ci_low, ci_high) = match (mean_diff, hw) {
        (Some(m), Some(h)) => (Some(m - h), Some(m + h)),
        _ => (None, None),
    };
    let significant = ci_low.zip(ci_high).map(|(lo, hi)| lo > 0.0 || hi < 0.0);
    Paired { n: d.len(), mean_diff, ci_low, ci_high, t, significant }
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
    Metric { key: "w8a8_gap", label: "W8A8 loss gap (per-tensor, min-max)", get: |r| r.quant_gap("W8A8") },
];

/// Everything `metrics.json` holds besides the runs.
#[derive(Clone, Debug, Serialize)]
pub struct Aggregate {
    pub baseline: AttentionKind,
    /// variant → metric key → statistic over seeds.
    pub metrics: BTreeMap<String, BTreeMap<String, Option<Stat>>>,
    /// variant → quantization setting → statistic of its loss gap over seeds.
    pub quant_gaps: BTreeMap<String, BTreeMap<String, Option<Stat>>>,
    pub comparisons: Vec<Comparison>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub variant: AttentionKind,
    pub baseline: AttentionKind,
    pub metric: String,
    pub paired: Paired,
}

/// The runs of one variant, in the experiment's seed order (None where a seed is missing).
fn by_seed<'a>(exp: &Experiment, runs: &'a [RunRecord], v: AttentionKind) -> Vec<Option<&'a RunRecord>> {
    exp.seeds.iter().map(|&s| runs.iter().find(|r| r.variant == v && r.seed == s)).collect()
}

fn values(runs: &[Option<&RunRecord>], get: impl Fn(&RunRecord) -> Option<f64>) -> Vec<Option<f64>> {
    runs.iter().map(|r| r.and_then(&get)).collect()
}

/// Quantization settings in the order of the first run (fp32 left out: its gap is 0).
fn settings(runs: &[RunRecord]) -> Vec<String> {
    runs.first().map_or(vec![], |r| r.quant.iter().filter(|q| q.name != "fp32").map(|q| q.name.clone()).collect())
}

pub fn aggregate(exp: &Experiment, runs: &[RunRecord]) -> Aggregate {
    let baseline = exp.baseline();
    let stat = |vals: Vec<Option<f64>>| mean_ci(&vals.into_iter().flatten().collect::<Vec<_>>());
    let (mut metrics, mut quant_gaps, mut comparisons) = (BTreeMap::new(), BTreeMap::new(), vec![]);
    let base = by_seed(exp, runs, baseline);
    for &v in &exp.variants {
        let rs = by_seed(exp, runs, v);
        let m = METRICS.iter().map(|m| (m.key.to_string(), stat(values(&rs, m.get)))).collect();
        metrics.insert(v.to_string(), m);
        let q = settings(runs).into_iter().map(|s| (s.clone(), stat(values(&rs, |r| r.quant_gap(&s))))).collect();
        quant_gaps.insert(v.to_string(), q);
        if v != baseline {
            for m in METRICS {
                let paired = paired(&values(&rs, m.get), &values(&base, m.get));
                comparisons.push(Comparison { variant: v, baseline, metric: m.key.into(), paired });
            }
        }
    }
    Aggregate { baseline, metrics, quant_gaps, comparisons }
}

/// `x` with 4 significant digits, in scientific notation when very large or small.
fn num(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 || (1e-3..1e4).contains(&a) {
        let decimals = if a == 0.0 { 0 } else { (3 - a.log10().floor() as i32).max(0) as usize };
        format!("{x:.decimals$}")
    } else {
        format!("{x:.3e}")
    }
}

fn cell(s: &Option<Stat>) -> String {
    match s {
        None => "–".into(),
        Some(s) => match s.ci_half_width {
            Some(h) => format!("{} ± {}", num(s.mean), num(h)),
            None => format!("{} (n = 1)", num(s.mean)),
        },
    }
}

/// The plain sentence on one comparison.
fn sentence(c: &Comparison, label: &str) -> String {
    let p = &c.paired;
    let head = format!("**{}** − {} in {label}", c.variant, c.baseline);
    match (p.mean_diff, p.ci_low, p.ci_high, p.significant) {
        (Some(d), Some(lo), Some(hi), Some(sig)) => {
            let t = p.t.map_or("undefined (all differences equal)".into(), |t| format!("{t:.2}"));
            let verdict = if sig {
                format!(
                    "significant at 5%: {} is {} than {}",
                    c.variant,
                    if d > 0.0 { "higher" } else { "lower" },
                    c.baseline
                )
            } else {
                "not significant at 5% (the interval contains 0)".into()
            };
            format!(
                "{head}: {} (95% CI {} to {}; paired t = {t}, {} dof, {} seeds): {verdict}.",
                num(d),
                num(lo),
                num(hi),
                p.n - 1,
                p.n
            )
        }
        _ => format!(
            "{head}: cannot be assessed with {} paired seed{} (a paired t-test needs at least 2).",
            p.n,
            if p.n == 1 { "" } else { "s" }
        ),
    }
}

/// Write report.md, metrics.json and the figures into `exp.out`; returns the report's path.
pub fn write(exp: &Experiment, runs: &[RunRecord], say: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let agg = aggregate(exp, runs);
    let figures = figures(exp, runs, &agg, say)?;
    let json = serde_json::json!({ "experiment": exp.describe(), "runs": runs, "aggregate": &agg });
    let text = serde_json::to_string_pretty(&json).map_err(|e| Error::Data(format!("metrics.json: {e}")))? + "\n";
    write_atomic(&exp.out.join("metrics.json"), text.as_bytes())?;
    let md = markdown(exp, runs, &agg, &figures);
    let path = exp.out.join("report.md");
    write_atomic(&path, md.as_bytes())?;
    Ok(path)
}

fn markdown(exp: &Experiment, runs: &[RunRecord], agg: &Aggregate, figures: &[(String, String)]) -> String {
    let c = &exp.base;
    let names: Vec<String> = exp.variants.iter().map(|v| v.to_string()).collect();
    let mut s = String::from("# quietgpt experiment: attention variants compared over seeds\n\n");
    let _ = writeln!(
        s,
        "Variants {} × seeds {:?} ({} runs). Model {} layers, {} heads, n_embd {}, block {}, batch {}, {} iterations \
         (lr {} → {}, warmup {}), dropout {}, data `{}`. Runs with the same seed share the initial weights and the data order; \
         only the attention differs.\n",
        names.join(", "),
        exp.seeds,
        runs.len(),
        c.n_layer,
        c.n_head,
        c.n_embd,
        c.block_size,
        c.batch_size,
        c.max_iters,
        c.learning_rate,
        c.min_lr,
        c.warmup_iters,
        c.dropout,
        c.data_dir
    );
    let o = &exp.options;
    let _ = writeln!(
        s,
        "Activation statistics on the first {} val windows of {} tokens (final model, no dropout); quantization on {} val \
         windows with activation ranges from {} train windows. Cells: mean ± 95% CI half-width over seeds \
         (Student t, n − 1 dof).\n",
        o.analyze.windows,
        c.block_size,
        if o.quant_windows == 0 { "all".to_string() } else { format!("the first {}", o.quant_windows) },
        o.calib_windows
    );
    let header = |s: &mut String, first: &str| {
        let _ = writeln!(s, "| {first} | {} |", names.join(" | "));
        let _ = writeln!(s, "|---|{}", "---|".repeat(names.len()));
    };
    s += "## Summary\n\n";
    header(&mut s, "metric");
    for m in METRICS {
        let cells: Vec<String> = names.iter().map(|v| cell(&agg.metrics[v][m.key])).collect();
        let _ = writeln!(s, "| {} | {} |", m.label, cells.join(" | "));
    }
    let _ = writeln!(s, "\n## Compared with {} (paired over seeds)\n", agg.baseline);
    if agg.comparisons.is_empty() {
        s += "Only one variant: nothing to compare.\n";
    }
    for &v in exp.variants.iter().filter(|&&v| v != agg.baseline) {
        let cs: Vec<&Comparison> = agg.comparisons.iter().filter(|c| c.variant == v).collect();
        let most = cs.iter().map(|c| c.paired.n).max().unwrap_or(0);
        if most < 2 {
            // One line instead of the same sentence for every metric.
            let _ = writeln!(
                s,
                "- **{v}** vs {}: cannot be assessed with {most} paired seed{} (a paired t-test needs at least 2).",
                agg.baseline,
                if most == 1 { "" } else { "s" }
            );
            continue;
        }
        for cmp in cs {
            let label = METRICS.iter().find(|m| m.key == cmp.metric).map_or(cmp.metric.as_str(), |m| m.label);
            let _ = writeln!(s, "- {}", sentence(cmp, label));
        }
    }
    s += "\n## Quantization: loss gap to float32 (nats per token)\n\n";
    header(&mut s, "setting");
    for set in settings(runs) {
        let cells: Vec<String> = names.iter().map(|v| cell(agg.quant_gaps[v].get(&set).unwrap_or(&None))).collect();
        let _ = writeln!(s, "| {set} | {} |", cells.join(" | "));
    }
    s += "\n## Runs\n\n| variant | seed | val loss | max \\|x\\| | exkurt attn | W8A8 gap | minutes |\n|---|---|---|---|---|---|---|\n";
    let opt = |x: Option<f64>| x.map_or("–".into(), num);
    for r in runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.1} |",
            r.variant,
            r.seed,
            opt(r.val_loss),
            opt(r.summary.max_abs_residual),
            opt(r.summary.kurtosis_attn_out),
            opt(r.quant_gap("W8A8")),
            r.seconds / 60.0
        );
    }
    s += "\n## Figures\n\n";
    for (file, caption) in figures {
        let _ = writeln!(s, "**{caption}**\n\n![{caption}]({file})\n");
    }
    s += "## Definitions\n\n\
        - Excess kurtosis: E[(x−μ)⁴]/σ⁴ − 3 over all elements (tokens × channels) of a layer's tensor, population moments; \
        0 for a Gaussian. The attention output is after c_proj, before the residual add; the residual stream is after each block.\n\
        - Outlier fraction: elements with |x| > 6 (LLM.int8()'s threshold) over all residual-stream elements of all layers.\n\
        - Sink mass: mean over heads of the mean attention weight of queries 1..T−1 on token 0.\n\
        - Loss gap: val loss of the fake-quantized model minus the float32 loss on the same windows. W8A8: symmetric per-tensor \
        int8 weights, asymmetric per-tensor uint8 inputs of every block Linear with min-max calibrated ranges.\n\
        - Everything per run is in `metrics.json`; each run's directory under `runs/` holds its checkpoint, metrics.jsonl, \
        analysis.json and quant.json.\n";
    s
}

/// Draws every figure; returns (file name, caption) in report order.
fn figures(
    exp: &Experiment,
    runs: &[RunRecord],
    agg: &Aggregate,
    say: &mut dyn FnMut(&str),
) -> Result<Vec<(String, String)>> {
    let out = &exp.out;
    let mut figs = vec![];
    let color = |v: AttentionKind| exp.variants.iter().position(|&w| w == v).unwrap_or(0);
    let mut add = |file: &str, caption: &str| {
        figs.push((file.to_string(), caption.to_string()));
        out.join(file)
    };

    // Loss curves: every run, one colour (and one legend entry) per variant.
    for (file, which, caption) in
        [("loss_val.png", "val", "Validation loss"), ("loss_train.png", "train", "Training loss")]
    {
        let series: Vec<Series> = runs
            .iter()
            .map(|r| {
                let pts = r
                    .curve
                    .iter()
                    .filter_map(|p| Some((p.iter as f64, if which == "val" { p.val_loss? } else { p.train_loss? })))
                    .collect();
                Series::new(r.variant.to_string(), pts, color(r.variant))
            })
            .collect();
        let title = format!("{caption} (every seed; eval_iters = {} batches)", exp.base.eval_iters);
        plot::line_chart(add(file, caption), &title, "iteration", "loss", &series, false)?;
    }

    // Per-layer statistics, mean over seeds.
    type Get = fn(&LayerSummary) -> Option<f64>;
    let per_layer = |get: Get| -> Vec<Series> {
        exp.variants
            .iter()
            .map(|&v| {
                let rs: Vec<&RunRecord> = by_seed(exp, runs, v).into_iter().flatten().collect();
                let pts = (0..exp.base.n_layer)
                    .filter_map(|l| {
                        let xs: Vec<f64> = rs.iter().filter_map(|r| r.summary.layers.get(l).and_then(get)).collect();
                        mean_ci(&xs).map(|s| (l as f64, s.mean))
                    })
                    .collect();
                Series::new(v.to_string(), pts, color(v))
            })
            .collect()
    };
    let per_layer_figs: [(&str, &str, Get); 3] = [
        ("max_abs_per_layer.png", "max |x| of the residual stream per layer", |l| l.max_abs_residual),
        ("kurtosis_attn_out_per_layer.png", "excess kurtosis of the attention output per layer", |l| {
            l.kurtosis_attn_out
        }),
        ("kurtosis_residual_per_layer.png", "excess kurtosis of the residual stream per layer", |l| {
            l.kurtosis_residual
        }),
    ];
    for (file, caption, get) in per_layer_figs {
        let title = format!("{caption} (mean over seeds)");
        plot::line_chart(
            add(file, caption),
            &title,
            "layer",
            caption.split(" of ").next().unwrap_or(""),
            &per_layer(get),
            false,
        )?;
    }

    // Outliers through training (with --analyze_every): max |x| at each analysed iteration.
    if runs.iter().any(|r| !r.snapshots.is_empty()) {
        let series = exp
            .variants
            .iter()
            .map(|&v| {
                let mut at: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
                for r in by_seed(exp, runs, v).into_iter().flatten() {
                    for (iter, sm) in r.snapshots.iter().map(|s| (s.iter, &s.summary)).chain([(r.iter, &r.summary)]) {
                        at.entry(iter).or_default().extend(sm.max_abs_residual);
                    }
                }
                let pts = at.into_iter().filter_map(|(i, xs)| mean_ci(&xs).map(|s| (i as f64, s.mean))).collect();
                Series::new(v.to_string(), pts, color(v))
            })
            .collect::<Vec<_>>();
        let caption = "max |x| of the residual stream through training";
        plot::line_chart(
            add("max_abs_trajectory.png", caption),
            &format!("{caption} (mean over seeds)"),
            "iteration",
            "max |x|",
            &series,
            false,
        )?;
    }

    // Quantization gap per setting, mean ± 95% CI.
    let groups = settings(runs);
    let bars: Vec<BarSeries> = exp
        .variants
        .iter()
        .map(|v| {
            let st: Vec<Option<&Stat>> =
                groups.iter().map(|g| agg.quant_gaps[&v.to_string()].get(g).and_then(|s| s.as_ref())).collect();
            BarSeries {
                label: v.to_string(),
                values: st.iter().map(|s| s.map_or(f64::NAN, |s| s.mean)).collect(),
                ci_half_widths: st.iter().map(|s| s.and_then(|s| s.ci_half_width).unwrap_or(f64::NAN)).collect(),
            }
        })
        .collect();
    let caption = "loss gap to float32 per quantization setting";
    plot::grouped_bars(
        add("quant_gap.png", caption),
        &format!("{caption} (mean ± 95% CI over seeds)"),
        "val loss − float32 loss",
        &groups,
        &bars,
    )?;

    // The first seed of each variant: channel × layer heatmap and value histograms.
    let first = exp.seeds.first().copied();
    let firsts: Vec<&RunRecord> =
        exp.variants.iter().filter_map(|&v| runs.iter().find(|r| r.variant == v && Some(r.seed) == first)).collect();
    for r in &firsts {
        let values: Vec<Vec<f64>> =
            r.summary.residual_channel_max.iter().map(|row| row.iter().map(|&x| x as f64).collect()).collect();
        let caption = format!("{} (seed {}): max |x| of the residual stream per channel and layer", r.variant, r.seed);
        let file = format!("heatmap_{}.png", r.variant);
        plot::heatmap(add(&file, &caption), &caption, "channel", "layer", &values, false)?;
    }
    if !firsts.is_empty() {
        say(&format!("report: value histograms of {} val windows per first-seed run", exp.hist_windows));
        let data = Dataset::open(Path::new(&exp.base.data_dir))?;
        let samples = firsts.iter().map(|r| sample_values(exp, r, &data)).collect::<Result<Vec<_>>>()?;
        for (k, file, what) in
            [(0, "hist_residual.png", "residual stream"), (1, "hist_attn_out.png", "attention output")]
        {
            let mut panels = vec![];
            for l in 0..exp.base.n_layer {
                // Shared, symmetric edges per layer: ±(the largest |x| of any variant in that layer).
                let layer = |s: &[Vec<Vec<f32>>; 2]| {
                    s[k].get(l).map_or(&[][..], |v| &v[..]).iter().map(|&x| x as f64).collect::<Vec<_>>()
                };
                let m = samples
                    .iter()
                    .flat_map(layer)
                    .filter(|x| x.is_finite())
                    .fold(0.0f64, |m, x| m.max(x.abs()))
                    .max(1e-6);
                let edges = plot::even_bin_edges(-m, m, 81);
                for (r, s) in firsts.iter().zip(&samples) {
                    let counts = plot::bin_counts(layer(s), &edges);
                    panels.push(HistPanel {
                        row_label: format!("layer {l}"),
                        col_label: r.variant.to_string(),
                        bin_edges: edges.clone(),
                        counts,
                    });
                }
            }
            let caption = format!("{what} values per layer (seed {}, log counts)", firsts[0].seed);
            plot::histograms_side_by_side(add(file, &caption), &caption, &panels)?;
        }
    }
    Ok(figs)
}

/// Values of the residual stream ([0]) and the attention output ([1]) per layer, over the first
/// `exp.hist_windows` val windows, from the run's final checkpoint.
fn sample_values(exp: &Experiment, r: &RunRecord, data: &Dataset) -> Result<[Vec<Vec<f32>>; 2]> {
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
    let path = exp.run_dir(r.variant, r.seed).join(CKPT_FILE);
    let batch = 8;
    let ck = checkpoint::load(&path)?;
    let mut model = ck.cpu_model(batch)?;
    let t = model.config.block_size;
    let l = model.config.n_layer;
    let mut probe = Collect([vec![vec![]; l], vec![vec![]; l]]);
    let (mut x, mut y) = (vec![0u32; batch * t], vec![0u32; batch * t]);
    let mut k = 0;
    while k < exp.hist_windows {
        let mut n = 0;
        while n < batch
            && k < exp.hist_windows
            && data.window(Split::Val, k, t, &mut x[n * t..(n + 1) * t], &mut y[n * t..(n + 1) * t])
        {
            n += 1;
            k += 1;
        }
        if n == 0 {
            break;
        }
        model.forward_probe(&x[..n * t], None, n, t, None, Some(&mut probe as &mut dyn Probe<f32>))?;
        if n < batch {
            break;
        }
    }
    Ok(probe.0)
}
