//! `quietgpt quantize-eval CHECKPOINT`: val loss of the fake-quantized model (W8A8, W8, A8, W4, ...)
//! against float32; a table on stdout, and JSON with `--json FILE|-`.

use super::args::{eval_data, CheckpointArgs, Threads};
use super::out::{say, show};
use anyhow::{bail, Context, Result};
use clap::Args;
use quietgpt::analysis::quantize_eval::{quantize_eval_with, QuantEvalOptions, Setting};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
#[command(after_help = "Examples:
  quietgpt quantize-eval out-shakespeare-char
  quietgpt quantize-eval out-shakespeare-char/ckpt.safetensors --json quant.json --max_windows 256
  quietgpt quantize-eval run --json - --percentile 99.9 > quant.json
  quietgpt quantize-eval gpt2/ --input wiki.txt --block_size 256 --max_windows 16   # a Hugging Face GPT-2")]
pub struct QuantizeArgs {
    #[command(flatten)]
    checkpoint: CheckpointArgs,
    /// Also write the JSON report to FILE; `-` prints it to stdout instead (everything else goes to stderr)
    #[arg(long, value_name = "FILE|-")]
    json: Option<String>,
    /// The data directory [default: the checkpoint's data_dir]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Evaluate on this text file instead of the data directory: tokenized with the model's tokenizer (GPT-2 BPE
    /// for a Hugging Face GPT-2); the first 90% of its tokens calibrate, the last 10% are evaluated
    #[arg(long, value_name = "FILE", conflicts_with = "data_dir")]
    input: Option<PathBuf>,
    /// Cut the model's context to N tokens (the windows' length; at most the model's block_size)
    #[arg(long, value_name = "N")]
    block_size: Option<usize>,
    /// Val windows to evaluate on; 0 = all
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_windows: usize,
    /// Train windows that calibrate the activation ranges
    #[arg(long, value_name = "N", default_value_t = QuantEvalOptions::default().calib_windows)]
    calib_windows: usize,
    /// Percentile settings clip activations to the (100 - P)-th .. P-th percentile of the calibration values
    #[arg(long, value_name = "P", default_value_t = 99.99)]
    percentile: f64,
    /// Windows per forward pass
    #[arg(long, value_name = "N", default_value_t = 16)]
    batch_size: usize,
    #[command(flatten)]
    threads: Threads,
}

pub fn run(a: QuantizeArgs) -> Result<()> {
    a.threads.start()?;
    let batch = a.batch_size;
    if batch == 0 {
        bail!("--batch_size must be at least 1");
    }
    let (path, ckpt) = a.checkpoint.open_model("quantize-eval", None, a.block_size)?;
    let data = eval_data(&path, &ckpt, a.input.as_deref(), a.data_dir.as_deref(), Some(0.9))?;
    let opts = QuantEvalOptions {
        max_windows: (a.max_windows > 0).then_some(a.max_windows),
        calib_windows: a.calib_windows,
        settings: Setting::standard(a.percentile),
    };
    let json = a.json.as_deref();
    // With JSON on stdout, everything else goes to stderr.
    let say = |s: &str| if json == Some("-") { eprintln!("{s}") } else { say!("{s}") };
    say(&format!("{}: evaluating float32 and {} quantized settings", path.display(), opts.settings.len()));
    let mut model = ckpt.cpu_model(batch)?;
    let report = quantize_eval_with(&mut model, &data, &opts, &mut |r| {
        eprintln!("  {:12} val loss {:.4} (gap {:+.5})", r.name, r.loss, r.gap);
    })
    .with_context(|| format!("quantized evaluation of {} failed", path.display()))?;
    say(report.table().trim_end());
    if let Some(out) = json {
        let text = serde_json::to_string_pretty(&report)? + "\n";
        if out == "-" {
            show!("{text}");
        } else {
            quietgpt::fs::write_atomic(Path::new(out), text.as_bytes())
                .with_context(|| format!("cannot write {out}"))?;
        }
    }
    super::out::finish()
}
