//! Figure writers in `quietgpt::analysis::plot`: every call writes a valid PNG of the expected size,
//! and awkward data (empty, NaN, ±inf, zeros on a log axis) gives a placeholder or a clear error,
//! never a panic.

use std::path::PathBuf;

use quietgpt::analysis::plot::{
    bin_counts, even_bin_edges, grouped_bars, heatmap, histograms_side_by_side, line_chart, BarSeries, HistPanel,
    Series, DEFAULT_SIZE, HIST_PANEL_SIZE,
};
use quietgpt::Error;

/// A fresh per-test output directory under the system temp dir.
fn out_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("quietgpt-plot-tests").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Checks the PNG signature and IHDR chunk and returns (width, height).
fn png_size(path: &std::path::Path, min_bytes: usize) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() >= min_bytes, "{}: only {} bytes", path.display(), bytes.len());
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}: not a PNG", path.display());
    assert_eq!(&bytes[8..12], &[0, 0, 0, 13], "IHDR length");
    assert_eq!(&bytes[12..16], b"IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!(&bytes[bytes.len() - 8..bytes.len() - 4], b"IEND", "{}: truncated", path.display());
    (w, h)
}

/// Loss-like curves: two variants x two seeds.
fn loss_curves() -> Vec<Series> {
    let mut out = Vec::new();
    for (v, name) in ["softmax", "softmax1 (quiet)"].iter().enumerate() {
        for seed in 0..2 {
            let pts = (0..=200)
                .map(|i| {
                    let step = i as f64 * 25.0;
                    let y =
                        1.4 + 3.0 * (-step / (800.0 + 100.0 * v as f64)).exp() + 0.02 * ((i * (seed + 3)) as f64).sin();
                    (step, y)
                })
                .collect();
            out.push(Series::new(*name, pts, v));
        }
    }
    out
}

#[test]
fn line_chart_writes_png_linear_and_log() {
    let dir = out_dir("line");
    let series = loss_curves();
    let p = dir.join("loss.png");
    line_chart(&p, "Validation loss", "step", "loss", &series, false).unwrap();
    assert_eq!(png_size(&p, 20_000), DEFAULT_SIZE);
    let p = dir.join("loss_log.png");
    line_chart(&p, "Validation loss (log)", "step", "loss", &series, true).unwrap();
    assert_eq!(png_size(&p, 20_000), DEFAULT_SIZE);

    // Per-layer statistic against the layer index, spanning several decades, with markers.
    let layers: Vec<Series> = (0..2)
        .map(|v| {
            let pts = (0..12).map(|l| (l as f64, 10f64.powf(0.5 + l as f64 * (0.1 + 0.25 * v as f64)))).collect();
            Series::new(["softmax", "softmax1"][v], pts, v)
        })
        .collect();
    let p = dir.join("max_abs.png");
    line_chart(&p, "max |x| per layer", "layer", "max |x|", &layers, true).unwrap();
    assert_eq!(png_size(&p, 20_000), DEFAULT_SIZE);
}

#[test]
fn line_chart_skips_non_finite_and_log_zeros() {
    let dir = out_dir("line-nan");
    let s = vec![
        Series::new(
            "a",
            vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, 0.0), (3.0, -1.0), (f64::INFINITY, 2.0), (4.0, 3.0)],
            0,
        ),
        Series::new("b", vec![(0.0, f64::NEG_INFINITY), (1.0, 5.0), (2.0, 4.0)], 1),
        Series::new("", vec![(0.0, 2.0)], 2), // single point, no legend entry
    ];
    for log in [false, true] {
        let p = dir.join(format!("mixed_{log}.png"));
        line_chart(&p, "mixed", "x", "y", &s, log).unwrap();
        assert_eq!(png_size(&p, 5_000), DEFAULT_SIZE);
    }
    // A constant series (degenerate y range) still works.
    let p = dir.join("flat.png");
    line_chart(&p, "flat", "x", "y", &[Series::new("c", vec![(0.0, 2.0), (1.0, 2.0)], 0)], true).unwrap();
    png_size(&p, 5_000);
}

#[test]
fn line_chart_without_data_writes_placeholder() {
    let dir = out_dir("line-empty");
    let cases: Vec<(&str, Vec<Series>, bool)> = vec![
        ("none", vec![], false),
        ("empty", vec![Series::new("a", vec![], 0)], false),
        ("nan", vec![Series::new("a", vec![(0.0, f64::NAN), (f64::NAN, 1.0)], 0)], false),
        ("log_zeros", vec![Series::new("a", vec![(0.0, 0.0), (1.0, -2.0)], 0)], true),
    ];
    for (name, s, log) in cases {
        let p = dir.join(format!("{name}.png"));
        line_chart(&p, name, "x", "y", &s, log).unwrap();
        assert_eq!(png_size(&p, 1_000), DEFAULT_SIZE, "{name}");
    }
}

