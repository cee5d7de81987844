//! Input the commands must refuse or survive: values that cannot work (infinite floats, absurd sizes, far
//! more threads than cores), allocations beyond the machine, a closed stdout, and the wording of errors.

mod common;

use common::temp_dir;
use std::path::Path;
use std::process::Command;

/// Runs quietgpt in `dir`; returns (exit code, stdout, stderr).
fn quietgpt(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quietgpt")).args(args).current_dir(dir).output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
    assert!(!stderr.contains("panicked"), "quietgpt {args:?} panicked:\n{stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// Fails with exit code 1 and one line on stderr that mentions every needle.
fn fails(dir: &Path, args: &[&str], needles: &[&str]) {
    let (code, _, stderr) = quietgpt(dir, args);
    assert_eq!(code, 1, "quietgpt {args:?} should fail with exit code 1:\n{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "quietgpt {args:?}: one line expected:\n{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "quietgpt {args:?}: message should mention {n:?}:\n{stderr}");
    }
}

#[test]
fn values_that_cannot_work_are_refused() {
    let d = temp_dir("inputs-values");
    fails(&d, &["config", "--learning_rate=inf"], &["learning_rate", "must be a finite number"]);
    fails(&d, &["config", "--weight_decay=inf"], &["weight_decay", "must be a finite number"]);
    fails(&d, &["config", "--eps=nan"], &["eps", "must be a finite number"]);
    std::fs::write(d.join("inf.toml"), "learning_rate = inf\n").unwrap();
    fails(&d, &["config", "--config", "inf.toml"], &["learning_rate", "must be a finite number"]);
    fails(&d, &["sample", "--temperature", "inf"], &["temperature", "finite"]);
    fails(&d, &["sample", "--temperature", "NaN"], &["temperature", "finite"]);
    fails(&d, &["bench", "--iters", "0"], &["--iters"]);
    let cores = std::thread::available_parallelism().unwrap().get().to_string();
    fails(&d, &["config", "--threads=100000"], &["threads", "100000", &format!("{cores} cores")]);
    fails(&d, &["sample", "--threads", "100000"], &["threads", &format!("{cores} cores")]);
    fails(&d, &["bench", "--threads", "100000"], &["threads", &format!("{cores} cores")]);
}
