//! `quietgpt quantize-eval CHECKPOINT`: val loss of the fake-quantized model (W8A8, W8, A8, W4, ...)
//! against float32; a table on stdout, and JSON with `--json FILE|-`.

use super::args::{CheckpointArgs, Threads};
use super::out::{say, show};
use anyhow::{bail, Context, Result};
use clap::Args;
use quietgpt::analysis::quantize_eval::{quantize_eval_with, QuantEvalOptions, Setting};
use quietgpt::data::{check_same_vocab, Dataset};
use quietgpt::train::checkpoint;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
#[command(after_help = "Examples:
  quietgpt quantize-eval out-shakespeare-char
  quietgpt quantize-eval out-shakespeare-char/ckpt.safetensors --json quant.json --max_windows 256
  quietgpt quantize-eval run --json - --percentile 99.9 > quant.json")]
pub struct QuantizeArgs {
    #[command(flatten)]
    checkpoint: CheckpointArgs,
    /// Also write the JSON report to FILE; `-` prints it to stdout instead (everything else goes to stderr)
    #[arg(long, value_name = "FILE|-")]
    json: Option<String>,
    /// The data directory [default: the checkpoint's data_dir]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
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
    let path = a.checkpoint.resolve("quantize-eval", None)?;
    a.threads.start()?;
    let batch = a.batch_size;
    if batch == 0 {
        bail!("--batch_size must be at least 1");
    }
    let ckpt = checkpoint::load(&path).with_context(|| format!("cannot load the checkpoint {}", path.display()))?;
    let data_dir = a.data_dir.unwrap_or_else(|| PathBuf::from(&ckpt.config.data_dir));
    let data = Dataset::open(&data_dir)
        .with_context(|| format!("cannot open the data directory {} (set --data_dir)", data_dir.display()))?;
    check_same_vocab(&data, &path, &ckpt.tokenizer)?;
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
