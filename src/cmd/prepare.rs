//! `quietgpt prepare`: text → train.bin / val.bin / vocab.json.

use super::out::say;
use anyhow::{Context, Result};
use clap::Args;
use quietgpt::data::{self, TokenizerKind};
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
#[command(after_help = "Examples:
  quietgpt prepare --input input.txt                    # char-level -> data/shakespeare_char
  quietgpt prepare --input input.txt --tokenizer gpt2   # GPT-2 BPE  -> data/shakespeare")]
pub struct PrepareArgs {
    /// The text to tokenize; without it, Tiny Shakespeare is downloaded (with curl) into the output directory
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// char (one token per character) or gpt2 (GPT-2 BPE)
    #[arg(long, value_name = "char|gpt2", default_value = "char")]
    tokenizer: String,
    /// Output directory [default: data/shakespeare_char, or data/shakespeare for gpt2]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run(a: PrepareArgs) -> Result<()> {
    let kind: TokenizerKind = a.tokenizer.parse()?;
    let default_out = match kind {
        TokenizerKind::Char => "data/shakespeare_char",
        TokenizerKind::Gpt2 => "data/shakespeare",
    };
    let out = a.out.unwrap_or_else(|| PathBuf::from(default_out));
    let input = a.input;
    let text = data::read_input(input.as_deref(), &out).with_context(|| match &input {
        Some(p) => format!("cannot read the input text {}", p.display()),
        None => "no --input given and Tiny Shakespeare could not be fetched".into(),
    })?;
    let r = data::prepare(&text, &out, kind).with_context(|| format!("preparing {}", out.display()))?;
    say!(
        "prepared {} ({} tokenizer): vocab {}, {} train tokens, {} val tokens",
        out.display(),
        kind,
        r.vocab_size,
        r.train_tokens,
        r.val_tokens
    );
    Ok(())
}
