//! Drawing helpers shared by the charts: font, palette, canvas set-up, axes and ticks, colour map.

use super::*;
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------

pub(super) type DrawResult = std::result::Result<(), Box<dyn StdError>>;
pub(super) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

pub(super) const FONT_FAMILY: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");
pub(super) const GRID: RGBColor = RGBColor(225, 225, 225);
pub(super) const MISSING: RGBColor = RGBColor(215, 215, 215);

pub(super) fn font(size: u32) -> TextStyle<'static> {
    (FONT_FAMILY, size).into_font().color(&BLACK)
}

pub(super) fn palette(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// Registers the embedded font with plotters once.
pub(super) fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok =
        *REGISTERED.get_or_init(|| plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::Data("the embedded font assets/DejaVuSans.ttf could not be loaded".into()))
    }
}

/// Draws a `size` PNG at `path` with `draw` (atomically: via a temporary file), turning every failure
/// into a crate error.
pub(super) fn render(path: &Path, size: (u32, u32), draw: impl FnOnce(&Area) -> DrawResult) -> Result<()> {
    let ext_ok = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !ext_ok {
        return Err(Error::Data(format!("figure path {} must end in .png", path.display())));
    }
    ensure_font()?;
    // The encoder picks the format from the extension, so the temporary file ends in .png too.
    let tmp = path.with_extension("tmp.png");
    crate::fs::create_atomic(path, &tmp, |tmp| {
        // Open the file first: a missing directory or a permission problem becomes a proper I/O error.
        std::fs::File::create(tmp).map_err(|e| Error::io(path, e))?;
        let outcome = (|| -> DrawResult {
            let root = BitMapBackend::new(tmp, size).into_drawing_area();
            root.fill(&WHITE)?;
            draw(&root)?;
            root.present()?;
            Ok(())
        })();
        outcome.map_err(|e| Error::io(path, std::io::Error::other(format!("cannot draw figure: {e}"))))
    })
}

/// Draws `title` centred in a strip at the top of `area` and returns the area below it.
/// (plotters' own `titled` places ab_glyph text too high and clips it.)
pub(super) fn titled<'a>(area: &Area<'a>, title: &str) -> std::result::Result<Area<'a>, Box<dyn StdError>> {
    const H: u32 = 46;
    let (top, body) = area.split_vertically(H);
    let (w, _) = top.dim_in_pixel();
    let style = font(26).pos(Pos::new(HPos::Center, VPos::Center));
    top.draw_text(title, &style, (w as i32 / 2, H as i32 / 2 + 6))?;
    Ok(body)
}

/// A figure with just the title and a grey "no data" notice.
pub(super) fn placeholder(path: &Path, size: (u32, u32), title: &str, why: &str) -> Result<()> {
    render(path, size, |root| {
        let body = titled(root, title)?;
        let (w, h) = body.dim_in_pixel();
        let style = font(22).color(&RGBColor(110, 110, 110)).pos(Pos::new(HPos::Center, VPos::Center));
        body.draw_text(&format!("no data: {why}"), &style, (w as i32 / 2, h as i32 / 2))?;
        Ok(())
    })
}

/// (min, max) of the finite values, or None when there is none.
pub(super) fn bounds(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values.into_iter().filter(|v| v.is_finite()).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// One axis in plot space (log10 units for a log axis) with precomputed tick positions.
pub(super) struct Axis {
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) ticks: Vec<f64>,
    pub(super) log: bool,
}

impl Axis {
    /// A linear axis over `b`, padded by `pad` of its span on each side; `integer` keeps ticks on
    /// integers.
    pub(super) fn linear(b: Option<(f64, f64)>, pad: f64, integer: bool, n_ticks: usize) -> Axis {
        let (lo, hi) = widen(b.unwrap_or((0.0, 1.0)), pad);
        Axis { lo, hi, ticks: linear_ticks(lo, hi, n_ticks, integer), log: false }
    }

    /// A log axis over `b` given in log10 units.
    pub(super) fn log(b: Option<(f64, f64)>, pad: f64) -> Axis {
        let (lo, hi) = widen(b.unwrap_or((0.0, 1.0)), pad);
        Axis { lo, hi, ticks: log_ticks(lo, hi), log: true }
    }

    pub(super) fn spec(&self) -> Axis {
        Axis { lo: self.lo, hi: self.hi, ticks: self.ticks.clone(), log: self.log }
    }

    pub(super) fn formatter(&self) -> impl Fn(&f64) -> String {
        let log = self.log;
        move |v: &f64| fmt_num(if log { 10f64.powf(*v) } else { *v })
    }
}

