//! Input the commands must refuse or survive: values that cannot work (infinite floats, absurd sizes, far
//! more threads than cores), allocations beyond the machine, a closed stdout, and the wording of errors.

mod common;

use common::cli::{fails_one_line as fails, quietgpt_split as quietgpt, TINY};
use common::{shakespeare, temp_dir};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

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

fn train(extra: &[&str]) -> Vec<String> {
    ["train"].iter().chain(TINY).chain(extra).map(|s| s.to_string()).collect()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A directory with `data/` (the first 20,000 characters of Tiny Shakespeare, char-level) and, trained
/// on it, `out/ckpt.safetensors`.
fn trained(name: &str) -> std::path::PathBuf {
    let d = temp_dir(name);
    let text: String = std::fs::read_to_string(shakespeare()).unwrap().chars().take(20_000).collect();
    std::fs::write(d.join("input.txt"), text).unwrap();
    let (code, _, stderr) = quietgpt(&d, &["prepare", "--input", "input.txt", "--out", "data"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = quietgpt(&d, &args(&train(&[])));
    assert_eq!(code, 0, "{stderr}");
    assert!(d.join("out/ckpt.safetensors").exists());
    d
}

/// Rewrites a safetensors file's JSON header (the tensor data stays where it is).
fn edit_header(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let mut text = serde_json::to_vec(&header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn sizes_beyond_the_machine_are_refused_before_allocating() {
    let d = trained("inputs-memory");
    // Absurd on any machine: terabytes. Each used to abort ("memory allocation of … bytes failed", exit 134).
    let gpt2 = ["train", "--preset=default", "--data_dir=data", "--out_dir=big", "--max_iters=1"];
    for o in ["--vocab_size=100000000", "--n_embd=1000000", "--batch_size=100000000", "--n_layer=100000"] {
        let mut a = gpt2.to_vec();
        a.push(o);
        if o.starts_with("--n_embd") {
            a.push("--n_head=1");
        }
        fails(&d, &a, &["needs about", "GiB", "available"]);
    }
    fails(&d, &["analyze", "out", "--batch", "100000000", "--windows", "100000000"], &["needs about", "available"]);
    fails(&d, &["quantize-eval", "out", "--batch_size", "100000000"], &["needs about", "available"]);
    // Thin but 10⁵ layers deep fits in memory, but its checkpoint would not fit the safetensors header:
    // refused at once (it used to train, then fail at its first save).
    let deep = ["--n_layer=100000", "--n_embd=2", "--n_head=1", "--block_size=8", "--batch_size=1"];
    fails(&d, &[&gpt2[..], &deep[..]].concat(), &["header", "fewer layers"]);
    assert!(!d.join("big").exists(), "nothing is written for a run that cannot start");

    // A checkpoint whose metadata claims a model its tensors do not hold: refused before building it.
    let ckpt = d.join("out/ckpt.safetensors");
    edit_header(&ckpt, |h| {
        let meta = h["__metadata__"].as_object_mut().unwrap();
        let config = meta["config"].as_str().unwrap().replace("n_layer = 1\n", "n_layer = 200000\n");
        let config = config.replace("n_embd = 16\n", "n_embd = 1024\n");
        let mut model: serde_json::Value = serde_json::from_str(meta["model"].as_str().unwrap()).unwrap();
        (model["n_layer"], model["n_embd"]) = (200_000.into(), 1024.into());
        meta.insert("config".into(), config.into());
        meta.insert("model".into(), model.to_string().into());
    });
    for cmd in ["sample", "analyze", "quantize-eval"] {
        fails(&d, &[cmd, "out"], &["200000 layers", "tensors do not fit"]);
    }
}

/// Spawns quietgpt in `dir` with stdout piped.
fn spawn(dir: &Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_quietgpt"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a child; returns (exit code, stderr), with no panic in it.
fn finish(child: std::process::Child, args: &[&str]) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "quietgpt {args:?} panicked:\n{stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn a_closed_stdout_stops_the_output_not_the_work() {
    let d = trained("inputs-pipe");
    // Training (`| head -1`): it goes on, writes its checkpoint and every metrics line, and exits 0.
    let owned = train(&["--out_dir=piped", "--max_iters=30", "--eval_interval=10", "--lr_decay_iters=30"]);
    let a = args(&owned);
    let mut child = spawn(&d, &a);
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap(); // then the reader is gone
    assert!(first.starts_with("model:"), "{first}");
    let (code, stderr) = finish(child, &a);
    assert_eq!(code, 0, "{stderr}");
    assert!(d.join("piped/ckpt.safetensors").exists(), "{stderr}");
    let metrics = std::fs::read_to_string(d.join("piped/metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"iter\":29"), "training went to the end:\n{metrics}");

    // Commands whose product is their output end quietly, exit 0, when the reader goes.
    for a in
        [&["config"][..], &["presets"], &["sample", "out", "--num_samples", "100000000000", "--max_new_tokens", "3"]]
    {
        let mut child = spawn(&d, a);
        drop(child.stdout.take());
        let (code, stderr) = finish(child, a);
        assert_eq!(code, 0, "quietgpt {a:?}:\n{stderr}");
        assert!(stderr.is_empty(), "quietgpt {a:?}:\n{stderr}");
    }
    // A full disk is not a closed pipe: that is an error.
    if Path::new("/dev/full").exists() {
        let out = Command::new(env!("CARGO_BIN_EXE_quietgpt"))
            .arg("config")
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("cannot write to stdout"), "{stderr}");
    }
}

#[test]
fn sample_streams_tokens_as_they_are_generated() {
    let d = trained("inputs-stream");
    // One sample far too long to finish: its first tokens must still arrive at once.
    let a = ["sample", "out", "--num_samples", "1", "--max_new_tokens", "100000000", "--start", "Citizen"];
    let mut child = spawn(&d, &a);
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 8];
        let got = stdout.read_exact(&mut buf).map(|()| buf);
        tx.send(got.map(|b| String::from_utf8_lossy(&b).to_string()).unwrap_or_default()).unwrap();
        // stdout is dropped here: the reader has gone
    });
    let first = rx.recv_timeout(Duration::from_secs(60));
    if first.is_err() {
        child.kill().unwrap(); // ours; the only way to end it
    }
    let (code, stderr) = finish(child, &a);
    reader.join().unwrap();
    let first = first.expect("no output within 60 s: sample does not stream");
    assert!(first.starts_with("Citizen") && first.len() == 8, "{first:?} ({stderr})");
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn errors_say_what_is_wrong() {
    let d = trained("inputs-wording");
    // out_dir is a file (the run used to fail at its first checkpoint, "File exists").
    std::fs::write(d.join("afile"), "").unwrap();
    fails(&d, &args(&train(&["--out_dir=afile"])), &["out_dir afile is a file, not a directory"]);
    fails(&d, &args(&train(&["--out_dir=afile/run"])), &["afile is a file, not a directory"]);
    fails(&d, &["experiment", "--quick", "--out", "afile"], &["afile is a file, not a directory"]);
    // A block_size the data cannot fill is no reason to run `prepare`.
    let (code, _, stderr) = quietgpt(&d, &args(&train(&["--block_size=100000", "--out_dir=x"])));
    assert!(code == 1 && stderr.contains("block_size") && !stderr.contains("prepare"), "{stderr}");
    // A missing data directory is.
    fails(&d, &args(&train(&["--data_dir=nowhere", "--out_dir=fresh"])), &["nowhere", "prepare"]);

    // Two char vocabularies of the same size, different characters: say so, and where they differ.
    std::fs::write(d.join("a.txt"), "abcdefghij\n".repeat(100)).unwrap();
    std::fs::write(d.join("b.txt"), "abcdefghik\n".repeat(100)).unwrap();
    for (input, out) in [("a.txt", "da"), ("b.txt", "db")] {
        assert_eq!(quietgpt(&d, &["prepare", "--input", input, "--out", out]).0, 0);
    }
    assert_eq!(quietgpt(&d, &args(&train(&["--data_dir=da", "--out_dir=oa"]))).0, 0);
    fails(
        &d,
        &["analyze", "oa", "--data_dir", "db", "--windows", "2"],
        &["same ones", "both have 11 characters", "token 10 is 'k' in the data and 'j' in the checkpoint"],
    );

    // A tensor the checkpoint lacks: "checkpoint error" once, not twice.
    edit_header(&d.join("oa/ckpt.safetensors"), |h| {
        let h = h.as_object_mut().unwrap();
        let t = h.remove("transformer.ln_f.weight").unwrap();
        h.insert("transformer.ln_f.weighs".into(), t);
    });
    let (code, _, stderr) = quietgpt(&d, &["sample", "oa"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.matches("checkpoint error").count(), 1, "{stderr}");
    assert!(stderr.contains("transformer.ln_f.weight"), "{stderr}");
}

#[test]
fn a_data_directory_without_a_vocabulary_says_it_is_read_as_gpt2() {
    let d = trained("inputs-gpt2");
    std::fs::remove_file(d.join("data/vocab.json")).unwrap();
    let (code, _, stderr) = quietgpt(&d, &args(&train(&["--out_dir=g"])));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr.matches("read as GPT-2 BPE").count(), 1, "once:\n{stderr}");
    assert!(stderr.contains("vocab.json"), "{stderr}");
}
