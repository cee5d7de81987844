//! Heatmaps.

use super::*;

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
