//! `quietgpt analyze CHECKPOINT`: outlier statistics of a trained model on the first val windows.
//! The table goes to stdout; `--json FILE` also writes the JSON report, `--json -` prints it to stdout
//! instead (and moves the table to stderr, so that stdout stays valid JSON).

use super::args::{set_threads, Args};
use anyhow::{bail, Context, Result};
use quietgpt::analysis::analyze::{analyze, AnalyzeOptions};
use quietgpt::data::Dataset;
use quietgpt::train::checkpoint::{self, CKPT_FILE};
use std::path::{Path, PathBuf};

const KEYS: &[&str] = &["checkpoint", "json", "data_dir", "windows", "batch", "top_k", "threads"];

/// `args`: the checkpoint (a file, or a directory holding ckpt.safetensors) first, then options.
pub fn run(args: &[String]) -> Result<()> {
    let (positional, rest) = match args.split_first() {
        Some((p, rest)) if !p.starts_with("--") => (Some(p.as_str()), rest),
        _ => (None, args),
    };
    let a = Args::parse(rest, KEYS, &[])?;
    let Some(ckpt) = positional.or(a.get("checkpoint")) else {
        bail!("analyze needs a checkpoint: quietgpt analyze CHECKPOINT [--json FILE|-] [--data_dir DIR] [--windows N] [--batch N] [--top_k K]");
    };
    let mut path = PathBuf::from(ckpt);
    if path.is_dir() {
        path = path.join(CKPT_FILE);
    }
    let d = AnalyzeOptions::default();
    let opts = AnalyzeOptions {
        windows: a.num("windows", d.windows)?,
        batch: a.num("batch", d.batch)?,
        top_k_channels: a.num("top_k", d.top_k_channels)?,
    };
    set_threads(a.num("threads", 0)?)?;

    let ck = checkpoint::load(&path).with_context(|| format!("cannot load the checkpoint {}", path.display()))?;
    let data_dir = a.get("data_dir").map(String::from).unwrap_or_else(|| ck.config.data_dir.clone());
    let data = Dataset::open(Path::new(&data_dir)).with_context(|| {
        format!("cannot open the data directory {data_dir} (the checkpoint's data_dir; override with --data_dir)")
    })?;
    if data.tokenizer != ck.tokenizer {
        bail!(
            "{data_dir} holds a {} vocabulary of {} tokens, but {} was trained on a {} vocabulary of {}",
            data.tokenizer.name(),
            data.tokenizer.vocab_size(),
            path.display(),
            ck.tokenizer.name(),
            ck.tokenizer.vocab_size()
        );
    }
    let mut model = ck.cpu_model(opts.batch.max(1))?;
    let report = analyze(&mut model, &data, &opts).with_context(|| format!("analysing {}", path.display()))?;
    let json = serde_json::to_string_pretty(&report).context("serialising the report")?;
    match a.get("json") {
        Some("-") => {
            eprint!("{}", report.table());
            println!("{json}");
        }
        Some(file) => {
            std::fs::write(file, json + "\n").with_context(|| format!("cannot write {file}"))?;
            print!("{}", report.table());
            println!("\nwrote {file}");
        }
        None => print!("{}", report.table()),
    }
    Ok(())
}
