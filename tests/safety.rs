//! What survives a divergence, a second process, a kill and a rerun: training stops at the first
//! non-finite loss or gradient norm without saving, commands refuse a model with non-finite weights,
//! an output directory has one user at a time, a fresh run never replaces a checkpoint silently, and a
//! resume leaves metrics.jsonl as one clean run.

mod common;

use common::cli::quietgpt;
use common::{shakespeare, temp_dir};
use quietgpt::fs::{DirLock, LOCK_FILE};
use quietgpt::train::trainer::{truncate_metrics, Trainer};
use std::path::Path;

/// A directory with prepared Tiny Shakespeare in `data/`.
fn prepared(name: &str) -> std::path::PathBuf {
    let d = temp_dir(name);
    let (ok, text) = quietgpt(&d, &["prepare", "--input", shakespeare().to_str().unwrap(), "--out", "data"]);
    assert!(ok, "{text}");
    d
}

const TINY: &[&str] = &[
    "train",
    "--preset=shakespeare-char-cpu",
    "--n_layer=1",
    "--n_head=2",
    "--n_embd=16",
    "--block_size=16",
    "--batch_size=2",
    "--max_iters=8",
    "--eval_interval=4",
    "--eval_iters=1",
    "--lr_decay_iters=8",
    "--warmup_iters=1",
    "--log_interval=1",
    "--data_dir=data",
    "--out_dir=out",
];

