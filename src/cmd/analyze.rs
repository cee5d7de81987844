//! `quietgpt analyze CHECKPOINT`: outlier statistics of a trained model on the first val windows.
//! The table goes to stdout; `--json FILE` also writes the JSON report, `--json -` prints it to stdout
//! instead (and moves the table to stderr, so that stdout stays valid JSON).

use super::args::{eval_data, CheckpointArgs, Threads};
use super::out::{say, show};
use anyhow::{Context, Result};
use clap::Args;
use quietgpt::analysis::analyze::{analyze, AnalyzeOptions};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
#[command(after_help = "Examples:
  quietgpt analyze out-shakespeare-char
  quietgpt analyze out-shakespeare-char/ckpt.safetensors --json analysis.json --windows 64
  quietgpt analyze run --json - --data_dir data/shakespeare_char > analysis.json
  quietgpt analyze gpt2/ --input wiki.txt --block_size 256   # a Hugging Face GPT-2 on a text file (GPT-2 BPE)")]
pub struct AnalyzeArgs {
    #[command(flatten)]
    checkpoint: CheckpointArgs,
    /// Also write the JSON report to FILE; `-` prints it to stdout instead (the table then goes to stderr)
    #[arg(long, value_name = "FILE|-")]
    json: Option<String>,
    /// The data directory [default: the checkpoint's data_dir]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Analyse this text file instead of the data directory's val split: tokenized with the model's tokenizer
    /// (GPT-2 BPE for a Hugging Face GPT-2), cut into windows of block_size tokens
    #[arg(long, value_name = "FILE", conflicts_with = "data_dir")]
    input: Option<PathBuf>,
    /// Cut the model's context to N tokens (the windows' length; at most the model's block_size)
    #[arg(long, value_name = "N")]
    block_size: Option<usize>,
    /// Val windows (of block_size tokens) to analyse
    #[arg(long, value_name = "N", default_value_t = AnalyzeOptions::default().windows)]
    windows: usize,
    /// Windows per forward pass
    #[arg(long, value_name = "N", default_value_t = AnalyzeOptions::default().batch)]
    batch: usize,
    /// Channels listed per layer, by max |activation|
    #[arg(long, value_name = "K", default_value_t = AnalyzeOptions::default().top_k_channels)]
    top_k: usize,
    #[command(flatten)]
    threads: Threads,
}

pub fn run(a: AnalyzeArgs) -> Result<()> {
    let opts = AnalyzeOptions { windows: a.windows, batch: a.batch, top_k_channels: a.top_k };
    a.threads.start()?;

    let (path, ck) = a.checkpoint.open_model("analyze", None, a.block_size)?;
    let data = eval_data(&path, &ck, a.input.as_deref(), a.data_dir.as_deref(), None)?;
    let mut model = ck.cpu_model(opts.batch.max(1))?;
    let report = analyze(&mut model, &data, &opts).with_context(|| format!("analysing {}", path.display()))?;
    let json = serde_json::to_string_pretty(&report).context("serialising the report")?;
    match a.json.as_deref() {
        Some("-") => {
            eprint!("{}", report.table());
            say!("{json}");
        }
        Some(file) => {
            quietgpt::fs::write_atomic(Path::new(file), (json + "\n").as_bytes())
                .with_context(|| format!("cannot write {file}"))?;
            show!("{}", report.table());
            say!("\nwrote {file}");
        }
        None => show!("{}", report.table()),
    }
    super::out::finish()
}
