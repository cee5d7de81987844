//! `quietgpt experiment`: every arm (an attention variant, or a name with config overrides) × every
//! seed, analysed, quantized and compared in a report (see `quietgpt::analysis::experiment`); or one
//! shard of those runs (`--shard i/n`), or the report of the finished runs (`--merge`).

use super::args::{check_out_dir, set_threads, Overrides};
use super::out::say;
use anyhow::{bail, Context, Result};
use clap::Args;
use quietgpt::analysis::experiment::{
    ensure_data, parse_shard, planned_data, Arm, Experiment, BB, BB_QUICK, DEFAULT, PLAN_FILE, QUICK,
};
use quietgpt::config::{Config, DataKind};
use quietgpt::data::TokenizerKind;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
#[command(after_help = "Examples:
  quietgpt experiment                              # softmax vs quiet, 3 seeds (the experiment preset)
  quietgpt experiment --quick                      # a smoke test of the whole pipeline, under a minute
  quietgpt experiment --preset bb --out exp-bb       # every variant and two controls on Bigram-Backcopy
  quietgpt experiment --preset bb --quick            # its smoke test, under a minute
  quietgpt experiment --variants softmax,quiet,clipped,gated,outgate,sink --seeds 5 --out exp-all
  quietgpt experiment --input my.txt --analyze_every 500 --max_iters=5000
  quietgpt experiment --variants softmax,quiet,lowlr:learning_rate=3e-4+weight_decay=0 --seeds 3
  quietgpt experiment --shard 0/4 --out exp ...   # and 1/4, 2/4, 3/4, side by side, with the same arguments
  quietgpt experiment --merge --out exp           # the report of whatever runs in exp are finished

Runs start from the experiment (or, with --quick, experiment-quick) preset, or with --preset bb from
experiment-bb (experiment-bb-quick); --key=value overrides apply to
every run (attention, seed and out_dir are set per run: use --variants, --seeds and --out). An override of
max_iters alone moves lr_decay_iters with it.

--variants entries, separated by commas: an attention variant (softmax, quiet, ...), or an arm
NAME:key=value+key=value with config overrides of its own on top of the others (attention=VARIANT among
them; softmax when NAME is no variant). Overrides are separated by '+' (or ';', quoted for a shell); NAME
(letters, digits, _ and -) names its run folders and its column in the report.

--shard i/n trains run k of the plan (seed-major: every arm of the first seed, then the next seed) when
k mod n = i, into the shared --out, and writes no report; --merge --out DIR then writes the report from the
finished runs (their done.json), naming the missing ones. See scripts/slurm-experiment.sh.")]
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
    /// Arms to compare, comma-separated: attention variants, or NAME:key=value+key=value (see below)
    /// [default: softmax,quiet; with --preset bb every variant and the relu and sgd controls]
    #[arg(long, value_name = "LIST")]
    variants: Option<String>,
    /// The experiment: default (Tiny Shakespeare, the experiment config preset) or bb (the
    /// Bigram-Backcopy task, the experiment-bb config preset)
    #[arg(long, value_name = "default|bb", default_value = "default")]
    preset: String,
    /// Seeds 0..N [default: 3; 2 with --quick; 1 with --preset bb --quick]
    #[arg(long, value_name = "N")]
    seeds: Option<usize>,
    /// Explicit seeds, comma-separated
    #[arg(long, value_name = "1,2,3")]
    seed_list: Option<String>,
    /// Output directory (runs, report.md, metrics.json, plots)
    #[arg(long, value_name = "DIR", default_value = "experiment")]
    out: PathBuf,
    /// Also analyse every N iterations (0 = the final models only) [default: 0; 250 with --preset bb]
    #[arg(long, value_name = "N")]
    analyze_every: Option<usize>,
    /// Val windows of the analysis [default: the preset's]
    #[arg(long, value_name = "N")]
    analyze_windows: Option<usize>,
    /// Val windows of quantize-eval, 0 = all [default: the preset's]
    #[arg(long, value_name = "N")]
    quant_windows: Option<usize>,
    /// The smoke-test preset: tiny models, few iterations and windows (numbers mean nothing)
    #[arg(long)]
    quick: bool,
    /// Train only shard i of n of the runs (run k when k mod n = i) into --out; no report
    #[arg(long, value_name = "i/n", conflicts_with = "plot_layer")]
    shard: Option<String>,
    /// Write the report of the finished runs in --out (the plan of the experiment or shards started there)
    #[arg(long, conflicts_with_all = ["input", "data_dir", "variants", "seeds", "seed_list", "analyze_every",
        "analyze_windows", "quant_windows", "quick", "shard"])]
    merge: bool,
    /// The layer whose sink metrics the report plots through training [default: the last]
    #[arg(long, value_name = "L")]
    plot_layer: Option<usize>,
    #[command(flatten)]
    overrides: Overrides,
}