fn train(d: &Path, extra: &[&str]) -> (bool, String) {
    quietgpt(d, &[TINY, extra].concat())
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn divergence_stops_training_and_keeps_the_last_good_checkpoint() {
    for always_save in ["true", "false"] {
        let d = prepared(&format!("diverge-{always_save}"));
        let save = format!("--always_save_checkpoint={always_save}");
        let (ok, text) = train(&d, &[&save]);
        assert!(ok, "{text}");
        let ckpt = d.join("out/ckpt.safetensors");
        let good = read(&ckpt);
        let resume = ["train", "--resume", "--out_dir=out", "--max_iters=40", "--learning_rate=1e3", "--min_lr=1e3"];
        let (ok, text) = quietgpt(&d, &resume);
        assert!(!ok, "a diverging run must fail (always_save_checkpoint={always_save}):\n{text}");
        for needle in [
            "diverged",
            "at iter",
            "is NaN",
            "learning rate 1000",
            "the last good checkpoint is out/ckpt.safetensors (iter ",
        ] {
            assert!(text.contains(needle), "the error should mention {needle:?}:\n{text}");
        }
        assert!(!text.contains("iter 39:") && !text.contains("done in"), "trained on after divergence:\n{text}");
        if always_save == "false" {
            // The losses only grew: nothing was saved after the resume.
            assert!(text.contains("(iter 8)"), "{text}");
            assert_eq!(read(&ckpt), good, "the last good checkpoint was replaced");
        }
        // Whatever was saved is finite, and usable.
        let (ok, text) = quietgpt(&d, &["sample", "--out_dir", "out", "--num_samples", "1", "--max_new_tokens", "5"]);
        assert!(ok, "{text}");
    }
}

#[test]
fn a_fresh_run_that_diverges_fails_and_saves_only_finite_models() {
    let d = prepared("diverge-fresh");
    let (ok, text) =
        train(&d, &["--learning_rate=1e3", "--min_lr=1e3", "--max_iters=40", "--always_save_checkpoint=true"]);
    assert!(!ok && text.contains("diverged") && text.contains("at iter"), "{text}");
    if d.join("out/ckpt.safetensors").exists() {
        // Saved before diverging: it must be finite.
        let (ok, text) = quietgpt(&d, &["analyze", "out", "--windows", "1", "--batch", "1"]);
        assert!(ok, "{text}");
    }
}

/// Overwrite the first f32 of tensor `name` in a safetensors file with `value`.
fn poke(path: &Path, name: &str, value: f32) {
    let mut bytes = read(path);
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let start = header[name]["data_offsets"][0].as_u64().unwrap() as usize + 8 + header_len;
    bytes[start..start + 4].copy_from_slice(&value.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn commands_refuse_a_model_with_non_finite_weights() {
    let d = prepared("nonfinite");
    let (ok, text) = train(&d, &[]);
    assert!(ok, "{text}");
    poke(&d.join("out/ckpt.safetensors"), "transformer.h.0.mlp.c_fc.weight", f32::NAN);
    let runs: [&[&str]; 4] = [
        &["sample", "--out_dir", "out", "--num_samples", "1", "--max_new_tokens", "3"],
        &["analyze", "out", "--windows", "1", "--batch", "1"],
        &["quantize-eval", "out", "--max_windows", "1", "--calib_windows", "1", "--batch_size", "1"],
        &["train", "--resume", "--out_dir=out", "--max_iters=12"],
    ];
    for args in runs {
        let (ok, text) = quietgpt(&d, args);
        assert!(!ok, "quietgpt {args:?} accepted NaN weights:\n{text}");
        for needle in ["out/ckpt.safetensors", "transformer.h.0.mlp.c_fc.weight", "NaN"] {
            assert!(text.contains(needle), "quietgpt {args:?}: should mention {needle:?}:\n{text}");
        }
    }
}

#[test]
fn a_second_lock_names_the_holder_and_a_stale_one_is_taken_over() {
    let d = prepared("lock");
    let first = DirLock::acquire(&d, "train, iter 0 of 8").unwrap();
    let e = DirLock::acquire(&d, "experiment").unwrap_err().to_string();
    assert!(e.contains(&format!("process {}", std::process::id())) && e.contains("train, iter 0 of 8"), "{e}");
    // Another process: both train and experiment refuse the directory while it is held.
    let (ok, text) = train(&d, &["--out_dir=."]);
    assert!(!ok && text.contains("in use by process") && text.contains("train, iter 0 of 8"), "{text}");
    let (ok, text) = quietgpt(&d, &["experiment", "--quick", "--out", ".", "--data_dir", "data"]);
    assert!(!ok && text.contains("in use by process"), "{text}");
    drop(first);
    assert!(!d.join(LOCK_FILE).exists(), "the lock is removed on drop");

    // A lock left by a process that is gone (a pid above Linux's pid_max) is taken over.
    std::fs::write(d.join(LOCK_FILE), "pid 4194305\ncommand train, iter 3 of 8\n").unwrap();
    let lock = DirLock::acquire(&d, "experiment").unwrap();
    let held = std::fs::read_to_string(lock.path()).unwrap();
    assert!(held.contains(&format!("pid {}", std::process::id())) && held.contains("experiment"), "{held}");
}

#[test]
fn a_fresh_run_does_not_replace_a_checkpoint_without_overwrite() {
    let d = prepared("overwrite");
    let (ok, text) = train(&d, &[]);
    assert!(ok, "{text}");
    let ckpt = d.join("out/ckpt.safetensors");
    let (before, metrics) = (read(&ckpt), read(&d.join("out/metrics.jsonl")));
    let (ok, text) = train(&d, &["--max_iters=2", "--eval_interval=2"]);
    assert!(!ok && text.contains("--resume") && text.contains("--overwrite"), "{text}");
    assert_eq!(read(&ckpt), before, "the checkpoint was touched");
    assert_eq!(read(&d.join("out/metrics.jsonl")), metrics, "metrics.jsonl was touched");
    let (ok, text) = train(&d, &["--max_iters=2", "--eval_interval=2", "--overwrite"]);
    assert!(ok, "{text}");
    assert_ne!(read(&ckpt), before);
    let log = String::from_utf8(read(&d.join("out/metrics.jsonl"))).unwrap();
    assert_eq!(log.lines().count(), 4, "the log is the new run's only (eval 0, steps 0 and 1, eval 2):\n{log}");
}

/// (event, iter) of every line; panics on a line that is not JSON.
fn events(path: &Path) -> Vec<(String, u64)> {
    let text = String::from_utf8(read(path)).unwrap();
    assert!(text.ends_with('\n'), "torn last line:\n{text}");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            (v["event"].as_str().unwrap().to_string(), v["iter"].as_u64().unwrap())
        })
        .collect()
}

#[test]
fn a_resume_after_a_kill_leaves_one_clean_log_and_no_temporary_file() {
    let d = prepared("metrics");
    let (ok, text) = train(&d, &["--always_save_checkpoint=true"]);
    assert!(ok, "{text}");
    // As a kill after the save at iter 8 would leave it: steps past the checkpoint, a line cut short by a
    // full disk, and a half-written temporary checkpoint.
    let log = d.join("out/metrics.jsonl");
    let mut text = String::from_utf8(read(&log)).unwrap();
    text += "{\"event\":\"step\",\"iter\":8,\"loss\":4.0,\"lr\":0.001,\"ms\":1.0,\"tokens_per_s\":1.0,\"mfu\":0.0}\n";
    text += "{\"event\":\"step\",\"iter\":9,\"loss\":4.0,\"lr\":0.0";
    std::fs::write(&log, text).unwrap();
    std::fs::write(d.join("out/ckpt.safetensors.tmp"), b"half a checkpoint").unwrap();

    let (ok, text) = quietgpt(&d, &["train", "--resume", "--out_dir=out", "--max_iters=12", "--lr_decay_iters=12"]);
    assert!(ok, "{text}");
    assert!(!d.join("out/ckpt.safetensors.tmp").exists());
    let ev = events(&log);
    let steps: Vec<u64> = ev.iter().filter(|e| e.0 == "step").map(|e| e.1).collect();
    let evals: Vec<u64> = ev.iter().filter(|e| e.0 == "eval").map(|e| e.1).collect();
    assert_eq!(steps, (0..12).collect::<Vec<_>>(), "{ev:?}");
    assert_eq!(evals, vec![0, 4, 8, 12], "{ev:?}");

    // A stale temporary checkpoint goes at start, even when nothing is saved afterwards.
    std::fs::write(d.join("out/ckpt.safetensors.tmp"), b"half a checkpoint").unwrap();
    let mut t =
        Trainer::resume(&d.join("out"), &["eval_only=true".into(), format!("data_dir={:?}", d.join("data"))]).unwrap();
    t.run(&mut |_| {}).unwrap();
    assert!(!d.join("out/ckpt.safetensors.tmp").exists());
    drop(t);

    // Truncation by itself: nothing to drop leaves the file alone.
    assert_eq!(truncate_metrics(&log, 100).unwrap(), 0);
    assert_eq!(truncate_metrics(&d.join("out/none.jsonl"), 3).unwrap(), 0);
    assert_eq!(truncate_metrics(&log, 4).unwrap(), ev.iter().filter(|e| e.1 >= 4).count());
    assert!(events(&log).iter().all(|e| e.1 < 4));
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&read(p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn an_experiment_records_diverged_runs_and_goes_on() {
    let d = temp_dir("exp-diverge");
    let input = shakespeare();
    let args = ["experiment", "--quick", "--input", input.to_str().unwrap(), "--out", "exp", "--learning_rate=1e3"];
    let (ok, text) = quietgpt(&d, &args);
    assert!(ok, "{text}");
    assert_eq!(text.matches("DIVERGED").count(), 4, "every run is tried:\n{text}");
    let report = String::from_utf8(read(&d.join("exp/report.md"))).unwrap();
    assert!(report.contains("4 of 4 runs diverged") && report.contains("diverged at iter"), "{report}");
    assert!(!report.contains("0 ± 0") && !report.contains("0.000 ± 0.000"), "{report}");
    let m = json(&d.join("exp/metrics.json"));
    for r in m["runs"].as_array().unwrap() {
        assert!(r["diverged"].as_str().unwrap().contains("is NaN"), "{r}");
        assert!(r["summary"]["max_abs_residual"].is_null(), "{r}");
    }
    assert!(m["aggregate"]["metrics"]["softmax"]["max_abs_residual"].is_null());
    // Recorded: a re-run does not train them again.
    let (ok, text) = quietgpt(&d, &args);
    assert!(ok && text.matches("already finished").count() == 4, "{text}");
}

#[test]
fn an_experiment_checks_before_writing_and_continues_a_killed_run() {
    let d = temp_dir("exp-resume");
    let input = shakespeare();
    let input = input.to_str().unwrap();
    let one = ["experiment", "--quick", "--variants", "softmax", "--seed_list", "0", "--lr_decay_iters=100"];
    let run = |out: &str, extra: &[&str]| quietgpt(&d, &[&one[..], &["--out", out], extra].concat());
    let (ok, text) = run("exp", &["--input", input, "--max_iters=50"]);
    assert!(ok, "{text}");
    let train_bin = d.join("exp/data/train.bin");
    let (bytes, mtime) = (read(&train_bin), std::fs::metadata(&train_bin).unwrap().modified().unwrap());

    // Other arguments, other data: refused before <out>/data is touched.
    let (ok, text) = run("exp", &["--input", input, "--max_iters=50", "--learning_rate=1e-2"]);
    assert!(!ok && text.contains("learning_rate"), "{text}");
    let half = &std::fs::read_to_string(input).unwrap()[..200_000];
    std::fs::write(d.join("half.txt"), half).unwrap();
    let (ok, text) = run("exp", &["--input", "half.txt", "--max_iters=50"]);
    assert!(!ok && text.contains("the prepared data"), "{text}");
    assert!(read(&train_bin) == bytes, "{} was overwritten", train_bin.display());
    assert_eq!(
        std::fs::metadata(&train_bin).unwrap().modified().unwrap(),
        mtime,
        "{} was rewritten",
        train_bin.display()
    );

    // A run killed at iter 50 (its checkpoint saved, done.json not written) continues from its checkpoint,
    // and ends exactly where an uninterrupted run does.
    let run_dir = d.join("exp/runs/softmax-seed0");
    for f in ["done.json", "analysis.json", "quant.json"] {
        std::fs::remove_file(run_dir.join(f)).unwrap();
    }
    let (ok, text) = run("exp", &["--input", input, "--max_iters=100"]);
    assert!(ok && text.contains("continuing from its checkpoint at iter 50"), "{text}");
    assert!(!text.contains("iter 25/100"), "trained from scratch:\n{text}");
    let (ok, text) = run("whole", &["--input", input, "--max_iters=100"]);
    assert!(ok, "{text}");
    let (resumed, whole) = (json(&run_dir.join("done.json")), json(&d.join("whole/runs/softmax-seed0/done.json")));
    for key in ["iter", "summary", "quant", "curve", "val_loss"] {
        assert_eq!(resumed[key], whole[key], "{key} differs after continuing");
    }
}
