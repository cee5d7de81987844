//! report.md: the summary table, the paired comparisons in words, the quantization table, the runs,
//! the figures and the definitions.

use super::{settings, Aggregate, Comparison, ReportMeta, Stat, METRICS};
use crate::analysis::record::RunRecord;
use crate::config::DataKind;
use std::fmt::Write;

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

pub(super) fn markdown(exp: &ReportMeta, runs: &[RunRecord], agg: &Aggregate, figures: &[(String, String)]) -> String {
    let c = &exp.base;
    let names: Vec<String> = exp.names().map(str::to_string).collect();
    let mut s = String::from("# quietgpt experiment: arms compared over seeds\n\n");
    let lr = if c.decay_lr {
        format!("lr {} → {}, warmup {}", c.learning_rate, c.min_lr, c.warmup_iters)
    } else {
        format!("constant lr {}, warmup {}", c.learning_rate, c.warmup_iters)
    };
    let data = match c.data {
        DataKind::Backcopy => format!("the Bigram-Backcopy task ({} triggers)", c.triggers),
        DataKind::Text if c.bos => format!("`{}` with a BOS token", c.data_dir),
        DataKind::Text => format!("`{}`", c.data_dir),
    };
    let model = format!(
        "{} MLP, {} lm_head, {} init, {}",
        c.activation.name(),
        if c.tie_weights { "tied" } else { "untied" },
        c.init.name(),
        c.optimizer.name()
    );
    let _ = writeln!(
        s,
        "Arms {} × seeds {:?} ({} runs). Model {} layers, {} heads, n_embd {}, block {}, batch {}, {} iterations \
         ({lr}; {model}), dropout {}, data {data}. Runs with the same seed share the initial weights and the data order; \
         only the arm differs.\n",
        exp.arms.iter().map(|a| a.describe()).collect::<Vec<_>>().join(", "),
        exp.seeds,
        runs.len(),
        c.n_layer,
        c.n_head,
        c.n_embd,
        c.block_size,
        c.batch_size,
        c.max_iters,
        c.dropout,
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
    let diverged: Vec<&RunRecord> = runs.iter().filter(|r| r.diverged.is_some()).collect();
    if !diverged.is_empty() {
        let _ = writeln!(
            s,
            "**{} of {} runs diverged** (a non-finite loss or gradient norm) and are left out of every statistic below; \
             see [Diverged runs](#diverged-runs).\n",
            diverged.len(),
            runs.len()
        );
    }
    if !exp.missing.is_empty() {
        let _ = writeln!(
            s,
            "**{} of {} runs are missing** (not finished when this report was written): {}. Every statistic below is \
             over the finished runs only; pairs need both runs of a seed.\n",
            exp.missing.len(),
            exp.missing.len() + runs.len(),
            exp.missing.join(", ")
        );
    }
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
    for v in exp.names().filter(|&v| v != agg.baseline) {
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
    s += "\n## Runs\n\n| arm | seed | val loss | max \\|x\\| | exkurt attn | W8A8 gap | minutes |\n|---|---|---|---|---|---|---|\n";
    let opt = |x: Option<f64>| x.map_or("–".into(), num);
    for r in runs {
        if r.diverged.is_some() {
            let _ = writeln!(
                s,
                "| {} | {} | diverged at iter {} | – | – | – | {:.1} |",
                r.arm,
                r.seed,
                r.iter,
                r.seconds / 60.0
            );
            continue;
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.1} |",
            r.arm,
            r.seed,
            opt(r.val_loss),
            opt(r.summary.max_abs_residual),
            opt(r.summary.kurtosis_attn_out),
            opt(r.quant_gap("W8A8")),
            r.seconds / 60.0
        );
    }
    if !diverged.is_empty() {
        s += "\n## Diverged runs\n\n";
        for r in &diverged {
            let _ = writeln!(s, "- {} seed {}: {}", r.arm, r.seed, r.diverged.as_deref().unwrap_or(""));
        }
    }
    s += "\n## Figures\n\n";
    for (file, caption) in figures {
        let _ = writeln!(s, "**{caption}**\n\n![{caption}]({file})\n");
    }
    s += "## Definitions\n\n\
        - Excess kurtosis: E[(x−μ)⁴]/σ⁴ − 3 over all elements (tokens × channels) of a layer's tensor, population moments; \
        0 for a Gaussian. The attention output is after c_proj, before the residual add; the residual stream is after each block.\n\
        - Outlier fraction: elements with |x| > 6 (LLM.int8()'s threshold) over all residual-stream elements of all layers.\n\
        - Sink mass: mean over heads of the mean attention weight of queries 1..T−1 on token 0 (the first position of \
        each window); sink heads: the fraction of heads whose sink mass exceeds 0.3 (Gu et al. 2024).\n\
        - First-position norm ratio: ‖x_0‖ / mean_{t≥1} ‖x_t‖, L2 norms over channels of the residual stream after the \
        block, ‖x_0‖ averaged over windows (Guo et al. 2024); the largest over layers.\n\
        - Massive activations: the largest \\|x\\| of the residual stream after the block over the analysed windows, and \
        its ratio to the median \\|x\\| (Sun et al. 2024); the largest ratio over layers.\n\
        - Logit gap: mean over windows and queries i ≥ 1 of s_i0 − mean_{1≤j≤i} s_ij, s = q·k/√head_size before the \
        row normaliser. Value drain: ‖W_O^h v_0^h‖ / mean_{t≥1} ‖W_O^h v_t^h‖, W_O^h the slice of c_proj for head h's \
        channels (no bias, no gate); both the mean over heads.\n\
        - Loss gap: val loss of the fake-quantized model minus the float32 loss on the same windows. W8A8: symmetric per-tensor \
        int8 weights, asymmetric per-tensor uint8 inputs of every block Linear with min-max calibrated ranges.\n\
        - Everything per run is in `metrics.json`; each run's directory under `runs/` holds its checkpoint, metrics.jsonl, \
        analysis.json and quant.json.\n";
    s
}
