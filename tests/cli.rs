//! Bad input gets a clear error and a non-zero exit, never a panic.

mod common;

use common::{shakespeare, temp_dir};
use std::path::Path;
use std::process::Command;

/// Runs quietgpt in `dir`; returns (success, stdout + stderr).
fn quietgpt(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quietgpt")).args(args).current_dir(dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("panicked"), "quietgpt {args:?} panicked:\n{text}");
    (out.status.success(), text)
}

fn fails(dir: &Path, args: &[&str], needles: &[&str]) {
    let (ok, text) = quietgpt(dir, args);
    assert!(!ok, "quietgpt {args:?} should fail:\n{text}");
    for n in needles {
        assert!(text.contains(n), "quietgpt {args:?}: message should mention {n:?}:\n{text}");
    }
}

const TINY: &[&str] = &[
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

fn with(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec!["train"];
    v.extend_from_slice(TINY);
    v.extend_from_slice(extra);
    v
}

#[test]
fn input_and_data_errors() {
    let d = temp_dir("cli-data");
    fails(&d, &["prepare", "--input", "missing.txt", "--out", "data"], &["missing.txt"]);
    std::fs::write(d.join("empty.txt"), "").unwrap();
    fails(&d, &["prepare", "--input", "empty.txt", "--out", "data"], &["empty"]);
    fails(&d, &["prepare", "--tokenizer", "bytes", "--input", "empty.txt"], &["bytes"]);
    fails(&d, &["prepare", "--inptu", "x"], &["--inptu"]);
    // No data directory at all.
    fails(&d, &with(&[]), &["train.bin", "prepare"]);
    // Data shorter than block_size.
    std::fs::write(d.join("short.txt"), "hello world, this is short").unwrap();
    let (ok, text) = quietgpt(&d, &["prepare", "--input", "short.txt", "--out", "data"]);
    assert!(ok, "{text}");
    fails(&d, &with(&["--block_size=64"]), &["block_size"]);
}

#[test]
fn config_errors() {
    let d = temp_dir("cli-config");
    fails(&d, &["train", "--preset=shakespeare-char", "--n_layr=3"], &["n_layr"]);
    fails(&d, &["train", "--preset=shakespeare-char", "--n_embd=100", "--n_head=3"], &["divisible"]);
    fails(&d, &["train", "--preset=nope"], &["nope", "shakespeare-char-cpu"]);
    fails(&d, &["train", "--preset=shakespeare-char", "--attention=loud"], &["loud"]);
    fails(&d, &["train", "--preset=shakespeare-char", "--dropout=1.5"], &["dropout"]);
    fails(&d, &["train", "--preset=shakespeare-char", "--batch_size=-1"], &["batch_size"]);
    fails(&d, &["train", "--config", "none.toml"], &["none.toml"]);
    std::fs::write(d.join("bad.toml"), "n_layer = 2\nlerning_rate = 1e-3\n").unwrap();
    fails(&d, &["train", "--config", "bad.toml"], &["lerning_rate"]);
    let (ok, text) = quietgpt(&d, &["config", "--preset=shakespeare-char-cpu", "--attention=quiet"]);
    assert!(ok && text.contains("attention = \"quiet\"") && text.contains("n_embd = 128"), "{text}");
}

#[test]
fn checkpoint_errors() {
    let d = temp_dir("cli-ckpt");
    let input = shakespeare();
    let (ok, text) = quietgpt(&d, &["prepare", "--input", input.to_str().unwrap(), "--out", "data"]);
    assert!(ok, "{text}");
    let (ok, text) = quietgpt(&d, &with(&[]));
    assert!(ok, "{text}");
    assert!(d.join("out/ckpt.safetensors").exists(), "{text}");

    // A start text outside the vocabulary.
    fails(&d, &["sample", "--out_dir", "out", "--start", "naïve €", "--max_new_tokens", "3"], &["€"]);
    let (ok, text) = quietgpt(
        &d,
        &["sample", "--out_dir", "out", "--start", "KING:", "--num_samples", "1", "--max_new_tokens", "5"],
    );
    assert!(ok && text.contains("KING:"), "{text}");

    // Resume with a model shape that does not fit the checkpoint.
    fails(&d, &["train", "--resume", "--out_dir=out", "--n_embd=32"], &["shape"]);
    fails(&d, &["train", "--resume", "--preset=shakespeare-char", "--out_dir=out"], &["--resume"]);

    // Resume on data with another vocabulary.
    std::fs::write(d.join("other.txt"), "abcdefghij".repeat(100)).unwrap();
    let (ok, text) = quietgpt(&d, &["prepare", "--input", "other.txt", "--out", "other"]);
    assert!(ok, "{text}");
    fails(&d, &["train", "--resume", "--out_dir=out", "--data_dir=other", "--max_iters=4"], &["vocabulary mismatch"]);

    // A truncated checkpoint, and one that is not safetensors at all.
    let bytes = std::fs::read(d.join("out/ckpt.safetensors")).unwrap();
    std::fs::write(d.join("out/ckpt.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    fails(&d, &["sample", "--out_dir", "out"], &["ckpt.safetensors", "truncated or corrupt"]);
    fails(&d, &["train", "--resume", "--out_dir=out"], &["ckpt.safetensors"]);
    std::fs::write(d.join("out/ckpt.safetensors"), b"not a checkpoint").unwrap();
    fails(&d, &["sample", "--out_dir", "out"], &["corrupt"]);
    fails(&d, &["sample", "--out_dir", "nowhere"], &["nowhere"]);
}
