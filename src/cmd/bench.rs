//! `quietgpt bench`: time training steps of a preset on random tokens (see `quietgpt::train::bench`).

use super::args::{set_threads, Args};
use anyhow::Result;
use quietgpt::config::Config;

pub fn run(a: Args) -> Result<()> {
    let preset = a.get("preset").unwrap_or("tiny").to_string();
    let mut overrides = vec![];
    for key in ["attention", "n_layer", "n_head", "n_embd", "block_size", "batch_size"] {
        if let Some(v) = a.get(key) {
            overrides.push(format!("{key}={v}"));
        }
    }
    let cfg = Config::build(Some(&preset), None, &overrides)?;
    set_threads(a.num("threads", 0)?)?;
    let vocab = a.num("vocab_size", 65)?;
    let r = quietgpt::train::bench::run(&cfg, "cpu", &preset, vocab, a.num("iters", 30)?, a.num("warmup", 3)?)?;
    if a.flags.iter().any(|f| f == "json") {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", r.table());
    }
    Ok(())
}
