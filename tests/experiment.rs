//! `quietgpt experiment`: the quick preset end to end through the CLI (every report file, then a re-run
//! that skips the finished runs), and the confidence-interval / paired t-test maths against hand-computed
//! values.

mod common;

use common::{shakespeare, temp_dir};
use quietgpt::analysis::ttest::{mean_ci, paired, t975};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Runs quietgpt in `dir`; returns (success, stdout + stderr, seconds).
fn quietgpt(dir: &Path, args: &[&str]) -> (bool, String, f64) {
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_quietgpt")).args(args).current_dir(dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("panicked"), "quietgpt {args:?} panicked:\n{text}");
    (out.status.success(), text, t0.elapsed().as_secs_f64())
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() > 1000, "{}: only {} bytes", path.display(), bytes.len());
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}: not a PNG", path.display());
}

const PNGS: &[&str] = &[
    "loss_val.png",
    "loss_train.png",
    "max_abs_per_layer.png",
    "kurtosis_attn_out_per_layer.png",
    "kurtosis_residual_per_layer.png",
    "max_abs_trajectory.png",
    "traj_first_norm.png",
    "traj_massive.png",
    "traj_sink.png",
    "traj_sink_fraction.png",
    "traj_logit_gap.png",
    "traj_drain.png",
    "quant_gap.png",
    "heatmap_softmax.png",
    "heatmap_quiet.png",
    "hist_residual.png",
    "hist_attn_out.png",
];

#[test]
fn quick_experiment_writes_the_report_and_skips_finished_runs() {
    let dir = temp_dir("experiment");
    let input = shakespeare();
    let input = input.to_str().unwrap();
    let args = ["experiment", "--quick", "--input", input, "--out", "exp", "--analyze_every", "50"];
    let (ok, text, first) = quietgpt(&dir, &args);
    assert!(ok, "quick experiment failed:\n{text}");
    assert!(
        text.contains("[run 4/4] quiet seed 1: iter 100/100") && text.contains("ETA"),
        "no progress lines:\n{text}"
    );

    let out = dir.join("exp");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in ["softmax", "quiet", "± ", "significant at 5%", "W8A8", "sink mass", "excess kurtosis"] {
        assert!(report.contains(needle), "report.md lacks {needle:?}:\n{report}");
    }
    for png in PNGS {
        assert_png(&out.join(png));
        assert!(report.contains(&format!("]({png})")), "report.md does not show {png}");
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let runs = m["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    for r in runs {
        assert_eq!(r["iter"], 100);
        assert!(r["val_loss"].as_f64().unwrap() < 4.0, "{}", r["val_loss"]);
        assert_eq!(r["snapshots"][0]["iter"], 50, "one intermediate analysis at iter 50");
        assert!(r["quant"].as_array().unwrap().iter().any(|q| q["name"] == "W8A8" && q["gap"].is_f64()));
        assert_eq!(r["spec"]["config"]["max_iters"], 100);
    }
    let cmp = &m["aggregate"]["comparisons"].as_array().unwrap()[0];
    assert_eq!((cmp["variant"].as_str(), cmp["baseline"].as_str()), (Some("quiet"), Some("softmax")));
    assert_eq!(cmp["paired"]["n"], 2);
    assert!(m["aggregate"]["metrics"]["quiet"]["w8a8_gap"]["ci_half_width"].is_f64());
    assert!(
        out.join("runs/quiet-seed1/done.json").exists() && out.join("runs/quiet-seed1/analysis-iter50.json").exists()
    );

    // Same arguments again: nothing is trained, the report is rewritten.
    let ckpt = out.join("runs/softmax-seed0/ckpt.safetensors");
    let mtime = std::fs::metadata(&ckpt).unwrap().modified().unwrap();
    std::fs::remove_file(out.join("report.md")).unwrap();
    let (ok, text, again) = quietgpt(&dir, &args);
    assert!(ok, "re-run failed:\n{text}");
    assert_eq!(text.matches("already finished").count(), 4, "{text}");
    assert!(!text.contains(": iter "), "a finished run was trained again:\n{text}");
    assert_eq!(std::fs::metadata(&ckpt).unwrap().modified().unwrap(), mtime);
    assert!(out.join("report.md").exists());
    assert!(again < first, "re-run took {again:.1}s, the first run {first:.1}s");

    // Changed training settings: refused before any training, naming the key.
    let (ok, text, _) = quietgpt(&dir, &[&args[..], &["--learning_rate=1e-2"]].concat());
    assert!(!ok && text.contains("learning_rate") && text.contains("--out"), "{text}");
    assert!(!text.contains(": iter "), "{text}");

    // Training in segments (for --analyze_every) gives exactly the model of one uninterrupted run.
    let (ok, text, _) = quietgpt(
        &dir,
        &["experiment", "--quick", "--input", input, "--out", "whole", "--variants", "softmax", "--seed_list", "0"],
    );
    assert!(ok, "{text}");
    let done = |p: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(p)).unwrap()).unwrap()
    };
    let (seg, whole) = (done("exp/runs/softmax-seed0/done.json"), done("whole/runs/softmax-seed0/done.json"));
    assert_eq!(seg["summary"], whole["summary"]);
    assert_eq!(seg["quant"], whole["quant"]);
}