#[test]
fn path_errors_are_reported() {
    let dir = out_dir("paths");
    let s = loss_curves();
    let e = line_chart(dir.join("loss.svg"), "t", "x", "y", &s, false).unwrap_err();
    assert!(matches!(e, Error::Data(_)), "{e}");
    let e = line_chart(dir.join("missing-dir").join("loss.png"), "t", "x", "y", &s, false).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("missing-dir"), "{e}");
}

#[test]
fn histogram_grid_with_zero_counts() {
    let dir = out_dir("hist");
    let edges = even_bin_edges(-8.0, 8.0, 64);
    let mut panels = Vec::new();
    for layer in 0..3 {
        for (v, variant) in ["softmax", "softmax1"].iter().enumerate() {
            // Gaussian-ish bulk with a heavier tail for softmax in later layers; many empty bins.
            let scale = 1.0 + (layer * (1 - v)) as f64;
            let vals = (0..20_000).map(|i| {
                let u = (i as f64 + 0.5) / 20_000.0;
                scale * (2.0 * u - 1.0).powi(3) * 3.0
            });
            panels.push(HistPanel {
                row_label: format!("layer {layer}"),
                col_label: variant.to_string(),
                bin_edges: edges.clone(),
                counts: bin_counts(vals, &edges),
            });
        }
    }
    // One panel whose counts are all zero, one with a non-finite edge.
    panels[1].counts.iter_mut().for_each(|c| *c = 0);
    panels[2].bin_edges[10] = f64::NAN;
    let p = dir.join("hist.png");
    histograms_side_by_side(&p, "Activation histograms", &panels).unwrap();
    let (w, h) = png_size(&p, 20_000);
    assert!(w >= 2 * HIST_PANEL_SIZE.0 && h >= 3 * HIST_PANEL_SIZE.1, "{w}x{h}");

    // A missing cell in the grid (layer 3 only for softmax) is fine.
    panels.push(HistPanel {
        row_label: "layer 3".into(),
        col_label: "softmax".into(),
        bin_edges: edges.clone(),
        counts: vec![1; 64],
    });
    let p = dir.join("hist_missing_cell.png");
    histograms_side_by_side(&p, "Activation histograms", &panels).unwrap();
    let (_, h4) = png_size(&p, 20_000);
    assert!(h4 > h);
}

#[test]
fn histogram_grid_rejects_bad_panels_and_handles_empty() {
    let dir = out_dir("hist-bad");
    let bad = HistPanel { row_label: "r".into(), col_label: "c".into(), bin_edges: vec![0.0, 1.0], counts: vec![1, 2] };
    let e = histograms_side_by_side(dir.join("bad.png"), "t", std::slice::from_ref(&bad)).unwrap_err();
    assert!(matches!(e, Error::Data(_)), "{e}");
    let ok = HistPanel { bin_edges: vec![0.0, 1.0, 2.0], ..bad };
    let e = histograms_side_by_side(dir.join("dup.png"), "t", &[ok.clone(), ok.clone()]).unwrap_err();
    assert!(matches!(e, Error::Data(_)), "{e}");

    let p = dir.join("empty.png");
    histograms_side_by_side(&p, "t", &[]).unwrap();
    png_size(&p, 1_000);
    // All edges NaN, all counts zero: drawn with "no data" notices.
    let nan = HistPanel { bin_edges: vec![f64::NAN; 3], counts: vec![0, 0], ..ok };
    let p = dir.join("nan.png");
    histograms_side_by_side(&p, "t", &[nan]).unwrap();
    png_size(&p, 1_000);
}

