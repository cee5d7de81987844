//! Grouped bar charts.

use super::*;

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
