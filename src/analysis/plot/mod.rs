//! PNG figures for the research report: line charts, histogram grids, heatmaps and grouped bars.
//!
//! Every function takes plain data and an output path (which must end in `.png`) and returns
//! [`crate::Result`]. None of them panics on awkward data:
//!
//! * non-finite values (NaN, ±inf) are skipped, and so are non-positive values on a log axis;
//! * when nothing drawable is left (no series, all NaN, ...), a placeholder figure that shows the
//!   title and "no data: <reason>" is written instead, and the call succeeds, so a report that
//!   links the figure still renders;
//! * inconsistent input (a histogram with `counts.len() + 1 != bin_edges.len()`, a bar series
//!   with the wrong number of values, ...) is an [`Error::Data`];
//! * I/O failures are [`Error::Io`] with the path.
//!
//! Text is drawn with DejaVu Sans, embedded in the binary (`assets/DejaVuSans.ttf`) and
//! registered with plotters' `ab_glyph` backend on first use, so no system font is needed.
//! Colours come from the Okabe–Ito palette (colour-blind safe); heatmaps use viridis. Every PNG is
//! drawn to a temporary file beside its path and renamed into place (`crate::fs::create_atomic`).
//!
//! Layout: this file holds the input types and the binning helpers; `line`, `hist`, `heatmap` and
//! `bars` draw one kind of figure each, over the shared helpers of `canvas`.

use std::error::Error as StdError;
use std::path::Path;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use crate::{Error, Result};

mod bars;
mod canvas;
mod heatmap;
mod hist;
mod line;
use canvas::*;

pub use bars::grouped_bars;
pub use heatmap::heatmap;
pub use hist::histograms_side_by_side;
pub use line::line_chart;

/// Default figure size in pixels (width, height) for line charts, heatmaps and bar charts.
pub const DEFAULT_SIZE: (u32, u32) = (1000, 600);

/// Size of one panel of [`histograms_side_by_side`] in pixels (width, height).
pub const HIST_PANEL_SIZE: (u32, u32) = (340, 220);

/// The Okabe–Ito colour-blind-safe palette, reordered so that the first colours contrast most on
/// white (blue, vermillion, bluish green, orange, reddish purple, sky blue, black, yellow), then grey and
/// brown so that the ten arms of the Bigram-Backcopy comparison get ten colours.
/// `color_index` values wrap around modulo its length.
pub const PALETTE: [(u8, u8, u8); 10] = [
    (0, 114, 178),   // blue
    (213, 94, 0),    // vermillion
    (0, 158, 115),   // bluish green
    (230, 159, 0),   // orange
    (204, 121, 167), // reddish purple
    (86, 180, 233),  // sky blue
    (0, 0, 0),       // black
    (240, 228, 66),  // yellow
    (128, 128, 128), // grey
    (140, 81, 10),   // brown
];

/// One line of a [`line_chart`]: e.g. the loss curve of one (variant, seed) run.
///
/// Series that share a `label` share one legend entry (give every seed of a variant the same label
/// and `color_index`); a series with an empty label gets no legend entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    /// (x, y) points, drawn in the given order; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
    /// Index into [`PALETTE`] (wraps around).
    pub color_index: usize,
}

impl Series {
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>, color_index: usize) -> Self {
        Series { label: label.into(), points, color_index }
    }
}

/// One panel of [`histograms_side_by_side`]: a histogram of precomputed counts.
///
/// Panels are placed by label: one grid row per distinct `row_label` (e.g. "layer 3") and one grid
/// column per distinct `col_label` (e.g. the variant), both in order of first appearance. All
/// panels of a row share their x range and their y range, so give the panels of a row the same
/// bin edges to compare variants bin by bin.
#[derive(Debug, Clone, PartialEq)]
pub struct HistPanel {
    pub row_label: String,
    pub col_label: String,
    /// `counts.len() + 1` increasing edges; bins with a non-finite or non-increasing edge are skipped.
    pub bin_edges: Vec<f64>,
    pub counts: Vec<u64>,
}

/// One coloured series of [`grouped_bars`]: one value per group (e.g. the loss gap of one variant
/// under each quantization setting), with optional 95% confidence half-widths.
#[derive(Debug, Clone, PartialEq)]
pub struct BarSeries {
    pub label: String,
    /// One value per group; a non-finite value leaves a gap.
    pub values: Vec<f64>,
    /// Empty (no error bars) or one half-width per group; non-finite or negative entries draw no bar.
    pub ci_half_widths: Vec<f64>,
}

/// Bin edges splitting `[lo, hi]` into `n` equal bins (`n + 1` edges).
///
/// Returns an empty vector when `n == 0` or the bounds are not finite with `lo < hi`.
pub fn even_bin_edges(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if n == 0 || !lo.is_finite() || !hi.is_finite() || lo >= hi {
        return Vec::new();
    }
    let w = (hi - lo) / n as f64;
    (0..=n).map(|i| if i == n { hi } else { lo + w * i as f64 }).collect()
}

/// Counts of `values` in the bins given by increasing `bin_edges` (bins are `[e_i, e_{i+1})`, the
/// last one closed). Non-finite values and values outside `[first edge, last edge]` are not
/// counted. Returns `bin_edges.len() - 1` counts (none for fewer than two edges).
pub fn bin_counts(values: impl IntoIterator<Item = f64>, bin_edges: &[f64]) -> Vec<u64> {
    let nb = bin_edges.len().saturating_sub(1);
    let mut counts = vec![0u64; nb];
    if nb == 0 {
        return counts;
    }
    let (lo, hi) = (bin_edges[0], bin_edges[nb]);
    for v in values {
        if !(v.is_finite() && v >= lo && v <= hi) {
            continue;
        }
        // The first edge strictly greater than v, minus one; v == hi goes to the last bin.
        let i = bin_edges.partition_point(|&e| e <= v);
        counts[i.saturating_sub(1).min(nb - 1)] += 1;
    }
    counts
}