#[test]
fn bin_helpers() {
    let e = even_bin_edges(0.0, 4.0, 4);
    assert_eq!(e, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
    assert!(even_bin_edges(1.0, 1.0, 4).is_empty());
    assert!(even_bin_edges(0.0, f64::NAN, 4).is_empty());
    let c = bin_counts([0.0, 0.5, 1.0, 3.999, 4.0, 4.5, -1.0, f64::NAN, f64::INFINITY], &e);
    assert_eq!(c, vec![2, 1, 0, 2]);
    assert!(bin_counts([1.0], &[0.0]).is_empty());
}

#[test]
fn heatmap_writes_png_with_missing_and_log() {
    let dir = out_dir("heat");
    // 6 layers x 96 channels, a few outlier channels, one NaN, one short row, one zero.
    let mut m: Vec<Vec<f64>> =
        (0..6).map(|l| (0..96).map(|c| 0.5 + 0.1 * l as f64 + 0.01 * (c % 7) as f64).collect()).collect();
    for row in m.iter_mut().skip(2) {
        row[17] = 60.0;
        row[80] = 25.0;
    }
    m[0][3] = f64::NAN;
    m[1][5] = 0.0;
    m[5].truncate(90);
    for log in [false, true] {
        let p = dir.join(format!("heat_{log}.png"));
        heatmap(&p, "max |x| per channel", "channel", "layer", &m, log).unwrap();
        assert_eq!(png_size(&p, 20_000), DEFAULT_SIZE);
    }
    // More channels than pixels: columns are merged by max.
    let wide: Vec<Vec<f64>> =
        (0..12).map(|l| (0..3072).map(|c| if c == 1234 { 100.0 } else { 1.0 + l as f64 }).collect()).collect();
    let p = dir.join("wide.png");
    heatmap(&p, "wide", "channel", "layer", &wide, true).unwrap();
    assert_eq!(png_size(&p, 20_000), DEFAULT_SIZE);
    // A constant matrix (degenerate colour range).
    let p = dir.join("const.png");
    heatmap(&p, "const", "channel", "layer", &vec![vec![2.0; 4]; 3], false).unwrap();
    png_size(&p, 5_000);
}

#[test]
fn heatmap_without_data_writes_placeholder() {
    let dir = out_dir("heat-empty");
    let cases: Vec<(&str, Vec<Vec<f64>>, bool)> = vec![
        ("no_rows", vec![], false),
        ("empty_rows", vec![vec![], vec![]], false),
        ("nan", vec![vec![f64::NAN, f64::INFINITY]], false),
        ("log_zeros", vec![vec![0.0, -1.0]], true),
    ];
    for (name, m, log) in cases {
        let p = dir.join(format!("{name}.png"));
        heatmap(&p, name, "channel", "layer", &m, log).unwrap();
        assert_eq!(png_size(&p, 1_000), DEFAULT_SIZE, "{name}");
    }
}

#[test]
fn grouped_bars_with_ci() {
    let dir = out_dir("bars");
    let groups: Vec<String> =
        ["int8 per-tensor", "int8 per-channel", "int4 per-channel"].iter().map(|s| s.to_string()).collect();
    let bars = vec![
        BarSeries { label: "softmax".into(), values: vec![0.12, 0.03, 0.9], ci_half_widths: vec![0.02, 0.01, 0.15] },
        BarSeries {
            label: "softmax1".into(),
            values: vec![0.02, -0.01, 0.4],
            ci_half_widths: vec![0.01, 0.01, f64::NAN],
        },
        BarSeries { label: "no CI".into(), values: vec![f64::NAN, 0.05, 0.3], ci_half_widths: vec![] },
    ];
    let p = dir.join("bars.png");
    grouped_bars(&p, "Quantization loss gap", "loss gap", &groups, &bars).unwrap();
    assert_eq!(png_size(&p, 20_000), DEFAULT_SIZE);

    let bad = vec![BarSeries { label: "x".into(), values: vec![1.0], ci_half_widths: vec![] }];
    assert!(matches!(grouped_bars(dir.join("bad.png"), "t", "y", &groups, &bad), Err(Error::Data(_))));
    let bad_ci = vec![BarSeries { label: "x".into(), values: vec![1.0; 3], ci_half_widths: vec![0.1] }];
    assert!(matches!(grouped_bars(dir.join("bad2.png"), "t", "y", &groups, &bad_ci), Err(Error::Data(_))));

    for (name, g, b) in [
        ("no_groups", vec![], vec![]),
        ("no_bars", groups.clone(), vec![]),
        (
            "nan",
            groups.clone(),
            vec![BarSeries { label: "x".into(), values: vec![f64::NAN; 3], ci_half_widths: vec![1.0; 3] }],
        ),
    ] {
        let p = dir.join(format!("{name}.png"));
        grouped_bars(&p, name, "y", &g, &b).unwrap();
        assert_eq!(png_size(&p, 1_000), DEFAULT_SIZE, "{name}");
    }
}

#[test]
fn extreme_values_do_not_panic() {
    let dir = out_dir("extreme");
    let big = [f64::MAX, -f64::MAX, f64::MIN_POSITIVE, 1e-300, 1e300, 0.0];
    let pts: Vec<(f64, f64)> = big.iter().flat_map(|&a| big.iter().map(move |&b| (a, b))).collect();
    for log in [false, true] {
        line_chart(dir.join(format!("line_{log}.png")), "extreme", "x", "y", &[Series::new("e", pts.clone(), 99)], log)
            .unwrap();
        heatmap(dir.join(format!("heat_{log}.png")), "extreme", "c", "l", &[big.to_vec(), big.to_vec()], log).unwrap();
    }
    let panel = HistPanel {
        row_label: "r".into(),
        col_label: "c".into(),
        bin_edges: vec![-f64::MAX, 0.0, f64::MAX],
        counts: vec![u64::MAX, 1],
    };
    histograms_side_by_side(dir.join("hist.png"), "extreme", &[panel]).unwrap();
    let bars =
        [BarSeries { label: "b".into(), values: vec![f64::MAX, -f64::MAX], ci_half_widths: vec![f64::MAX, 1.0] }];
    grouped_bars(dir.join("bars.png"), "extreme", "y", &["a".to_string(), "b".to_string()], &bars).unwrap();
    for f in ["line_false", "line_true", "heat_false", "heat_true", "hist", "bars"] {
        png_size(&dir.join(format!("{f}.png")), 1_000);
    }
}
