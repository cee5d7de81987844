//! Histogram grids.

use super::*;

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
