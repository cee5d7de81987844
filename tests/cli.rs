//! The command line: every subcommand has help with an example; bad input gets a clear one-line error and a
//! non-zero exit, never a panic; a checkpoint is accepted as a file or as the directory holding it.

mod common;

use common::cli::{fails_one_line, quietgpt, quietgpt_split, TINY};
use common::{shakespeare, temp_dir};
use std::path::Path;

fn fails(dir: &Path, args: &[&str], needles: &[&str]) {
    let (ok, text) = quietgpt(dir, args);
    assert!(!ok, "quietgpt {args:?} should fail:\n{text}");
    for n in needles {
        assert!(text.contains(n), "quietgpt {args:?}: message should mention {n:?}:\n{text}");
    }
}

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
fn help_and_version() {
    let d = temp_dir("cli-help");
    let subcommands = [
        "prepare",
        "train",
        "sample",
        "analyze",
        "quantize-eval",
        "experiment",
        "bench",
        "config",
        "presets",
        "gpu-check",
    ];
    for sub in subcommands {
        let (code, stdout, stderr) = quietgpt_split(&d, &[sub, "--help"]);
        assert_eq!(code, 0, "quietgpt {sub} --help:\n{stderr}");
        assert!(stdout.contains("Usage: quietgpt") && stdout.contains("Example"), "quietgpt {sub} --help:\n{stdout}");
        assert!(stdout.contains(&format!("quietgpt {sub}")), "quietgpt {sub} --help has no example of it:\n{stdout}");
    }
    // The top level lists them all, with or without --help.
    for args in [&["--help"][..], &[]] {
        let (code, stdout, _) = quietgpt_split(&d, args);
        assert!(code == 0 && subcommands.iter().all(|s| stdout.contains(s)), "quietgpt {args:?}:\n{stdout}");
    }
    let (code, stdout, _) = quietgpt_split(&d, &["--version"]);
    assert!(code == 0 && stdout.starts_with("quietgpt ") && stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
    // A usage error is clap's (exit 2) and names the argument.
    let (code, _, stderr) = quietgpt_split(&d, &["sample", "--num_samples", "x"]);
    assert!(code == 2 && stderr.contains("--num_samples"), "{stderr}");
    let (code, _, stderr) = quietgpt_split(&d, &["nope"]);
    assert!(code == 2 && stderr.contains("nope"), "{stderr}");
}

#[test]
fn overrides_and_device() {
    let d = temp_dir("cli-overrides");
    // Unknown keys: one line naming the key, from train, config and experiment alike.
    fails_one_line(&d, &["train", "--preset=shakespeare-char", "--n_layr=3"], &["n_layr", "quietgpt config"]);
    fails_one_line(&d, &["config", "--lerning_rate=1e-3"], &["lerning_rate"]);
    fails_one_line(&d, &["experiment", "--quick", "--n_layayer=2"], &["n_layayer"]);
    // Something that is neither an option nor --key=value.
    fails_one_line(&d, &["train", "--bogus"], &["--bogus", "--key=value"]);
    fails_one_line(&d, &["config", "stray"], &["stray"]);
    // Overrides may come before the options, and option names take - or _.
    let (code, stdout, stderr) = quietgpt_split(&d, &["config", "--n-layer=2", "--preset", "tiny", "--max_iters=7"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("n_layer = 2\n") && stdout.contains("n_embd = 128\n") && stdout.contains("max_iters = 7\n")
    );
    // Floats print as written.
    assert!(stdout.contains("learning_rate = 0.001\n") && stdout.contains("device = \"cpu\"\n"), "{stdout}");
    // device: cpu is the default; cuda without a usable GPU is one line naming what is missing
    // (tests/cuda_device.rs); anything else lists the choices.
    fails_one_line(&d, &["config", "--device=tpu"], &["tpu", "cpu, cuda"]);
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

    // One checkpoint argument for every command that reads one: a file or the directory holding it,
    // positional or --checkpoint / --out_dir.
    let sample = ["--num_samples", "1", "--max_new_tokens", "3"];
    let analyze = ["--windows", "2", "--batch", "2"];
    let quantize = ["--max_windows", "2", "--calib_windows", "1", "--batch_size", "2"];
    for (cmd, opts) in [("sample", &sample[..]), ("analyze", &analyze), ("quantize-eval", &quantize)] {
        for form in [&["out"][..], &["out/ckpt.safetensors"], &["--checkpoint", "out"], &["--out_dir", "out"]] {
            let args = [&[cmd][..], form, opts].concat();
            let (ok, text) = quietgpt(&d, &args);
            assert!(ok, "quietgpt {args:?}:\n{text}");
        }
        fails_one_line(&d, &[cmd, "missing"], &["missing", "ckpt.safetensors"]);
        fails_one_line(&d, &[cmd, "data"], &["data holds no ckpt.safetensors"]);
    }
    fails_one_line(&d, &["analyze"], &["analyze needs a checkpoint"]);
    // sample defaults to out/, as nanoGPT's sample.py.
    let (ok, text) = quietgpt(&d, &[&["sample"][..], &sample].concat());
    assert!(ok, "{text}");

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
