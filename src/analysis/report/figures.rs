//! The report's figures: loss curves, per-layer statistics, the max |x| trajectory, the quantization
//! gaps, and for the first seed of each variant a channel × layer heatmap and value histograms.

use super::{by_seed, mean_ci, settings, Aggregate, ReportMeta, Stat};
use crate::analysis::plot::{self, BarSeries, HistPanel, Series};
use crate::analysis::record::{HistSamples, LayerSummary, RunRecord};
use crate::Result;
use std::collections::BTreeMap;

/// Draws every figure; returns (file name, caption) in report order.
pub(super) fn draw(
    exp: &ReportMeta,
    runs: &[RunRecord],
    agg: &Aggregate,
    samples: &[HistSamples],
) -> Result<Vec<(String, String)>> {
    let out = &exp.out;
    let mut figs = vec![];
    let color = |arm: &str| exp.arms.iter().position(|a| a.name == arm).unwrap_or(0);
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
                Series::new(r.arm.clone(), pts, color(&r.arm))
            })
            .collect();
        let title = format!("{caption} (every seed; eval_iters = {} batches)", exp.base.eval_iters);
        plot::line_chart(add(file, caption), &title, "iteration", "loss", &series, false)?;
    }

    // Per-layer statistics, mean over seeds.
    type Get = fn(&LayerSummary) -> Option<f64>;
    let per_layer = |get: Get| -> Vec<Series> {
        exp.names()
            .map(|v| {
                let rs: Vec<&RunRecord> = by_seed(exp, runs, v).into_iter().flatten().collect();
                let pts = (0..exp.base.n_layer)
                    .filter_map(|l| {
                        let xs: Vec<f64> = rs.iter().filter_map(|r| r.summary.layers.get(l).and_then(get)).collect();
                        mean_ci(&xs).map(|s| (l as f64, s.mean))
                    })
                    .collect();
                Series::new(v, pts, color(v))
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
            .names()
            .map(|v| {
                let mut at: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
                for r in by_seed(exp, runs, v).into_iter().flatten() {
                    for (iter, sm) in r.snapshots.iter().map(|s| (s.iter, &s.summary)).chain([(r.iter, &r.summary)]) {
                        at.entry(iter).or_default().extend(sm.max_abs_residual);
                    }
                }
                let pts = at.into_iter().filter_map(|(i, xs)| mean_ci(&xs).map(|s| (i as f64, s.mean))).collect();
                Series::new(v, pts, color(v))
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

    // The sink and massive-activation metrics of the chosen layer through training.
    super::trajectories::draw(exp, runs, &mut add)?;

    // Quantization gap per setting, mean ± 95% CI.
    let groups = settings(runs);
    let bars: Vec<BarSeries> = exp
        .names()
        .map(|v| {
            let st: Vec<Option<&Stat>> =
                groups.iter().map(|g| agg.quant_gaps[v].get(g).and_then(|s| s.as_ref())).collect();
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
        exp.names().filter_map(|v| runs.iter().find(|r| r.arm == v && Some(r.seed) == first)).collect();
    for r in &firsts {
        let values: Vec<Vec<f64>> =
            r.summary.residual_channel_max.iter().map(|row| row.iter().map(|&x| x as f64).collect()).collect();
        let caption = format!("{} (seed {}): max |x| of the residual stream per channel and layer", r.arm, r.seed);
        let file = format!("heatmap_{}.png", r.arm);
        plot::heatmap(add(&file, &caption), &caption, "channel", "layer", &values, false)?;
    }
    if !firsts.is_empty() {
        // The samples of each first-seed run, in the order of `firsts` (none where one is missing).
        let samples: Vec<Option<&HistSamples>> =
            firsts.iter().map(|r| samples.iter().find(|s| s.arm == r.arm && s.seed == r.seed)).collect();
        type Get = fn(&HistSamples) -> &Vec<Vec<f32>>;
        let hist_figs: [(&str, &str, Get); 2] = [
            ("hist_residual.png", "residual stream", |s| &s.residual),
            ("hist_attn_out.png", "attention output", |s| &s.attn_out),
        ];
        for (file, what, get) in hist_figs {
            let mut panels = vec![];
            for l in 0..exp.base.n_layer {
                // Shared, symmetric edges per layer: ±(the largest |x| of any variant in that layer).
                let layer = |s: &Option<&HistSamples>| {
                    s.and_then(|s| get(s).get(l))
                        .map_or(&[][..], |v| &v[..])
                        .iter()
                        .map(|&x| x as f64)
                        .collect::<Vec<_>>()
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
                        col_label: r.arm.clone(),
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
