//! `quietgpt sample`: generate from a checkpoint, as nanoGPT's sample.py.

use super::args::{set_threads, Args};
use anyhow::{Context, Result};
use quietgpt::data::Tokenizer;
use quietgpt::sample::{generate, SampleOptions};
use quietgpt::train::checkpoint::{self, CKPT_FILE};
use std::path::{Path, PathBuf};

pub fn run(a: Args) -> Result<()> {
    let path = match (a.get("checkpoint"), a.get("out_dir")) {
        (Some(c), _) => PathBuf::from(c),
        (None, d) => Path::new(d.unwrap_or("out")).join(CKPT_FILE),
    };
    set_threads(a.num("threads", 0)?)?;
    let ckpt = checkpoint::load(&path).with_context(|| format!("cannot load the checkpoint {}", path.display()))?;
    let d = SampleOptions::default();
    let mut start = a.get("start").map(String::from).unwrap_or(d.start);
    if let Some(f) = start.strip_prefix("FILE:") {
        start = std::fs::read_to_string(f).with_context(|| format!("cannot read the start file {f}"))?;
    }
    let top_k: usize = a.num("top_k", d.top_k.unwrap_or(0))?;
    let opts = SampleOptions {
        start,
        num_samples: a.num("num_samples", d.num_samples)?,
        max_new_tokens: a.num("max_new_tokens", d.max_new_tokens)?,
        temperature: a.num("temperature", d.temperature)?,
        top_k: (top_k > 0).then_some(top_k),
        seed: a.num("seed", d.seed)?,
    };
    let tok: Tokenizer = ckpt.tokenizer.clone();
    let mut model = ckpt.cpu_model(1)?;
    generate(&mut model, &tok, &opts, &mut |_, text| {
        println!("{text}\n---------------");
    })
    .context("sampling failed")?;
    Ok(())
}