pub fn run(a: ExperimentArgs) -> Result<()> {
    let overrides = a.overrides.checked("those of `quietgpt experiment --help`")?;
    if a.merge {
        if let Some(o) = overrides.first() {
            bail!(
                "{o}: --merge takes the settings from {}/{PLAN_FILE}; give only --out (and --plot_layer)",
                a.out.display()
            );
        }
        return merge(&a.out, a.plot_layer);
    }
    let shard = a.shard.as_deref().map(parse_shard).transpose()?;
    let preset = match (a.preset.as_str(), a.quick) {
        ("default", false) => &DEFAULT,
        ("default", true) => &QUICK,
        ("bb", false) => &BB,
        ("bb", true) => &BB_QUICK,
        (p, _) => bail!("--preset {p}: expected default or bb"),
    };

    let arms = Arm::parse_list(a.variants.as_deref().unwrap_or(preset.arms))?;
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
        Experiment::new(preset, overrides, arms, seeds, out.clone()).context("invalid experiment settings")?;
    exp.base.data_dir = data_dir.display().to_string();
    exp.options.analyze_every = a.analyze_every.unwrap_or(preset.analyze_every);
    exp.plot_layer = a.plot_layer;
    if let Some(n) = a.quant_windows {
        exp.options.quant_windows = n;
    }
    if let Some(n) = a.analyze_windows {
        exp.options.analyze.windows = n;
    }
    set_threads(exp.base.threads)?;
    quietgpt::engine::probe(&exp.base.device)?; // a missing GPU is named before anything is prepared
    check_out_dir("--out", &out)?;

    // Before anything is written: one experiment per directory (a shard locks only its runs), and finished
    // runs that match the arguments (with the data they would use, fingerprinted without writing it).
    if shard.is_none() {
        exp.lock().context("cannot start the experiment")?;
    }
    // Generated data (backcopy) has nothing to prepare; its fingerprint is that of the task.
    let backcopy = exp.base.data == DataKind::Backcopy;
    if backcopy && input.is_some() {
        bail!("--input: the runs use data = \"backcopy\" (generated, no text file); drop --input or the data key");
    }
    let planned = if backcopy {
        Some(exp.data_fingerprint().context("cannot make the backcopy task")?)
    } else {
        planned_data(input.as_deref(), &data_dir, kind).context("cannot read the data")?
    };
    if let Some(fp) = planned {
        exp.check_finished(&fp).with_context(|| format!("experiment in {} failed", out.display()))?;
    }
    let prepared = !backcopy
        && ensure_data(input.as_deref(), &data_dir, kind).with_context(|| match &input {
            Some(p) => format!("cannot prepare {} from {}", data_dir.display(), p.display()),
            None => {
                format!(
                    "{} holds no prepared data and Tiny Shakespeare could not be fetched into it",
                    data_dir.display()
                )
            }
        })?;
    if prepared {
        say!("prepared {}", data_dir.display());
    }
    let c = &exp.base;
    say!(
        "experiment ({} preset): arms {:?} x seeds {:?}; {} layers, {} heads, n_embd {}, block {}, {} iterations per run; output {}",
        preset.name,
        exp.arms.iter().map(|a| a.describe()).collect::<Vec<_>>(),
        exp.seeds,
        c.n_layer,
        c.n_head,
        c.n_embd,
        c.block_size,
        c.max_iters,
        out.display()
    );
    let start = std::time::Instant::now();
    let mut progress = |line: &str| {
        say!("{line}");
        let _ = std::io::stdout().flush();
    };
    if let Some((i, n)) = shard {
        let records =
            exp.run_shard(i, n, &mut progress).with_context(|| format!("shard {i}/{n} in {} failed", out.display()))?;
        say!(
            "shard {i}/{n}: {} runs finished ({:.1}s); once every shard is done, `quietgpt experiment --merge --out {}` writes the report",
            records.len(),
            start.elapsed().as_secs_f64(),
            out.display()
        );
        return Ok(());
    }
    let (_, report) = exp.run(&mut progress).with_context(|| format!("experiment in {} failed", out.display()))?;
    say!("report: {} ({:.1}s)", report.display(), start.elapsed().as_secs_f64());
    Ok(())
}

/// `--merge`: the report of the finished runs of the experiment in `out`; the missing ones on stderr.
fn merge(out: &std::path::Path, plot_layer: Option<usize>) -> Result<()> {
    let (mut exp, data) = Experiment::from_plan(out).context("cannot merge")?;
    exp.plot_layer = plot_layer;
    set_threads(exp.base.threads)?;
    let start = std::time::Instant::now();
    let (records, missing, report) = exp
        .merge(&data, &mut |line| say!("{line}"))
        .with_context(|| format!("merging the experiment in {} failed", out.display()))?;
    if !missing.is_empty() {
        eprintln!(
            "warning: {} of {} runs are missing (not finished): {}; the report covers the other {}",
            missing.len(),
            missing.len() + records.len(),
            missing.join(", "),
            records.len()
        );
    }
    say!("report: {} ({:.1}s)", report.display(), start.elapsed().as_secs_f64());
    Ok(())
}
