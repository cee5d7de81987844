//! `analysis`: statistics by hand, residual-stream statistics against the golden stats.json, and an
//! end-to-end run (train a tiny softmax and quiet model, analyse them, and the `analyze` CLI).

// `!(err <= tol)`: a NaN error must fail a check, which `err > tol` would let pass.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

mod common;

use common::golden::{cases, model};
use common::{shakespeare, temp_dir};
use quietgpt::analysis::analyze::{analyze, analyze_batch, ActivationStats, Analysis, AnalyzeOptions};
use quietgpt::analysis::stats::Moments;
use quietgpt::config::{Config, ModelConfig};
use quietgpt::data::{prepare, Dataset, TokenizerKind};
use quietgpt::train::checkpoint;
use quietgpt::train::trainer::Trainer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn moments_by_hand() {
    // x = [1,2,3,4]: μ = 2.5, σ² = 1.25, E[(x−μ)⁴] = 2.5625, kurtosis 2.5625/1.5625 = 1.64, excess −1.36.
    let m = Moments::of(&[1f32, 2., 3., 4.], 6.0);
    assert!((m.mean() - 2.5).abs() < 1e-15 && (m.var() - 1.25).abs() < 1e-15);
    assert!((m.kurtosis().unwrap() - 1.64).abs() < 1e-14);
    assert!((m.excess_kurtosis().unwrap() + 1.36).abs() < 1e-14);
    assert_eq!(Moments::of(&[2.5f32; 7], 6.0).kurtosis(), None);
    let (mut a, b) = (Moments::of(&[1f32, 2.], 6.0), Moments::of(&[3f32, 4.], 6.0));
    a.merge(&b);
    assert!((a.kurtosis().unwrap() - 1.64).abs() < 1e-14);
}

// ---------------------------------------------------------------------------------------------
// golden files

