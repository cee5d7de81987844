//! Fake quantization: the quantizer's error bounds and corner cases, then W8A8/W8/A8/W4 on a small
//! trained model (float32 reproduced exactly, W8A8 close, W4 worse, the model untouched) and the CLI.

mod common;

use common::{shakespeare, temp_dir};
use quietgpt::analysis::quant::{fake_quantize, QuantParams, QuantScheme};
use quietgpt::analysis::quantize_eval::{
    quantize_eval, ActQuant, Histogram, QuantEvalOptions, QuantReport, RangeMethod, Setting,
};
use quietgpt::config::Config;
use quietgpt::data::{prepare, Dataset, Split, TokenizerKind};
use quietgpt::rng::Rng;
use quietgpt::train::checkpoint;
use quietgpt::train::trainer::Trainer;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn normals(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed, 0);
    (0..n).map(|_| r.normal() as f32).collect()
}

fn quantized(x: &[f32], p: &QuantParams) -> Vec<f32> {
    let mut y = x.to_vec();
    fake_quantize(&mut y, p).unwrap();
    y
}

fn rms_err(a: &[f32], b: &[f32]) -> f64 {
    (a.iter().zip(b).map(|(&x, &y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.len() as f64).sqrt()
}

fn max_err(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn round_trip_error_is_at_most_half_a_step() {
    let x: Vec<f32> = normals(5000, 1).iter().map(|v| 1.5 * v + 0.8).collect();
    let (lo, hi) = x.iter().fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
    for bits in [8, 4] {
        for scheme in [QuantScheme::activations(bits), QuantScheme::weights(bits)] {
            let p = scheme.params(lo, hi).unwrap();
            let y = quantized(&x, &p);
            // s/2 plus f32 rounding of x/s and (q − z)·s
            let bound = p.scale / 2.0 * (1.0 + 1e-5);
            assert!(max_err(&x, &y) <= bound, "{scheme:?}: {} > {bound}", max_err(&x, &y));
            let (qlo, qhi) = p.range();
            assert!(qlo <= lo + bound && qhi >= hi - bound, "{scheme:?}: grid [{qlo}, {qhi}] misses [{lo}, {hi}]");
            let levels: std::collections::BTreeSet<u32> = y.iter().map(|v| v.to_bits()).collect();
            assert!(levels.len() <= 1 << bits, "{scheme:?}: {} distinct values", levels.len());
        }
    }
    // Outside the range, values are clipped to the end of the grid.
    let p = QuantScheme::activations(8).params(-1.0, 1.0).unwrap();
    let y = quantized(&[5.0, -5.0], &p);
    assert_eq!((y[0], y[1]), (p.range().1, p.range().0));
}

#[test]
fn zero_point_makes_zero_exact() {
    for (lo, hi) in [(-1.3f32, 2.9f32), (-0.01, 7.0), (-5.0, 0.2)] {
        let p = QuantScheme::activations(8).params(lo, hi).unwrap();
        assert!((0..=255).contains(&p.zero_point));
        assert_eq!(quantized(&[0.0], &p), vec![0.0], "range [{lo}, {hi}]");
    }
    // All positive: the range is widened to [0, max], z = 0, and in-range values keep the s/2 bound.
    let x: Vec<f32> = (0..1000).map(|i| 0.5 + 3.5 * i as f32 / 999.0).collect();
    let p = QuantScheme::activations(8).params(0.5, 4.0).unwrap();
    assert_eq!(p.zero_point, 0);
    assert_eq!(p.scale, 4.0 / 255.0);
    assert!(max_err(&x, &quantized(&x, &p)) <= p.scale / 2.0 * (1.0 + 1e-5));
    assert_eq!(quantized(&[0.0], &p), vec![0.0]);
}

#[test]
fn constant_tensors_give_no_nan() {
    for scheme in [QuantScheme::activations(8), QuantScheme::weights(8), QuantScheme::weights_per_channel(4)] {
        let mut z = vec![0.0f32; 16];
        scheme.fake_quantize_minmax(&mut z, 4).unwrap();
        assert!(z.iter().all(|&v| v == 0.0), "{scheme:?}: zeros stay zeros");
        for c in [2.5f32, -0.3, 1e-20] {
            let mut x = vec![c; 16];
            scheme.fake_quantize_minmax(&mut x, 4).unwrap();
            // c is the end of its range [0, c] (or [c, 0]): exact up to f32 rounding of (q − z)·s.
            assert!(x.iter().all(|v| (v - c).abs() <= 4.0 * f32::EPSILON * c.abs()), "{scheme:?} {c}: {x:?}");
        }
    }
}

#[test]
fn an_outlier_costs_the_small_values_resolution_and_percentile_clips_it() {
    let small = normals(20_000, 2);
    let mut with = small.clone();
    with.push(100.0);
    let a8 = QuantScheme::activations(8);
    let minmax = |x: &[f32]| x.iter().fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = minmax(&small);
    let clean = a8.params(lo, hi).unwrap();
    let (lo_o, hi_o) = minmax(&with);
    let dirty = a8.params(lo_o, hi_o).unwrap();
    let e_clean = rms_err(&small, &quantized(&small, &clean));
    let e_dirty = rms_err(&small, &quantized(&small, &dirty));
    // Uniform rounding error has RMS s/√12, and s grows with the range: (100 − lo) / (hi − lo) ≈ 12×.
    let ratio = dirty.scale / clean.scale;
    assert!(ratio > 10.0, "{ratio}");
    assert!((e_clean / (clean.scale as f64 / 12f64.sqrt()) - 1.0).abs() < 0.1, "{e_clean}");
    assert!(e_dirty > 0.7 * ratio as f64 * e_clean, "error grew only {e_dirty} / {e_clean}, scale {ratio}×");

    // The 99.99th percentile of the values drops the single outlier (1 in 20001 values) …
    let mut h = Histogram::new(lo_o, hi_o);
    h.add(&with);
    let (plo, phi) = h.percentile_range(99.99);
    assert!(phi < 5.0 && phi >= hi * 0.9 && plo <= lo * 0.9, "percentile range [{plo}, {phi}], min-max [{lo}, {hi}]");
    let pct = a8.params(plo, phi).unwrap();
    let y = quantized(&with, &pct);
    // … so the small values keep (nearly) their resolution, and the outlier is clipped to the grid's end.
    assert!(rms_err(&small, &y[..small.len()]) < 1.5 * e_clean);
    assert_eq!(*y.last().unwrap(), pct.range().1);
}

#[test]
fn per_channel_protects_the_other_rows_from_one_large_row() {
    let (rows, cols) = (8, 64);
    let mut w = normals(rows * cols, 3);
    for v in &mut w[3 * cols..4 * cols] {
        *v *= 100.0;
    }
    let (mut pt, mut pc) = (w.clone(), w.clone());
    QuantScheme::weights(8).fake_quantize_minmax(&mut pt, rows).unwrap();
    QuantScheme::weights_per_channel(8).fake_quantize_minmax(&mut pc, rows).unwrap();
    for r in (0..rows).filter(|&r| r != 3) {
        let s = r * cols..(r + 1) * cols;
        let row_scale = w[s.clone()].iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        assert!(max_err(&w[s.clone()], &pc[s.clone()]) <= row_scale / 2.0 * (1.0 + 1e-5));
        assert!(rms_err(&w[s.clone()], &pt[s.clone()]) > 20.0 * rms_err(&w[s.clone()], &pc[s.clone()]), "row {r}");
    }
    // The large row itself sets the per-tensor scale: the same result either way.
    assert_eq!(pt[3 * cols..4 * cols], pc[3 * cols..4 * cols]);
}

/// One small model for all the model-level tests: 2 layers, 64 wide, 60 steps on Tiny Shakespeare.
fn trained() -> &'static (PathBuf, PathBuf) {
    static CKPT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    CKPT.get_or_init(|| {
        let dir = temp_dir("quant");
        let text = std::fs::read_to_string(shakespeare()).expect("assets/tinyshakespeare.txt");
        prepare(&text, &dir.join("data"), TokenizerKind::Char).unwrap();
        let o: Vec<String> = [
            "n_layer=2",
            "n_head=2",
            "n_embd=64",
            "block_size=32",
            "batch_size=8",
            "dropout=0.0",
            "bias=true",
            "learning_rate=3e-3",
            "min_lr=3e-4",
            "warmup_iters=10",
            "eval_iters=2",
            "log_interval=1000",
            "threads=0",
            "max_iters=60",
            "lr_decay_iters=60",
            "eval_interval=60",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            format!("data_dir={:?}", dir.join("data").display().to_string()),
            format!("out_dir={:?}", dir.join("out").display().to_string()),
        ])
        .collect();
        let mut tr = Trainer::new(Config::build(Some("shakespeare-char"), None, &o).unwrap()).unwrap();
        tr.run(&mut |_| {}).unwrap();
        (dir.join("out/ckpt.safetensors"), dir.join("data"))
    })
}

/// The plain float32 loss over val windows 0..n, batched and weighted as quantize_eval documents.
fn plain_val_loss(model: &mut quietgpt::engine::cpu::Gpt, data: &Dataset, n: usize) -> f64 {
    let (t, b) = (model.config.block_size, model.max_batch);
    let (mut sum, mut k) = (0.0, 0);
    while k < n {
        let nb = b.min(n - k);
        let (mut x, mut y) = (vec![0u32; nb * t], vec![0u32; nb * t]);
        for i in 0..nb {
            assert!(data.window(Split::Val, k + i, t, &mut x[i * t..(i + 1) * t], &mut y[i * t..(i + 1) * t]));
        }
        sum += model.forward(&x, Some(&y), nb, t, None).unwrap().unwrap() * (nb * t) as f64;
        k += nb;
    }
    sum / (n * t) as f64
}

#[test]
fn quantized_model_losses() {
    let (ckpt, data_dir) = trained();
    let mut model = checkpoint::load(ckpt).unwrap().cpu_model(16).unwrap();
    let data = Dataset::open(data_dir).unwrap();
    let before = model.params.clone();
    let opts = QuantEvalOptions { max_windows: Some(600), calib_windows: 32, ..Default::default() };
    let report = quantize_eval(&mut model, &data, &opts).unwrap();
    eprintln!("{}", report.table());
    for r in &report.results {
        eprintln!("{:12} loss {:.6} gap {:+.6}", r.name, r.loss, r.gap);
    }
    assert!(model.params == before, "quantize_eval changed the model's parameters");
    assert_eq!((report.val_windows, report.val_tokens, report.calib_windows), (600, 600 * 32, 32));
    assert_eq!(report.results.len(), 1 + opts.settings.len());

    let plain = plain_val_loss(&mut model, &data, 600);
    let loss = |name: &str| report.get(name).unwrap_or_else(|| panic!("no setting {name}")).loss;
    assert_eq!(loss("fp32"), plain, "the float32 row must be the plain val loss");
    assert!(plain < 3.0, "the model did not learn: val loss {plain}");
    for r in &report.results {
        assert!(
            r.loss.is_finite()
                && (r.perplexity - r.loss.exp()).abs() < 1e-9
                && (r.gap - (r.loss - plain)).abs() < 1e-12
        );
    }
    // 8 bits, weights and activations: observed |gap| ≤ 5e-5 nats on this 60-step model (W4: 3e-4,
    // A4: 1.7e-3). 0.005 leaves 100× margin for other CPUs and thread counts; the orderings below
    // (W4 > W8, A4 > A8) check that both sides are really quantized.
    for name in ["W8A8", "W8A8-p99.99", "W8A8-pc", "W8", "A8"] {
        assert!(report.get(name).unwrap().gap.abs() < 0.005, "{name}: gap {}", report.get(name).unwrap().gap);
    }
    // 4-bit weights (15 levels per row) hurt more than 8-bit ones.
    assert!(loss("W4-pc") - plain > (loss("W8") - plain).abs(), "W4 {} vs W8 {}", loss("W4-pc"), loss("W8"));
    assert!(loss("W4-pc") > plain);

    // The activation probe really quantizes: 4-bit activations hurt more than 8-bit ones.
    let a = |bits| Some(ActQuant { scheme: QuantScheme::activations(bits), range: RangeMethod::MinMax });
    let settings = vec![
        Setting { name: "A4".into(), weights: None, activations: a(4) },
        Setting { name: "A8".into(), weights: None, activations: a(8) },
    ];
    let acts = quantize_eval(&mut model, &data, &QuantEvalOptions { settings, ..opts.clone() }).unwrap();
    let (a4, a8) = (acts.get("A4").unwrap().gap, acts.get("A8").unwrap().gap);
    eprintln!("A4 gap {a4:+.6}, A8 gap {a8:+.6}");
    assert!(a4 > a8.abs() && a8 == report.get("A8").unwrap().gap, "A4 {a4} vs A8 {a8}");

    // JSON round trip
    let back: QuantReport = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    assert_eq!(back, report);

    // Bad settings are errors, and the model is still untouched.
    let mut bad = QuantEvalOptions { max_windows: Some(4), calib_windows: 2, settings: Setting::standard(30.0) };
    assert!(quantize_eval(&mut model, &data, &bad).is_err());
    bad.settings = vec![Setting { name: "W1".into(), weights: Some(QuantScheme::weights(1)), activations: None }];
    assert!(quantize_eval(&mut model, &data, &bad).is_err());
    bad.settings = Setting::standard(99.9);
    bad.calib_windows = 0;
    assert!(quantize_eval(&mut model, &data, &bad).is_err());
    assert!(model.params == before);
    assert!(matches!(Setting::standard(99.9)[1].activations.unwrap().range, RangeMethod::Percentile(p) if p == 99.9));
}

fn quietgpt(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quietgpt")).args(args).current_dir(dir).output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
    assert!(!stderr.contains("panicked"), "quietgpt {args:?} panicked:\n{stderr}");
    (out.status.success(), stdout, stderr)
}

#[test]
fn cli_writes_json_and_fails_cleanly() {
    let (ckpt, _) = trained();
    let dir = temp_dir("quant-cli");
    let c = ckpt.to_str().unwrap();
    let fast = ["--max_windows", "40", "--calib_windows", "4", "--threads", "2"];
    let (ok, stdout, stderr) = quietgpt(&dir, &[&["quantize-eval", c, "--json", "out.json"][..], &fast].concat());
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("W8A8") && stdout.contains("val loss"), "{stdout}");
    let report: QuantReport = serde_json::from_str(&std::fs::read_to_string(dir.join("out.json")).unwrap()).unwrap();
    assert_eq!(report.results[0].name, "fp32");
    assert_eq!(report.val_windows, 40);
    // JSON on stdout, and nothing else there.
    let (ok, stdout, stderr) = quietgpt(&dir, &[&["quantize-eval", c, "--json", "-"][..], &fast].concat());
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(v["results"].as_array().is_some_and(|r| r.len() == report.results.len()));

    let (ok, _, stderr) = quietgpt(&dir, &["quantize-eval", "missing.safetensors"]);
    assert!(!ok && stderr.contains("missing.safetensors"), "{stderr}");
    let (ok, _, stderr) = quietgpt(&dir, &["quantize-eval"]);
    assert!(!ok && stderr.contains("CHECKPOINT"), "{stderr}");
    let (ok, _, stderr) = quietgpt(&dir, &["quantize-eval", c, "--percentile", "20"]);
    assert!(!ok && stderr.contains("percentile"), "{stderr}");
}