/// The Bigram-Backcopy comparison's smoke test (`--preset bb --quick`, in CI): every arm trains on the
/// generated task (no data files), the report has the task's copy and bigram losses and the sink metrics of
/// every arm, the controls are arms of their own.
#[test]
fn bigram_backcopy_quick_experiment_compares_every_arm() {
    let dir = temp_dir("experiment-bb");
    let (ok, text, secs) = quietgpt(&dir, &["experiment", "--preset", "bb", "--quick", "--out", "bb"]);
    assert!(ok, "bb quick experiment failed:\n{text}");
    assert!(secs < 60.0, "the bb quick experiment took {secs:.1}s (CI budget: one minute)");
    assert!(!dir.join("data").exists(), "backcopy prepares no data");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("bb/metrics.json")).unwrap()).unwrap();
    let arms = ["softmax", "quiet", "sink", "softpick", "sigmoid", "gated", "outgate", "clipped", "relu", "sgd"];
    let report = std::fs::read_to_string(dir.join("bb/report.md")).unwrap();
    for arm in arms {
        assert!(report.contains(arm), "report lacks {arm}");
        let done: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("bb/runs/{arm}-seed0/done.json"))).unwrap())
                .unwrap();
        let losses = &done["summary"]["task_losses"];
        for k in ["copy", "bigram"] {
            let l = losses[k].as_f64().unwrap_or_else(|| panic!("{arm}: no {k} loss in {losses}"));
            assert!(l.is_finite() && l > 0.0, "{arm}: {k} loss {l}");
        }
        assert!(done["snapshots"].as_array().is_some_and(|s| !s.is_empty()), "{arm}: analysed during training");
    }
    let sgd: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("bb/runs/sgd-seed0/done.json")).unwrap()).unwrap();
    assert!(sgd.to_string().contains("optimizer=sgd"), "the sgd arm runs SGD");
    for key in ["copy_loss", "bigram_loss", "first_norm_ratio", "w4_gap"] {
        assert!(metrics.to_string().contains(key), "metrics.json lacks {key}");
    }
    for png in ["traj_sink.png", "traj_first_norm.png", "traj_massive.png", "heatmap_softpick.png"] {
        assert_png(&dir.join("bb").join(png));
    }
}

