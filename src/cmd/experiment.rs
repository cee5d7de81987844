//! `quietgpt experiment`: every attention variant × every seed, analysed, quantized and compared in a
//! report (see `quietgpt::analysis::experiment`).

use super::args::{check_out_dir, set_threads, Overrides};
use super::out::say;
use anyhow::{bail, Context, Result};
use clap::Args;
use quietgpt::analysis::experiment::{ensure_data, planned_data, Experiment, DEFAULT, QUICK};
use quietgpt::config::{AttentionKind, Config};
use quietgpt::data::TokenizerKind;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
#[command(after_help = "Examples:
  quietgpt experiment                              # softmax vs quiet, 3 seeds (the experiment preset)
  quietgpt experiment --quick                      # a smoke test of the whole pipeline, under a minute
  quietgpt experiment --variants softmax,quiet,clipped,gated,outgate,sink --seeds 5 --out exp-all
  quietgpt experiment --input my.txt --analyze_every 500 --max_iters=5000

Runs start from the experiment (or, with --quick, experiment-quick) preset; --key=value overrides apply to
every run (attention, seed and out_dir are set per run: use --variants, --seeds and --out). An override of
max_iters alone moves lr_decay_iters with it.")]
pub struct ExperimentArgs {
    /// A text to prepare into <out>/data (without it and --data_dir, Tiny Shakespeare is used)
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Prepared data to use [default: <out>/data with --input, else data/shakespeare_char]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Tokenizer for --input: char or gpt2
    #[arg(long, value_name = "char|gpt2", default_value = "char")]
    tokenizer: String,
    /// Attention variants to compare, comma-separated
    #[arg(long, value_name = "LIST", default_value = "softmax,quiet")]
    variants: String,
    /// Seeds 0..N [default: 3, or 2 with --quick]
    #[arg(long, value_name = "N")]
    seeds: Option<usize>,
    /// Explicit seeds, comma-separated
    #[arg(long, value_name = "1,2,3")]
    seed_list: Option<String>,
    /// Output directory (runs, report.md, metrics.json, plots)
    #[arg(long, value_name = "DIR", default_value = "experiment")]
    out: PathBuf,
    /// Also analyse every N iterations (0 = the final models only)
    #[arg(long, value_name = "N", default_value_t = 0)]
    analyze_every: usize,
    /// Val windows of the analysis [default: the preset's]
    #[arg(long, value_name = "N")]
    analyze_windows: Option<usize>,
    /// Val windows of quantize-eval, 0 = all [default: the preset's]
    #[arg(long, value_name = "N")]
    quant_windows: Option<usize>,
    /// The smoke-test preset: tiny models, few iterations and windows (numbers mean nothing)
    #[arg(long)]
    quick: bool,
    #[command(flatten)]
    overrides: Overrides,
}

pub fn run(a: ExperimentArgs) -> Result<()> {
    let overrides = a.overrides.checked("those of `quietgpt experiment --help`")?;
    let preset = if a.quick { &QUICK } else { &DEFAULT };

    let variants = a
        .variants
        .split(',')
        .map(|s| s.trim().parse::<AttentionKind>())
        .collect::<Result<Vec<_>, _>>()
        .context("--variants")?;
    let seeds: Vec<u64> = match (&a.seed_list, a.seeds) {
        (Some(_), Some(_)) => bail!("give --seeds N or --seed_list a,b,c, not both"),
        (Some(list), None) => list
            .split(',')
            .map(|s| s.trim().parse().with_context(|| format!("--seed_list: '{s}' is not a seed (a whole number)")))
            .collect::<Result<_>>()?,
        (None, n) => (0..n.unwrap_or(preset.seeds) as u64).collect(),
    };
    let out = a.out.clone();
    let input = a.input.clone();
    let kind: TokenizerKind = a.tokenizer.parse()?;
    // With --input and no --data_dir the data is prepared inside the experiment directory.
    let data_dir = match (&a.data_dir, &input) {
        (Some(d), _) => d.clone(),
        (None, Some(_)) => out.join("data"),
        (None, None) => PathBuf::from(Config::default().data_dir),
    };
    for o in overrides {
        let key = o.trim_start_matches('-').split('=').next().unwrap_or("").replace('-', "_");
        if let Some(instead) = [("attention", "--variants"), ("seed", "--seeds or --seed_list"), ("out_dir", "--out")]
            .iter()
            .find(|(k, _)| *k == key)
        {
            bail!("{o}: the experiment sets {key} for each run; use {} instead", instead.1);
        }
    }

    let mut exp =
        Experiment::new(preset, overrides, variants, seeds, out.clone()).context("invalid experiment settings")?;
    exp.base.data_dir = data_dir.display().to_string();
    exp.options.analyze_every = a.analyze_every;
    if let Some(n) = a.quant_windows {
        exp.options.quant_windows = n;
    }
    if let Some(n) = a.analyze_windows {
        exp.options.analyze.windows = n;
    }
    set_threads(exp.base.threads)?;
    check_out_dir("--out", &out)?;

    // Before anything is written: one experiment per directory, and finished runs that match the arguments
    // (with the data they would use, fingerprinted without writing it).
    exp.lock().context("cannot start the experiment")?;
    if let Some(fp) = planned_data(input.as_deref(), &data_dir, kind).context("cannot read the data")? {
        exp.check_finished(&fp).with_context(|| format!("experiment in {} failed", out.display()))?;
    }
    let prepared = ensure_data(input.as_deref(), &data_dir, kind).with_context(|| match &input {
        Some(p) => format!("cannot prepare {} from {}", data_dir.display(), p.display()),
        None => {
            format!("{} holds no prepared data and Tiny Shakespeare could not be fetched into it", data_dir.display())
        }
    })?;
    if prepared {
        say!("prepared {}", data_dir.display());
    }
    let c = &exp.base;
    say!(
        "experiment ({} preset): variants {:?} x seeds {:?}; {} layers, {} heads, n_embd {}, block {}, {} iterations per run; output {}",
        preset.name,
        exp.variants.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
        exp.seeds,
        c.n_layer,
        c.n_head,
        c.n_embd,
        c.block_size,
        c.max_iters,
        out.display()
    );
    let start = std::time::Instant::now();
    let (_, report) = exp
        .run(&mut |line| {
            say!("{line}");
            let _ = std::io::stdout().flush();
        })
        .with_context(|| format!("experiment in {} failed", out.display()))?;
    say!("report: {} ({:.1}s)", report.display(), start.elapsed().as_secs_f64());
    Ok(())
}
