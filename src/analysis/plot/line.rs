//! Line charts.

use super::*;

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
