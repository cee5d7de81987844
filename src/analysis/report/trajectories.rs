//! The sink and massive-activation metrics of one layer through training (with `--analyze_every`):
//! one figure per metric, one line per run (every seed), one colour per arm.

use super::ReportMeta;
use crate::analysis::plot::{self, Series};
use crate::analysis::record::{LayerSummary, RunRecord};
use crate::Result;
use std::path::PathBuf;

type Get = fn(&LayerSummary) -> Option<f64>;

/// (file, caption, y label, log y, value); each is the mean over the layer's heads where per head.
const FIGURES: [(&str, &str, &str, bool, Get); 6] = [
    ("traj_first_norm.png", "first-position norm / the others' mean", "norm ratio", false, |l| l.first_norm_ratio),
    ("traj_massive.png", "top-1 massive activation, max |x|", "max |x|", true, |l| l.massive_top1),
    ("traj_sink.png", "attention on the first position", "attention weight", false, |l| l.sink_mean),
    ("traj_sink_fraction.png", "fraction of heads with sink > 0.3", "fraction of heads", false, |l| l.sink_fraction),
    ("traj_logit_gap.png", "logit gap s_i0 − mean_j s_ij", "logit gap", false, |l| l.logit_gap),
    ("traj_drain.png", "value drain ‖W_O v_0‖ / mean_t ‖W_O v_t‖", "drain ratio", false, |l| l.drain_ratio),
];

/// Draws the figures when some run has intermediate analyses; `add(file, caption)` records a figure
/// and gives its path.
pub(super) fn draw(exp: &ReportMeta, runs: &[RunRecord], add: &mut dyn FnMut(&str, &str) -> PathBuf) -> Result<()> {
    if !runs.iter().any(|r| !r.snapshots.is_empty()) {
        return Ok(());
    }
    let layer = exp.plot_layer;
    let color = |arm: &str| exp.arms.iter().position(|a| a.name == arm).unwrap_or(0);
    for (file, caption, y_label, log_y, get) in FIGURES {
        let series: Vec<Series> = runs
            .iter()
            .filter(|r| r.diverged.is_none())
            .map(|r| {
                let at = r.snapshots.iter().map(|s| (s.iter, &s.summary)).chain([(r.iter, &r.summary)]);
                let pts = at.filter_map(|(i, s)| Some((i as f64, s.layers.get(layer).and_then(get)?))).collect();
                Series::new(r.arm.clone(), pts, color(&r.arm))
            })
            .collect();
        let title = format!("layer {layer}: {caption}, each seed");
        let caption = format!("layer {layer} through training: {caption} (one line per seed)");
        plot::line_chart(add(file, &caption), &title, "iteration", y_label, &series, log_y)?;
    }
    Ok(())
}
