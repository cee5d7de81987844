//! `Analysis::table`: the readable summary `quietgpt analyze` prints.

use super::types::{ActivationStats, Analysis};
use std::fmt::Write;

/// How many top channels the table shows per row (the JSON has `top_k_channels`).
const TABLE_CHANNELS: usize = 3;

impl Analysis {
    /// A readable summary: activations, attention heads, weights.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let m = &self.model;
        let mut loss = self.loss.map_or("-".into(), |l| format!("{l:.4}"));
        if let (Some(c), Some(b)) = (self.copy_loss, self.bigram_loss) {
            loss += &format!(" (backcopy: copy {c:.4}, bigram {b:.4})");
        }
        let _ = writeln!(
            s,
            "model: {} layers, {} heads, n_embd {}, {} attention | eval: {} {} windows of {} tokens, loss {loss}",
            m.n_layer, m.n_head, m.n_embd, m.attention, self.windows, self.split, self.block
        );
        let th = self.thresholds.activation_abs;
        let _ = writeln!(
            s,
            "\nactivations (moments over all elements; exkurt = E[(x-mu)^4]/sigma^4 - 3, kurt = raw; out = |x| > {th})"
        );
        let _ = writeln!(
            s,
            "{:<16} {:>10} {:>10} {:>10} {:>9} {:>9}  top channels c:max|x|",
            "point", "max|x|", "exkurt", "kurt", "out", "out%"
        );
        let mut row = |name: String, a: &ActivationStats| {
            let top: Vec<String> =
                a.top_channels.iter().take(TABLE_CHANNELS).map(|c| format!("{}:{:.3}", c.channel, c.max_abs)).collect();
            let _ = writeln!(
                s,
                "{name:<16} {:>10.4} {:>10} {:>10} {:>9} {:>8.4}%  {}{}",
                a.max_abs,
                opt(a.excess_kurtosis),
                opt(a.kurtosis),
                a.outliers,
                100.0 * a.outlier_fraction,
                top.join(" "),
                if a.nonfinite > 0 { format!("  ({} non-finite)", a.nonfinite) } else { String::new() }
            );
        };
        row("embedding".into(), &self.embedding);
        for l in &self.layers {
            let i = l.layer;
            row(format!("L{i} ln_1"), &l.ln_1);
            row(format!("L{i} attn_out"), &l.attn_out);
            row(format!("L{i} ln_2"), &l.ln_2);
            row(format!("L{i} mlp_hidden"), &l.mlp_hidden);
            row(format!("L{i} mlp_out"), &l.mlp_out);
            row(format!("L{i} residual"), &l.residual);
        }
        row("ln_f".into(), &self.ln_f);
        self.sinks_table(&mut s);

        let a = &self.attention;
        let _ = writeln!(
            s,
            "\nattention (null = 1 - sum_j p_ij over rows; sink = mean p_i0 over queries i >= 1; * = sink > {};\n\
             gap = mean over i >= 1 of s_i0 - mean_(1<=j<=i) s_ij, s = q.k/sqrt(hs); drain0 = |W_O^h v_0|, \
             drain0/t = drain0 / mean_(t>=1) |W_O^h v_t|)",
            self.thresholds.sink
        );
        let gated = a.gate_mean.is_some();
        let gate_head = if gated { format!(" {:>9}", "gate") } else { String::new() };
        let _ = writeln!(
            s,
            "{:<6} {:>5} {:>11} {:>11} {:>11} {:>9} {:>9} {:>9} {:>9}{gate_head}",
            "layer", "head", "null mean", "null min", "null max", "sink", "gap", "drain0", "drain0/t"
        );
        for l in &self.layers {
            for h in &l.heads {
                let sink = h.sink.map_or("-".into(), |v| format!("{v:.4}"));
                let gate = if gated {
                    format!(" {:>9}", h.gate_mean.map_or("-".into(), |v| format!("{v:.4}")))
                } else {
                    String::new()
                };
                let star = if h.is_sink { " *" } else { "" };
                let _ = writeln!(
                    s,
                    "{:<6} {:>5} {:>11.3e} {:>11.3e} {:>11.3e} {sink:>9} {:>9} {:>9} {:>9}{gate}{star}",
                    l.layer,
                    h.head,
                    h.null_mass_mean,
                    h.null_mass_min,
                    h.null_mass_max,
                    opt(h.logit_gap),
                    opt(h.drain_first),
                    opt(h.drain_ratio)
                );
            }
        }
        if let Some(g) = a.gate_mean {
            let _ = writeln!(s, "mean gate {g:.4}");
        }
        let _ = writeln!(
            s,
            "sink heads: {} of {} ({:.1}%); mean null mass {:.4e}",
            a.sink_heads,
            a.heads,
            100.0 * a.sink_head_fraction,
            a.null_mass_mean
        );

        let _ = writeln!(
            s,
            "\nweights (per tensor; >{}sd = count of |w - mean| > {} std)",
            self.thresholds.weight_sigmas, self.thresholds.weight_sigmas
        );
        let _ = writeln!(
            s,
            "{:<36} {:>12} {:>10} {:>10} {:>10} {:>7}",
            "tensor", "shape", "max|w|", "std", "exkurt", ">6sd"
        );
        for w in &self.weights {
            let shape = w.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
            let _ = writeln!(
                s,
                "{:<36} {:>12} {:>10.4} {:>10.4} {:>10} {:>7}",
                w.name,
                shape,
                w.max_abs,
                w.std_pop,
                opt(w.excess_kurtosis),
                w.beyond_6_sigma
            );
        }
        s
    }
}

impl Analysis {
    /// First-position norms and massive activations per layer, on the residual stream after the block.
    fn sinks_table(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\nfirst position vs the others, residual stream after each block (|x_t| = L2 over channels; \
             ratio and diff against the others' mean and median)\n\
             massive activations: the 3 largest |x| as value (window,position,channel) and |x| / median |x|"
        );
        let _ = writeln!(
            s,
            "{:<6} {:>10} {:>10} {:>10} {:>9} {:>9} {:>10} {:>10}  top |x|",
            "layer", "|x_0|", "mean t>0", "median", "ratio", "ratio med", "diff", "median|x|"
        );
        for l in &self.layers {
            let f = &l.first_norm;
            let top: Vec<String> = l
                .massive
                .top
                .iter()
                .map(|m| {
                    let r = m.ratio_to_median.map_or("-".into(), |r| format!("{r:.1}x"));
                    format!("{:.3}({},{},{}) {r}", m.value, m.window, m.position, m.channel)
                })
                .collect();
            let _ = writeln!(
                s,
                "{:<6} {:>10} {:>10} {:>10} {:>9} {:>9} {:>10} {:>10}  {}",
                format!("L{}", l.layer),
                opt(f.first),
                opt(f.others_mean),
                opt(f.others_median),
                opt(f.ratio_mean),
                opt(f.ratio_median),
                opt(f.diff_mean),
                opt(l.massive.median_abs),
                top.join("  ")
            );
        }
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}
