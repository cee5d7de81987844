//! End to end on Tiny Shakespeare: a short run learns, sampling works, and a stop + resume gives
//! bitwise the same parameters as an uninterrupted run.

mod common;

use common::{shakespeare, temp_dir, train_collecting_val_losses};
use quietgpt::config::Config;
use quietgpt::data::{prepare, TokenizerKind};
use quietgpt::engine::Buffer;
use quietgpt::sample::{generate, SampleOptions};
use quietgpt::train::checkpoint;
use quietgpt::train::trainer::Trainer;
use std::path::Path;

fn prepared(name: &str) -> std::path::PathBuf {
    let dir = temp_dir(name);
    let text = std::fs::read_to_string(shakespeare()).expect("assets/tinyshakespeare.txt");
    prepare(&text, &dir.join("data"), TokenizerKind::Char).unwrap();
    dir
}

fn small(dir: &Path, extra: &[&str]) -> Config {
    let mut o: Vec<String> = [
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
        "eval_iters=10",
        "log_interval=1000",
        "threads=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    o.push(format!("data_dir={:?}", dir.join("data").display().to_string()));
    o.push(format!("out_dir={:?}", dir.join("out").display().to_string()));
    o.extend(extra.iter().map(|s| s.to_string()));
    Config::build(Some("shakespeare-char"), None, &o).unwrap()
}

#[test]
fn short_run_learns_then_samples() {
    let dir = prepared("learn");
    let cfg = small(&dir, &["max_iters=250", "lr_decay_iters=250", "eval_interval=250"]);
    let (_, evals) = train_collecting_val_losses(cfg);
    let (first, last) = (evals[0], *evals.last().unwrap());
    assert!((first - 65f64.ln()).abs() < 0.1, "initial val loss {first} should be ≈ ln 65");
    assert!(last < 2.8, "val loss only fell from {first:.3} to {last:.3}");
    let metrics = std::fs::read_to_string(dir.join("out/metrics.jsonl")).unwrap();
    assert!(metrics.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));

    let ckpt = checkpoint::load(&dir.join("out/ckpt.safetensors")).unwrap();
    let mut model = ckpt.cpu_model(1).unwrap();
    let opts = SampleOptions { start: "ROMEO:".into(), num_samples: 2, max_new_tokens: 40, ..Default::default() };
    let tok = ckpt.tokenizer.clone();
    let out = generate(&mut model, &tok, &opts, &mut |_, _| {}).unwrap();
    assert_eq!(out.len(), 2);
    for s in &out {
        assert!(s.starts_with("ROMEO:") && s.chars().count() == 46, "{s:?}");
    }
    let again = generate(&mut model, &tok, &opts, &mut |_, _| {}).unwrap();
    assert_eq!(out, again, "same seed, same samples");
    let bad = SampleOptions { start: "ROMEO§".into(), ..opts };
    let e = generate(&mut model, &tok, &bad, &mut |_, _| {}).unwrap_err().to_string();
    assert!(e.contains('§'), "{e}");
}

#[test]
fn stop_and_resume_is_bitwise_identical() {
    // Dropout and gradient accumulation on, so every RNG stream and the optimizer state must survive.
    let extra = [
        "dropout=0.1",
        "gradient_accumulation_steps=2",
        "always_save_checkpoint=true",
        "eval_interval=4",
        "lr_decay_iters=12",
        "eval_iters=2",
    ];
    let a = prepared("resume-a");
    let mut whole = Trainer::new(small(&a, &[&extra[..], &["max_iters=12"]].concat())).unwrap();
    whole.run(&mut |_| {}).unwrap();

    let b = prepared("resume-b");
    let mut first = Trainer::new(small(&b, &[&extra[..], &["max_iters=8"]].concat())).unwrap();
    first.run(&mut |_| {}).unwrap();
    drop(first);
    let mut second = Trainer::resume(&b.join("out"), &["--max_iters=12".into()]).unwrap();
    assert_eq!(second.state.iter_num, 8);
    assert_eq!(second.config.dropout, 0.1, "the whole config comes back from the checkpoint");
    second.run(&mut |_| {}).unwrap();

    assert_eq!(second.state.iter_num, whole.state.iter_num);
    for buf in [Buffer::Params, Buffer::AdamM, Buffer::AdamV] {
        let (a, b) = (whole.engine.snapshot(buf).unwrap(), second.engine.snapshot(buf).unwrap());
        assert!(a == b, "{buf:?} differ after resume");
    }
    assert_eq!(whole.engine.adam_step(), second.engine.adam_step());
    assert_eq!(whole.state.data_rng, second.state.data_rng);

    // The model shape cannot change on resume.
    let e = Trainer::resume(&b.join("out"), &["--n_layer=3".into()]).err().unwrap().to_string();
    assert!(e.contains("shape"), "{e}");
}

#[test]
fn attention_variant_does_not_change_data_order_or_init() {
    let dir = prepared("streams");
    let s = Trainer::new(small(&dir, &["max_iters=1"])).unwrap();
    let q = Trainer::new(small(&dir, &["max_iters=1", "attention=quiet"])).unwrap();
    assert!(s.engine.snapshot(Buffer::Params).unwrap() == q.engine.snapshot(Buffer::Params).unwrap());
    assert_eq!(s.state.data_rng, q.state.data_rng);
}