#[test]
fn bad_arguments_are_clear_errors() {
    let dir = temp_dir("experiment-args");
    for (args, needle) in [
        (&["experiment", "--quick", "--variants", "softmax,loud"][..], "loud"),
        (&["experiment", "--quick", "--seeds", "2", "--seed_list", "1,2"], "not both"),
        (&["experiment", "--quick", "--seed_list", "1,1", "--input", "missing.txt"], "missing.txt"),
        (&["experiment", "--quick", "--seed=3"], "--seeds"),
        (&["experiment", "--quick", "--attention=quiet"], "--variants"),
        (&["experiment", "--quick", "--bogus"], "--bogus"),
        (&["experiment", "--preset", "huge"], "default or bb"),
        (&["experiment", "--preset", "bb", "--quick", "--input", "x.txt"], "backcopy"),
        (&["experiment", "--quick", "--n_layayer=2"], "n_layayer"),
    ] {
        let (ok, text, _) = quietgpt(&dir, args);
        assert!(!ok && text.contains(needle), "{args:?} should fail mentioning {needle:?}:\n{text}");
    }
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn t_quantiles_come_from_the_table() {
    assert_eq!(t975(0), None);
    assert_eq!(t975(1), Some(12.706));
    assert_eq!(t975(2), Some(4.303));
    assert_eq!(t975(30), Some(2.042));
    // Between printed points the smaller df's (larger) quantile is used.
    assert_eq!(t975(45), Some(2.021));
    assert_eq!(t975(1000), Some(1.980));
}

#[test]
fn mean_and_ci_by_hand() {
    // 1, 2, 3: mean 2, s = 1, half-width t_{0.975,2}·s/√3 = 4.303/1.7320508 = 2.484338.
    let s = mean_ci(&[1.0, 2.0, 3.0]).unwrap();
    assert_eq!(s.n, 3);
    assert!(close(s.mean, 2.0, 1e-12) && close(s.sd.unwrap(), 1.0, 1e-12));
    assert!(close(s.ci_half_width.unwrap(), 2.484338, 1e-6), "{s:?}");
    // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, s² = 32/7, hw = 2.365·√(32/7)/√8 = 1.787772.
    let s = mean_ci(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
    assert!(close(s.mean, 5.0, 1e-12) && close(s.ci_half_width.unwrap(), 1.787772, 1e-6), "{s:?}");
    // One value: a mean, no interval; non-finite values are left out; none at all: nothing.
    let s = mean_ci(&[3.5, f64::NAN, f64::INFINITY]).unwrap();
    assert_eq!((s.n, s.mean, s.sd, s.ci_half_width), (1, 3.5, None, None));
    assert!(mean_ci(&[]).is_none() && mean_ci(&[f64::NAN]).is_none());
}

#[test]
fn paired_t_test_by_hand() {
    let base = [Some(1.0), Some(2.0), Some(3.0)];
    // d = 0.5, 0.9, 0.4: mean 0.6, s_d = √0.07 = 0.2645751, se = 0.1527525, t = 3.927922,
    // hw = 4.303·se = 0.6572940: CI [−0.057294, 1.257294] contains 0.
    let p = paired(&[Some(1.5), Some(2.9), Some(3.4)], &base);
    assert_eq!(p.n, 3);
    assert!(close(p.mean_diff.unwrap(), 0.6, 1e-12));
    assert!(close(p.t.unwrap(), 3.927922, 1e-6), "{p:?}");
    assert!(close(p.ci_low.unwrap(), -0.057294, 1e-6) && close(p.ci_high.unwrap(), 1.257294, 1e-6), "{p:?}");
    assert_eq!(p.significant, Some(false));
    // d = 1.0, 1.1, 0.9: mean 1, s_d = 0.1, hw = 4.303·0.1/√3 = 0.2484339: CI [0.75157, 1.24843], significant.
    let p = paired(&[Some(2.0), Some(3.1), Some(3.9)], &base);
    assert!(close(p.ci_low.unwrap(), 0.7515661, 1e-6) && close(p.t.unwrap(), 17.320508, 1e-5), "{p:?}");
    assert_eq!(p.significant, Some(true));
    // Lower is also significant, with the sign kept.
    let p = paired(&[Some(0.0), Some(0.9), Some(2.1)], &base);
    assert!(p.mean_diff.unwrap() < 0.0 && p.significant == Some(true), "{p:?}");
    // A missing seed drops its pair; one pair left cannot be assessed.
    let p = paired(&[Some(1.5), None, Some(f64::NAN)], &base);
    assert_eq!((p.n, p.significant, p.t, p.ci_low), (1, None, None, None));
    assert!(close(p.mean_diff.unwrap(), 0.5, 1e-12));
    // Identical differences: a zero-width interval; significant iff the difference is not 0, t undefined.
    let p = paired(&[Some(1.25), Some(2.25)], &[Some(1.0), Some(2.0)]);
    assert_eq!((p.significant, p.t), (Some(true), None));
    let p = paired(&[Some(1.0), Some(2.0)], &[Some(1.0), Some(2.0)]);
    assert_eq!(p.significant, Some(false));
}
