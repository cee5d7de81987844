//! `quietgpt prepare`: text → train.bin / val.bin / vocab.json (GPT-2 BPE streamed, for a file of any size).

use super::out::say;
use anyhow::{Context, Result};
use clap::Args;
use quietgpt::data::{self, TokenizerKind};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
#[command(after_help = "Examples:
  quietgpt prepare --input input.txt                    # char-level -> data/shakespeare_char
  quietgpt prepare --input input.txt --tokenizer gpt2   # GPT-2 BPE  -> data/shakespeare
  quietgpt prepare --input owt.txt --tokenizer gpt2 --out data/openwebtext   # streamed: any size of file")]
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
    let path = data::input_path(input.as_deref(), &out)
        .with_context(|| "no --input given and Tiny Shakespeare could not be fetched")?;
    let start = Instant::now();
    let r = data::prepare_file(&path, &out, kind, None).with_context(|| match &input {
        Some(p) => format!("preparing {} from {}", out.display(), p.display()),
        None => format!("preparing {}", out.display()),
    })?;
    let secs = start.elapsed().as_secs_f64();
    say!(
        "prepared {} ({} tokenizer): vocab {}, {} train tokens, {} val tokens ({:.0} tokens/s, {secs:.1} s)",
        out.display(),
        kind,
        r.vocab_size,
        r.train_tokens,
        r.val_tokens,
        (r.train_tokens + r.val_tokens) as f64 / secs.max(1e-9)
    );
    Ok(())
}
