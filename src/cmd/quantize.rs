//! `quietgpt quantize-eval CHECKPOINT`: val loss of the fake-quantized model (W8A8, W8, A8, W4, ...)
//! against float32; a table on stdout, and JSON with `--json FILE|-`.

use super::args::{set_threads, Args};
use anyhow::{bail, Context, Result};
use quietgpt::analysis::quantize_eval::{quantize_eval_with, QuantEvalOptions, Setting};
use quietgpt::data::Dataset;
use quietgpt::train::checkpoint;
use std::path::{Path, PathBuf};

pub const KEYS: &[&str] = &["data_dir", "max_windows", "calib_windows", "percentile", "batch_size", "threads", "json"];

pub fn run(args: &[String]) -> Result<()> {
    let Some((path, rest)) = args.split_first().filter(|(p, _)| !p.starts_with("--")) else {
        bail!(
            "quantize-eval needs a checkpoint: quietgpt quantize-eval CHECKPOINT [--json FILE|-] [--max_windows N] ..."
        );
    };
    let a = Args::parse(rest, KEYS, &[])?;
    let path = PathBuf::from(path);
    set_threads(a.num("threads", 0)?)?;
    let batch: usize = a.num("batch_size", 16)?;
    if batch == 0 {
        bail!("--batch_size must be at least 1");
    }
    let ckpt = checkpoint::load(&path).with_context(|| format!("cannot load the checkpoint {}", path.display()))?;
    let data_dir = PathBuf::from(a.get("data_dir").unwrap_or(&ckpt.config.data_dir));
    let data = Dataset::open(&data_dir)
        .with_context(|| format!("cannot open the data directory {} (set --data_dir)", data_dir.display()))?;
    if data.tokenizer != ckpt.tokenizer {
        bail!(
            "vocabulary mismatch: {} holds a {} vocabulary of {} tokens, but {} was trained on a {} vocabulary of {}",
            data_dir.display(),
            data.tokenizer.name(),
            data.tokenizer.vocab_size(),
            path.display(),
            ckpt.tokenizer.name(),
            ckpt.tokenizer.vocab_size()
        );
    }
    let d = QuantEvalOptions::default();
    let max_windows: usize = a.num("max_windows", 0)?;
    let opts = QuantEvalOptions {
        max_windows: (max_windows > 0).then_some(max_windows),
        calib_windows: a.num("calib_windows", d.calib_windows)?,
        settings: Setting::standard(a.num("percentile", 99.99)?),
    };
    let json = a.get("json");
    // With JSON on stdout, everything else goes to stderr.
    let say = |s: &str| if json == Some("-") { eprintln!("{s}") } else { println!("{s}") };
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
            print!("{text}");
        } else {
            quietgpt::data::write_atomic(Path::new(out), text.as_bytes())
                .with_context(|| format!("cannot write {out}"))?;
        }
    }
    Ok(())
}