/// A linear plotters coordinate whose ticks are exactly `ticks` (plotters' own tick choice for log
/// axes leaves narrow ranges without any tick).
impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let frac = (v - self.lo) / (self.hi - self.lo);
        let len = (limit.1 - limit.0) as f64;
        if !frac.is_finite() {
            return (limit.0 + limit.1) / 2;
        }
        // Clamp far outside values so the i32 conversion cannot wrap.
        limit.0 + (len * frac.clamp(-10.0, 11.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// Pads a range by `pad` of its span on each side; a degenerate range gets a unit-ish width.
pub(super) fn widen((lo, hi): (f64, f64), pad: f64) -> (f64, f64) {
    if hi > lo {
        let d = (hi - lo) * pad;
        (lo - d, hi + d)
    } else {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - d, hi + d)
    }
}

/// About `n` ticks at multiples of 1, 2 or 5 × 10^k inside [lo, hi].
pub(super) fn linear_ticks(lo: f64, hi: f64, n: usize, integer: bool) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite() && hi > lo) {
        return Vec::new();
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    if integer {
        step = step.max(1.0).round();
    }
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).take(1000).map(|k| k as f64 * step).collect()
}

/// Ticks for a log axis given in log10 units: powers of ten (thinned when there are many), or
/// 1-2-5 mantissas over one or two decades, or linear ticks (mapped to log10) over a narrow range.
pub(super) fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite() && hi > lo) {
        return Vec::new();
    }
    let decades = hi - lo;
    if decades >= 3.0 {
        let every = (decades / 8.0).ceil().max(1.0) as i64;
        let (first, last) = (lo.ceil() as i64, hi.floor() as i64);
        return (first..=last).filter(|k| k.rem_euclid(every) == 0).map(|k| k as f64).collect();
    }
    if decades >= 0.6 {
        let mut t = Vec::new();
        for k in (lo.floor() as i64)..=(hi.ceil() as i64) {
            for m in [1.0f64, 2.0, 5.0] {
                let v = k as f64 + m.log10();
                if v >= lo && v <= hi {
                    t.push(v);
                }
            }
        }
        return t;
    }
    let (a, b) = (10f64.powf(lo), 10f64.powf(hi));
    linear_ticks(a, b, 8, false).into_iter().filter(|v| *v > 0.0).map(f64::log10).collect()
}

/// Compact tick label: plain decimals for moderate magnitudes, `1.5e-4` style otherwise.
pub(super) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.2e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = m.trim_end_matches('0').trim_end_matches('.');
        return format!("{m}e{e}");
    }
    // Six significant digits at most, trailing zeros trimmed.
    let decimals = (5 - a.log10().floor() as i32).clamp(0, 8) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The legend corner that holds the fewest points (upper right on ties).
pub(super) fn emptiest_corner(points: impl Iterator<Item = (f64, f64)>, x: &Axis, y: &Axis) -> SeriesLabelPosition {
    let mut counts = [0usize; 4]; // UR, UL, LR, LL
    for (px, py) in points {
        let fx = (px - x.lo) / (x.hi - x.lo);
        let fy = (py - y.lo) / (y.hi - y.lo);
        let right = fx > 0.6;
        let left = fx < 0.4;
        let upper = fy > 0.6;
        let lower = fy < 0.4;
        if upper && right {
            counts[0] += 1;
        }
        if upper && left {
            counts[1] += 1;
        }
        if lower && right {
            counts[2] += 1;
        }
        if lower && left {
            counts[3] += 1;
        }
    }
    match (0..4).min_by_key(|&i| (counts[i], i)).unwrap_or(0) {
        0 => SeriesLabelPosition::UpperRight,
        1 => SeriesLabelPosition::UpperLeft,
        2 => SeriesLabelPosition::LowerRight,
        _ => SeriesLabelPosition::LowerLeft,
    }
}

/// Viridis colour map at `t` in [0, 1] (clamped), interpolated between nine anchors.
pub(super) fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (72, 40, 120),
        (62, 74, 137),
        (49, 104, 142),
        (38, 130, 142),
        (31, 158, 137),
        (53, 183, 121),
        (109, 205, 89),
        (253, 231, 37),
    ];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_labels() {
        assert_eq!(linear_ticks(0.0, 10.0, 5, false), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(linear_ticks(-0.5, 5.5, 12, true), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(log_ticks(0.0, 6.0), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(!log_ticks(2.5f64.log10(), 4.5f64.log10()).is_empty());
        assert_eq!(fmt_num(0.30000000000000004), "0.3");
        assert_eq!(fmt_num(2500.0), "2500");
        assert_eq!(fmt_num(1e-4), "1e-4");
        assert_eq!(fmt_num(250000.0), "2.5e5");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(1e-300), "1e-300");
        assert_eq!(fmt_num(-0.05), "-0.05");
    }
}