#[test]
fn residual_statistics_match_golden_stats_json() {
    let mut failures = vec![];
    for case in cases() {
        let mut m = model::<f32>(&case);
        let a = analyze_batch(&mut m, &case.idx, None, case.b, case.t, &AnalyzeOptions::default()).unwrap();
        let mut check = |what: String, ours: &ActivationStats, want: &Value| {
            let f = |k: &str| want[k].as_f64().unwrap_or_else(|| panic!("{}: {what}.{k}", case.name));
            let rel = (ours.max_abs - f("max_abs")).abs() / f("max_abs").abs();
            if !(rel <= 1e-4) {
                failures.push(format!(
                    "{}: {what} max_abs {} vs {} (rel {rel:.2e})",
                    case.name,
                    ours.max_abs,
                    f("max_abs")
                ));
            }
            let k = ours.excess_kurtosis.unwrap_or(f64::NAN);
            if !((k - f("excess_kurtosis")).abs() <= 1e-3) {
                failures.push(format!("{}: {what} excess_kurtosis {k} vs {}", case.name, f("excess_kurtosis")));
            }
            if ours.numel != want["numel"].as_u64().unwrap() {
                failures.push(format!("{}: {what} numel {} vs {}", case.name, ours.numel, want["numel"]));
            }
            if !((ours.std_pop - f("std_pop")).abs() <= 1e-4 * f("std_pop")) {
                failures.push(format!("{}: {what} std_pop {} vs {}", case.name, ours.std_pop, f("std_pop")));
            }
        };
        check("residual_embed_input".into(), &a.embedding, &case.stats["residual_embed_input"]);
        let want = case.stats["residual_after_block"].as_array().unwrap();
        assert_eq!(want.len(), a.layers.len(), "{}", case.name);
        for (l, w) in want.iter().enumerate() {
            check(format!("residual_after_block[{l}]"), &a.layers[l].residual, w);
        }
        // The null attention mass of stats.json is the mean over all rows; our heads' means average to it.
        if let Some(want) = case.stats["quiet_null_attention_mass"].as_array() {
            for (l, w) in want.iter().enumerate() {
                let heads = &a.layers[l].heads;
                let mean = heads.iter().map(|h| h.null_mass_mean).sum::<f64>() / heads.len() as f64;
                if !((mean - w["mean"].as_f64().unwrap()).abs() <= 1e-5) {
                    failures.push(format!("{}: layer {l} null mass mean {mean} vs {}", case.name, w["mean"]));
                }
            }
        }
    }
    assert!(failures.is_empty(), "golden mismatches:\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// end to end

/// Trains a tiny model for a few dozen steps in `dir`, returns its checkpoint path.
fn train(dir: &Path, attention: &str) -> PathBuf {
    let text = std::fs::read_to_string(shakespeare()).expect("assets/tinyshakespeare.txt");
    prepare(&text, &dir.join("data"), TokenizerKind::Char).unwrap();
    let o: Vec<String> = [
        "n_layer=2",
        "n_head=2",
        "n_embd=32",
        "block_size=32",
        "batch_size=8",
        "dropout=0.0",
        "bias=true",
        "learning_rate=3e-3",
        "min_lr=3e-4",
        "warmup_iters=5",
        "max_iters=30",
        "lr_decay_iters=30",
        "eval_interval=30",
        "eval_iters=2",
        "log_interval=1000",
        "threads=0",
        "always_save_checkpoint=true",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        format!("attention={attention:?}"),
        format!("data_dir={:?}", dir.join("data").display().to_string()),
        format!("out_dir={:?}", dir.join("out").display().to_string()),
    ])
    .collect();
    let cfg = Config::build(Some("shakespeare-char"), None, &o).unwrap();
    Trainer::new(cfg).unwrap().run(&mut |_| {}).unwrap();
    dir.join("out/ckpt.safetensors")
}

/// Two JSON trees equal up to float rounding in the last bits (serde_json's parser is not always
/// correctly rounded).
fn same_json(a: &Value, b: &Value, path: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-12 * x.abs().max(y.abs()), "{path}: {x} vs {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                same_json(x, y, &format!("{path}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            for (k, v) in x {
                same_json(v, &y[k], &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

fn check_report(a: &Analysis, cfg: &ModelConfig, windows: usize) {
    assert_eq!(a.windows, windows);
    assert_eq!((a.layers.len(), a.block), (cfg.n_layer, cfg.block_size));
    let c = cfg.n_embd;
    for l in &a.layers {
        assert_eq!(l.mlp_hidden.channel_inf_norm.len(), 4 * c);
        assert_eq!(l.residual.channel_inf_norm.len(), c);
        assert_eq!(l.residual.numel as usize, windows * cfg.block_size * c);
        assert_eq!(l.heads.len(), cfg.n_head);
        let top = &l.mlp_hidden.top_channels;
        assert!(top.len() == 8 && top.windows(2).all(|w| w[0].max_abs >= w[1].max_abs));
        assert_eq!(top[0].max_abs as f64, l.mlp_hidden.max_abs);
        assert!(l.heads.iter().all(|h| h.sink.is_some_and(|s| (0.0..=1.0).contains(&s))));
    }
    // Every parameter tensor, wte once.
    assert_eq!(a.weights.len(), 2 + 12 * cfg.n_layer + 2);
    assert_eq!(a.weights[0].name, "transformer.wte.weight");
    assert!(a.loss.is_some_and(|l| l > 0.5 && l < 4.5), "{:?}", a.loss);
    let json = serde_json::to_string(a).unwrap();
    let back: Analysis = serde_json::from_str(&json).unwrap();
    let rejson = serde_json::to_string(&back).unwrap();
    same_json(&serde_json::from_str(&json).unwrap(), &serde_json::from_str(&rejson).unwrap(), "analysis");
    let table = a.table();
    assert!(table.contains("L1 mlp_hidden") && table.contains("transformer.h.1.mlp.c_proj.weight"), "{table}");
}

fn cli(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quietgpt")).args(args).current_dir(dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("panicked"), "quietgpt {args:?} panicked:\n{text}");
    (out.status.success(), text)
}

#[test]
fn trained_models_end_to_end_and_cli() {
    let opts = AnalyzeOptions { windows: 12, batch: 5, top_k_channels: 8 };
    let mut null = vec![];
    for attention in ["softmax", "quiet"] {
        let dir = temp_dir(&format!("analysis-{attention}"));
        let path = train(&dir, attention);
        let ck = checkpoint::load(&path).unwrap();
        let mut model = ck.cpu_model(opts.batch).unwrap();
        let data = Dataset::open(&dir.join("data")).unwrap();
        let a = analyze(&mut model, &data, &opts).unwrap();
        check_report(&a, &ck.model, 12);
        // Deterministic: the same windows give the same report, whatever the batch size.
        let again = analyze(&mut model, &data, &AnalyzeOptions { batch: 3, ..opts.clone() }).unwrap();
        assert_eq!(a.layers[1].residual.max_abs, again.layers[1].residual.max_abs);
        assert!(
            (a.layers[1].residual.excess_kurtosis.unwrap() - again.layers[1].residual.excess_kurtosis.unwrap()).abs()
                < 1e-9
        );
        null.push(a.attention.null_mass_mean);

        if attention == "quiet" {
            let (ok, text) = cli(&dir, &["analyze", path.to_str().unwrap(), "--json", "out.json", "--windows", "4"]);
            assert!(ok, "{text}");
            assert!(text.contains("attention") && text.contains("L0 attn_out"), "{text}");
            let json = std::fs::read_to_string(dir.join("out.json")).unwrap();
            let r: Analysis = serde_json::from_str(&json).unwrap();
            assert_eq!(r.windows, 4);
            assert!(r.attention.null_mass_mean > 0.0);
            // `--json -`: stdout is the JSON alone.
            let out = Command::new(env!("CARGO_BIN_EXE_quietgpt"))
                .args(["analyze", "out", "--json", "-", "--windows", "2", "--data_dir", "data"])
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let r: Analysis = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(r.windows, 2);
            // Bad input: clear messages, no panic.
            let (ok, text) = cli(&dir, &["analyze", "missing.safetensors"]);
            assert!(!ok && text.contains("missing.safetensors"), "{text}");
            let (ok, text) = cli(&dir, &["analyze"]);
            assert!(!ok && text.contains("checkpoint"), "{text}");
            let (ok, text) = cli(&dir, &["analyze", path.to_str().unwrap(), "--windows", "0"]);
            assert!(!ok && text.contains("window"), "{text}");
            let (ok, text) = cli(&dir, &["analyze", path.to_str().unwrap(), "--data_dir", "nowhere"]);
            assert!(!ok && text.contains("nowhere"), "{text}");
        }
    }
    assert!(null[0].abs() < 1e-5, "softmax null mass {} should be ≈ 0", null[0]);
    assert!(null[1] > 1e-3, "quiet null mass {} should be > 0", null[1]);
}
