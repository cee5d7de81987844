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
//! Colours come from the Okabe–Ito palette (colour-blind safe); heatmaps use viridis.

use std::error::Error as StdError;
use std::path::Path;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use crate::{Error, Result};

mod canvas;
use canvas::*;

/// Default figure size in pixels (width, height) for line charts, heatmaps and bar charts.
pub const DEFAULT_SIZE: (u32, u32) = (1000, 600);

/// Size of one panel of [`histograms_side_by_side`] in pixels (width, height).
pub const HIST_PANEL_SIZE: (u32, u32) = (340, 220);

/// The Okabe–Ito colour-blind-safe palette, reordered so that the first colours contrast most on
/// white (blue, vermillion, bluish green, orange, reddish purple, sky blue, black, yellow).
/// `color_index` values wrap around modulo its length.
pub const PALETTE: [(u8, u8, u8); 8] = [
    (0, 114, 178),   // blue
    (213, 94, 0),    // vermillion
    (0, 158, 115),   // bluish green
    (230, 159, 0),   // orange
    (204, 121, 167), // reddish purple
    (86, 180, 233),  // sky blue
    (0, 0, 0),       // black
    (240, 228, 66),  // yellow
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

// ---------------------------------------------------------------------------------------------
// 1. Line chart
// ---------------------------------------------------------------------------------------------

/// A line chart of `series` (loss curves, per-layer statistics against the layer index, ...),
/// [`DEFAULT_SIZE`], with a legend placed in the emptiest corner.
///
/// With `log_y` the y axis is logarithmic and points with `y <= 0` are skipped. Series with at most
/// 40 points also get point markers. No drawable point at all gives a placeholder figure.
pub fn line_chart(
    path: impl AsRef<Path>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
) -> Result<()> {
    let path = path.as_ref();
    // Clean each series into plot space (log10 y on a log axis).
    let cleaned: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
                .map(|&(x, y)| (x, if log_y { y.log10() } else { y }))
                .collect()
        })
        .collect();
    let all = || cleaned.iter().flatten();
    if all().next().is_none() {
        let why = if series.iter().all(|s| s.points.is_empty()) {
            "no points"
        } else if log_y {
            "no finite positive values for the log axis"
        } else {
            "no finite values"
        };
        return placeholder(path, DEFAULT_SIZE, title, why);
    }
    let x_axis = Axis::linear(bounds(all().map(|p| p.0)), 0.0, all().all(|p| p.0.fract() == 0.0), 10);
    let y_axis = if log_y {
        Axis::log(bounds(all().map(|p| p.1)), 0.05)
    } else {
        Axis::linear(bounds(all().map(|p| p.1)), 0.05, false, 8)
    };
    let legend_pos = emptiest_corner(all().copied(), &x_axis, &y_axis);

    render(path, DEFAULT_SIZE, |root| {
        let body = titled(root, title)?;
        let mut chart = ChartBuilder::on(&body)
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(x_axis.spec(), y_axis.spec())?;
        let (xf, yf) = (x_axis.formatter(), y_axis.formatter());
        chart
            .configure_mesh()
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .x_desc(x_label)
            .y_desc(y_label)
            .axis_desc_style(font(18))
            .label_style(font(15))
            .x_label_formatter(&xf)
            .y_label_formatter(&yf)
            .draw()?;

        let mut labelled = std::collections::HashSet::new();
        let mut any_label = false;
        for (s, pts) in series.iter().zip(&cleaned) {
            let color = palette(s.color_index);
            let anno = chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?;
            if !s.label.is_empty() && labelled.insert(s.label.as_str()) {
                any_label = true;
                anno.label(s.label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
            }
            if pts.len() <= 40 {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
            }
        }
        if any_label {
            chart
                .configure_series_labels()
                .position(legend_pos)
                .margin(12)
                .label_font(font(16))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(150, 150, 150))
                .draw()?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// 2. Histogram grid
// ---------------------------------------------------------------------------------------------

/// A grid of histograms: one row per distinct `row_label` (e.g. layer), one column per distinct
/// `col_label` (e.g. variant), each panel with a log-scaled count axis. Zero-count bins are not
/// drawn (bars start at 0.5 so that a count of 1 is visible). The image is
/// [`HIST_PANEL_SIZE`] per panel plus room for the title and the row/column labels.
///
/// Errors: a panel whose `counts.len() + 1 != bin_edges.len()`, or two panels with the same
/// (row, column) labels. No panels at all gives a placeholder figure.
pub fn histograms_side_by_side(path: impl AsRef<Path>, title: &str, panels: &[HistPanel]) -> Result<()> {
    let path = path.as_ref();
    if panels.is_empty() {
        return placeholder(path, DEFAULT_SIZE, title, "no histogram panels");
    }
    let mut rows: Vec<&str> = Vec::new();
    let mut cols: Vec<&str> = Vec::new();
    for p in panels {
        if p.counts.len() + 1 != p.bin_edges.len() {
            return Err(Error::Data(format!(
                "histogram panel ({}, {}): {} counts need {} bin edges, got {}",
                p.row_label,
                p.col_label,
                p.counts.len(),
                p.counts.len() + 1,
                p.bin_edges.len()
            )));
        }
        if !rows.contains(&p.row_label.as_str()) {
            rows.push(&p.row_label);
        }
        if !cols.contains(&p.col_label.as_str()) {
            cols.push(&p.col_label);
        }
    }
    let mut grid: Vec<Option<&HistPanel>> = vec![None; rows.len() * cols.len()];
    for p in panels {
        let r = rows.iter().position(|&l| l == p.row_label).unwrap_or(0);
        let c = cols.iter().position(|&l| l == p.col_label).unwrap_or(0);
        if grid[r * cols.len() + c].replace(p).is_some() {
            return Err(Error::Data(format!(
                "two histogram panels for row {:?}, column {:?}",
                p.row_label, p.col_label
            )));
        }
    }
    // Drawable bins per panel: (left, right, count) with finite increasing edges.
    let bins = |p: &HistPanel| -> Vec<(f64, f64, u64)> {
        p.bin_edges
            .windows(2)
            .zip(&p.counts)
            .filter(|(e, _)| e[0].is_finite() && e[1].is_finite() && e[1] > e[0])
            .map(|(e, &c)| (e[0], e[1], c))
            .collect()
    };

    const LEFT: u32 = 46; // row labels
    const TOP: u32 = 46 + 30; // title + column headers
    let (pw, ph) = HIST_PANEL_SIZE;
    let size = (LEFT + pw * cols.len() as u32 + 10, TOP + ph * rows.len() as u32 + 10);
    render(path, size, |root| {
        let body = titled(root, title)?;
        let (row_strip, rest) = body.split_horizontally(LEFT);
        let rest = rest.margin(0, 10, 0, 10);
        let (header, cells) = rest.split_vertically(30);
        for (c, area) in header.split_evenly((1, cols.len())).iter().enumerate() {
            let (w, h) = area.dim_in_pixel();
            let color = palette(c);
            let style = font(18).color(&color).pos(Pos::new(HPos::Center, VPos::Center));
            area.draw_text(cols[c], &style, (w as i32 / 2, h as i32 / 2))?;
        }
        let row_strip = row_strip.margin(30, 10, 0, 0);
        for (r, area) in row_strip.split_evenly((rows.len(), 1)).iter().enumerate() {
            let (w, h) = area.dim_in_pixel();
            let style = font(17).transform(FontTransform::Rotate270).pos(Pos::new(HPos::Center, VPos::Center));
            area.draw_text(rows[r], &style, (w as i32 / 2, h as i32 / 2))?;
        }
        let cell_areas = cells.split_evenly((rows.len(), cols.len()));
        for r in 0..rows.len() {
            let row_bins: Vec<Option<Vec<(f64, f64, u64)>>> =
                (0..cols.len()).map(|c| grid[r * cols.len() + c].map(bins)).collect();
            let edges = row_bins.iter().flatten().flatten().flat_map(|&(a, b, _)| [a, b]);
            let x_axis = Axis::linear(bounds(edges), 0.0, false, 5);
            let max_count = row_bins.iter().flatten().flatten().map(|b| b.2).max().unwrap_or(0);
            // Log axis from 0.5 (bar base) to a little above the largest count.
            let mut y_axis = Axis::log(Some((0.5f64.log10(), (max_count.max(10) as f64).log10())), 0.04);
            y_axis.ticks.retain(|&t| t >= 0.0); // no tick below a count of 1
            for c in 0..cols.len() {
                let area = &cell_areas[r * cols.len() + c];
                let mut chart = ChartBuilder::on(area)
                    .margin(6)
                    .x_label_area_size(24)
                    .y_label_area_size(44)
                    .build_cartesian_2d(x_axis.spec(), y_axis.spec())?;
                let (xf, yf) = (x_axis.formatter(), y_axis.formatter());
                chart
                    .configure_mesh()
                    .bold_line_style(GRID)
                    .light_line_style(TRANSPARENT)
                    .label_style(font(12))
                    .x_label_formatter(&xf)
                    .y_label_formatter(&yf)
                    .draw()?;
                let base = 0.5f64.log10();
                let color = palette(c);
                match &row_bins[c] {
                    Some(b) if b.iter().any(|b| b.2 > 0) => {
                        chart.draw_series(b.iter().filter(|b| b.2 > 0).map(|&(lo, hi, n)| {
                            Rectangle::new([(lo, base), (hi, (n as f64).log10())], color.mix(0.85).filled())
                        }))?;
                    }
                    other => {
                        let msg = if other.is_some() { "no data (all counts zero)" } else { "no data" };
                        let (w, h) = area.dim_in_pixel();
                        let style = font(14).color(&RGBColor(120, 120, 120)).pos(Pos::new(HPos::Center, VPos::Center));
                        area.draw_text(msg, &style, (w as i32 / 2 + 20, h as i32 / 2))?;
                    }
                }
            }
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// 3. Heatmap
// ---------------------------------------------------------------------------------------------

/// A heatmap of `values[row][col]` (rows = layers on the y axis, row 0 at the bottom; columns =
/// channels on the x axis) in the viridis colour map, with a colour bar. [`DEFAULT_SIZE`].
///
/// With `log_color` the colour encodes log10(value) and values `<= 0` count as missing. Missing
/// cells (non-finite values, short rows) are light grey. When there are more columns than pixels,
/// adjacent columns are merged by their maximum (so that a single outlier channel stays visible);
/// the x axis stays in column units. No finite value gives a placeholder figure.
pub fn heatmap(
    path: impl AsRef<Path>,
    title: &str,
    x_label: &str,
    y_label: &str,
    values: &[Vec<f64>],
    log_color: bool,
) -> Result<()> {
    let path = path.as_ref();
    let usable = |v: f64| v.is_finite() && (!log_color || v > 0.0);
    let to_plot = |v: f64| if log_color { v.log10() } else { v };
    let n_rows = values.len();
    let n_cols = values.iter().map(Vec::len).max().unwrap_or(0);
    let finite = values.iter().flatten().copied().filter(|&v| usable(v)).map(to_plot);
    let Some((vmin, vmax)) = bounds(finite) else {
        let why = if n_rows == 0 || n_cols == 0 {
            "empty matrix"
        } else if log_color {
            "no finite positive values for the log colour scale"
        } else {
            "no finite values"
        };
        return placeholder(path, DEFAULT_SIZE, title, why);
    };
    let (vmin, vmax) = if vmax > vmin { (vmin, vmax) } else { (vmin - 0.5, vmax + 0.5) };
    let has_missing = values.iter().any(|r| r.len() < n_cols || r.iter().any(|&v| !usable(v)));

    // Cell i spans [i, i + 1]. Few cells: a tick at each cell centre labelled i; many cells:
    // integer ticks at cell starts.
    let cell_axis = |n: usize, n_ticks: usize| {
        let (lo, hi) = (0.0, n as f64);
        if n <= 32 {
            let every = n.div_ceil(n_ticks).max(1);
            let ticks = (0..n).filter(|i| i % every == 0).map(|i| i as f64 + 0.5).collect();
            (Axis { lo, hi, ticks, log: false }, 0.5)
        } else {
            (Axis { lo, hi, ticks: linear_ticks(lo, hi, n_ticks, true), log: false }, 0.0)
        }
    };
    let (x_axis, x_shift) = cell_axis(n_cols, 10);
    let (y_axis, y_shift) = cell_axis(n_rows, 16);
    let c_axis = Axis {
        lo: vmin,
        hi: vmax,
        ticks: if log_color { log_ticks(vmin, vmax) } else { linear_ticks(vmin, vmax, 8, false) },
        log: log_color,
    };

    render(path, DEFAULT_SIZE, |root| {
        let body = titled(root, title)?;
        let (main, bar) = body.split_horizontally(DEFAULT_SIZE.0 - 150);
        let mut chart = ChartBuilder::on(&main)
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(x_axis.spec(), y_axis.spec())?;
        let xf = |v: &f64| fmt_num(v - x_shift);
        let yf = |v: &f64| fmt_num(v - y_shift);
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .axis_desc_style(font(18))
            .label_style(font(15))
            .x_label_formatter(&xf)
            .y_label_formatter(&yf)
            .draw()?;
        // Merge columns by max when there are more columns than pixels.
        let px_w = chart.plotting_area().dim_in_pixel().0.max(1) as usize;
        let group = n_cols.div_ceil(px_w).max(1);
        let mut cells = Vec::with_capacity(n_rows * n_cols.div_ceil(group));
        for (r, row) in values.iter().enumerate() {
            for c0 in (0..n_cols).step_by(group) {
                let c1 = (c0 + group).min(n_cols);
                let v = (c0..c1)
                    .filter_map(|c| row.get(c).copied())
                    .filter(|&v| usable(v))
                    .map(to_plot)
                    .fold(f64::NEG_INFINITY, f64::max);
                let color = if v.is_finite() { viridis((v - vmin) / (vmax - vmin)) } else { MISSING };
                cells.push(Rectangle::new([(c0 as f64, r as f64), (c1 as f64, r as f64 + 1.0)], color.filled()));
            }
        }
        chart.draw_series(cells)?;

        // Colour bar with the same vertical extent as the plotting area.
        let mut cb = ChartBuilder::on(&bar)
            .margin_top(15)
            .margin_bottom(15)
            .margin_right(10)
            .x_label_area_size(50)
            .right_y_label_area_size(80)
            .build_cartesian_2d(Axis { lo: 0.0, hi: 1.0, ticks: Vec::new(), log: false }, c_axis.spec())?;
        let cf = c_axis.formatter();
        cb.configure_mesh().disable_mesh().label_style(font(14)).y_label_formatter(&cf).draw()?;
        const STEPS: usize = 200;
        cb.draw_series((0..STEPS).map(|i| {
            let t0 = i as f64 / STEPS as f64;
            let t1 = (i + 1) as f64 / STEPS as f64;
            let (y0, y1) = (vmin + t0 * (vmax - vmin), vmin + t1 * (vmax - vmin));
            Rectangle::new([(0.0, y0), (1.0, y1)], viridis((t0 + t1) / 2.0).filled())
        }))?;
        if has_missing {
            let (w, h) = bar.dim_in_pixel();
            let style = font(13).color(&RGBColor(110, 110, 110)).pos(Pos::new(HPos::Center, VPos::Center));
            bar.draw(&Rectangle::new([(14, h as i32 - 30), (28, h as i32 - 16)], MISSING.filled()))?;
            bar.draw_text("missing", &style, (w as i32 / 2 - 10, h as i32 - 23))?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// 4. Grouped bars
// ---------------------------------------------------------------------------------------------

/// Grouped bars: one group per entry of `groups` on the x axis (e.g. quantization settings), one
/// coloured bar per [`BarSeries`] inside each group (colour `i` of [`PALETTE`] for `bars[i]`),
/// with error bars of ±`ci_half_widths` and a legend. Bars start at 0, so negative values point
/// down. [`DEFAULT_SIZE`].
///
/// Errors: a series whose `values` length differs from `groups.len()`, or whose non-empty
/// `ci_half_widths` does. No groups, no series or no finite value gives a placeholder figure.
pub fn grouped_bars(
    path: impl AsRef<Path>,
    title: &str,
    y_label: &str,
    groups: &[String],
    bars: &[BarSeries],
) -> Result<()> {
    let path = path.as_ref();
    for b in bars {
        if b.values.len() != groups.len() {
            return Err(Error::Data(format!(
                "bar series {:?}: {} values for {} groups",
                b.label,
                b.values.len(),
                groups.len()
            )));
        }
        if !b.ci_half_widths.is_empty() && b.ci_half_widths.len() != groups.len() {
            return Err(Error::Data(format!(
                "bar series {:?}: {} CI half-widths for {} groups",
                b.label,
                b.ci_half_widths.len(),
                groups.len()
            )));
        }
    }
    let ci = |b: &BarSeries, g: usize| b.ci_half_widths.get(g).copied().filter(|c| c.is_finite() && *c >= 0.0);
    let extents = bars.iter().flat_map(|b| {
        b.values.iter().enumerate().filter(|(_, v)| v.is_finite()).flat_map(move |(g, &v)| {
            let c = ci(b, g).unwrap_or(0.0);
            [v - c, v + c]
        })
    });
    let (lo, hi) = bounds(extents.chain([0.0])).unwrap_or((0.0, 0.0));
    if groups.is_empty() || bars.is_empty() || !bars.iter().flat_map(|b| &b.values).any(|v| v.is_finite()) {
        let why = if groups.is_empty() || bars.is_empty() { "no groups or no bar series" } else { "no finite values" };
        return placeholder(path, DEFAULT_SIZE, title, why);
    }
    // Head room above the bars for the legend.
    let (lo, hi) = if hi > lo { (lo, hi + 0.18 * (hi - lo)) } else { (lo - 1.0, hi + 1.0) };
    let y_axis = Axis::linear(Some((lo, hi)), 0.04, false, 8);
    let n = groups.len();
    let x_spec = Axis { lo: -0.5, hi: n as f64 - 0.5, ticks: (0..n).map(|g| g as f64).collect(), log: false };

    render(path, DEFAULT_SIZE, |root| {
        let body = titled(root, title)?;
        let mut chart = ChartBuilder::on(&body)
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(x_spec, y_axis.spec())?;
        let xf = |v: &f64| {
            let g = v.round();
            if (v - g).abs() < 1e-6 && g >= 0.0 && (g as usize) < n {
                groups[g as usize].clone()
            } else {
                String::new()
            }
        };
        let yf = y_axis.formatter();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .y_desc(y_label)
            .axis_desc_style(font(18))
            .label_style(font(15))
            .x_label_formatter(&xf)
            .y_label_formatter(&yf)
            .draw()?;
        if lo < 0.0 && hi > 0.0 {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(-0.5, 0.0), (n as f64 - 0.5, 0.0)],
                RGBColor(80, 80, 80).stroke_width(1),
            )))?;
        }
        let width = 0.8 / bars.len() as f64;
        for (i, b) in bars.iter().enumerate() {
            let color = palette(i);
            let left = |g: usize| g as f64 - 0.4 + i as f64 * width;
            let rects = b.values.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(g, &v)| {
                let x0 = left(g) + 0.06 * width;
                let x1 = left(g) + 0.94 * width;
                Rectangle::new([(x0, 0.0), (x1, v)], color.filled())
            });
            chart
                .draw_series(rects)?
                .label(b.label.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 7), (x + 18, y + 7)], color.filled()));
            let whisker = RGBColor(40, 40, 40).stroke_width(2);
            for (g, &v) in b.values.iter().enumerate() {
                let Some(c) = ci(b, g).filter(|c| *c > 0.0 && v.is_finite()) else { continue };
                let xm = left(g) + 0.5 * width;
                let cap = 0.18 * width;
                chart.draw_series([
                    PathElement::new(vec![(xm, v - c), (xm, v + c)], whisker),
                    PathElement::new(vec![(xm - cap, v - c), (xm + cap, v - c)], whisker),
                    PathElement::new(vec![(xm - cap, v + c), (xm + cap, v + c)], whisker),
                ])?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .margin(12)
            .label_font(font(16))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(150, 150, 150))
            .draw()?;
        Ok(())
    })
}
