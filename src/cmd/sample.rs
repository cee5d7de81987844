//! `quietgpt sample`: generate from a checkpoint, as nanoGPT's sample.py.

use super::args::{CheckpointArgs, Threads};
use super::out;
use anyhow::{Context, Result};
use clap::Args;
use quietgpt::data::Tokenizer;
use quietgpt::sample::{generate_stream, Piece, SampleOptions};
use std::ops::ControlFlow;

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
#[command(after_help = "Examples:
  quietgpt sample --out_dir out-shakespeare-char --start \"ROMEO:\" --num_samples 2 --max_new_tokens 200
  quietgpt sample run/ckpt.safetensors --start FILE:prompt.txt --temperature 0.9 --top_k 50
  quietgpt sample --init_from gpt2/ --start \"The meaning of life is\" --num_samples 1   # a Hugging Face GPT-2

A Hugging Face GPT-2 (config.json + model.safetensors, or the weights file) samples with the GPT-2 BPE tokenizer.
Without a checkpoint it reads out/ckpt.safetensors (nanoGPT's default out_dir).")]
pub struct SampleArgs {
    #[command(flatten)]
    checkpoint: CheckpointArgs,
    /// The prompt, or FILE:path to read it from a file [default: "\n"]
    #[arg(long, value_name = "TEXT|FILE:path")]
    start: Option<String>,
    /// Samples to draw
    #[arg(long, value_name = "N", default_value_t = SampleOptions::default().num_samples)]
    num_samples: usize,
    /// Tokens generated per sample
    #[arg(long, value_name = "N", default_value_t = SampleOptions::default().max_new_tokens)]
    max_new_tokens: usize,
    /// Softmax temperature: below 1 sharper, above 1 more random
    #[arg(long, value_name = "T", default_value_t = SampleOptions::default().temperature)]
    temperature: f32,
    /// Keep only the K most likely tokens; 0 keeps all
    #[arg(long, value_name = "K", default_value_t = SampleOptions::default().top_k.unwrap_or(0))]
    top_k: usize,
    /// Sampling seed
    #[arg(long, value_name = "S", default_value_t = SampleOptions::default().seed)]
    seed: u64,
    #[command(flatten)]
    threads: Threads,
}

pub fn run(a: SampleArgs) -> Result<()> {
    let mut opts = SampleOptions {
        start: a.start.unwrap_or(SampleOptions::default().start),
        num_samples: a.num_samples,
        max_new_tokens: a.max_new_tokens,
        temperature: a.temperature,
        top_k: (a.top_k > 0).then_some(a.top_k),
        seed: a.seed,
        bos: None,
    };
    opts.validate()?;
    a.threads.start()?;
    let (_, ckpt) = a.checkpoint.open_model("sample", Some("out"), None)?;
    if let Some(f) = opts.start.strip_prefix("FILE:") {
        opts.start = std::fs::read_to_string(f).with_context(|| format!("cannot read the start file {f}"))?;
    }
    let tok: Tokenizer = ckpt.tokenizer.clone();
    if ckpt.config.has_bos() {
        opts.bos = Some(tok.vocab_size() as u32);
    }
    let mut model = ckpt.cpu_model(1)?;
    // Each token is shown as soon as it is sampled; a closed stdout (`| head`) ends the sampling quietly.
    generate_stream(&mut model, &tok, &opts, &mut |piece| {
        let open = match piece {
            Piece::Text { text, .. } => out::write(format_args!("{text}")),
            Piece::End { .. } => out::write(format_args!("\n---------------\n")),
        };
        if open {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    })
    .context("sampling failed")?;
    out::finish()
}
