//! Running the `quietgpt` binary from the tests.

use std::path::Path;
use std::process::Command;

/// Runs quietgpt in `dir`; returns (success, stdout + stderr). A panic fails the test.
pub fn quietgpt(dir: &Path, args: &[&str]) -> (bool, String) {
    let (code, stdout, stderr) = quietgpt_split(dir, args);
    (code == 0, stdout + &stderr)
}

/// Runs quietgpt in `dir`; returns (exit code, stdout, stderr). A panic fails the test.
pub fn quietgpt_split(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quietgpt")).args(args).current_dir(dir).output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
    assert!(!stderr.contains("panicked"), "quietgpt {args:?} panicked:\n{stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// Fails with exit code 1 and exactly one line on stderr that mentions every needle.
pub fn fails_one_line(dir: &Path, args: &[&str], needles: &[&str]) {
    let (code, _, stderr) = quietgpt_split(dir, args);
    assert_eq!(code, 1, "quietgpt {args:?} should fail with exit code 1:\n{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "quietgpt {args:?}: one line expected:\n{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "quietgpt {args:?}: message should mention {n:?}:\n{stderr}");
    }
}

/// A training run of a few seconds on `data` into `out` (run in a prepared directory).
pub const TINY: &[&str] = &[
    "--preset=shakespeare-char-cpu",
    "--n_layer=1",
    "--n_head=2",
    "--n_embd=16",
    "--block_size=16",
    "--batch_size=2",
    "--max_iters=2",
    "--eval_interval=2",
    "--eval_iters=1",
    "--always_save_checkpoint=true",
    "--lr_decay_iters=2",
    "--warmup_iters=1",
    "--data_dir=data",
    "--out_dir=out",
];
