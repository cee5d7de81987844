//! `quietgpt prepare`: text → train.bin / val.bin / vocab.json.

use super::args::Args;
use anyhow::{Context, Result};
use quietgpt::data::{self, TokenizerKind};
use std::path::PathBuf;

pub fn run(a: Args) -> Result<()> {
    let kind: TokenizerKind = a.get("tokenizer").unwrap_or("char").parse()?;
    let default_out = match kind {
        TokenizerKind::Char => "data/shakespeare_char",
        TokenizerKind::Gpt2 => "data/shakespeare",
    };
    let out = PathBuf::from(a.get("out").unwrap_or(default_out));
    let input = a.get("input").map(PathBuf::from);
    let text = data::read_input(input.as_deref(), &out).with_context(|| match &input {
        Some(p) => format!("cannot read the input text {}", p.display()),
        None => "no --input given and Tiny Shakespeare could not be fetched".into(),
    })?;
    let r = data::prepare(&text, &out, kind).with_context(|| format!("preparing {}", out.display()))?;
    println!(
        "prepared {} ({} tokenizer): vocab {}, {} train tokens, {} val tokens",
        out.display(),
        kind,
        r.vocab_size,
        r.train_tokens,
        r.val_tokens
    );
    Ok(())
}
