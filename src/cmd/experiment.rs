//! `quietgpt experiment`: every attention variant × every seed, analysed, quantized and compared in a
//! report (see `quietgpt::analysis::experiment`).

use super::args::set_threads;
use anyhow::{bail, Context, Result};
use quietgpt::analysis::experiment::{ensure_data, Experiment, DEFAULT, QUICK};
use quietgpt::config::{AttentionKind, Config};
use quietgpt::data::TokenizerKind;
use std::io::Write;
use std::path::PathBuf;

/// Options of the experiment itself; any other `--key=value` is a training override.
const KEYS: &[&str] = &[
    "input",
    "data_dir",
    "tokenizer",
    "variants",
    "seeds",
    "seed_list",
    "out",
    "analyze_every",
    "analyze_windows",
    "quant_windows",
];

pub const USAGE: &str =
    "quietgpt experiment [--input FILE | --data_dir DIR] [--variants softmax,quiet] [--seeds N | --seed_list 1,2,3] \
[--out DIR] [--analyze_every N] [--quant_windows N] [--analyze_windows N] [--quick] [--key=value ...]";

pub fn run(args: &[String]) -> Result<()> {
    let (mut opts, mut overrides, mut quick) = (Vec::<(String, String)>::new(), vec![], false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(body) = a.strip_prefix("--") else { bail!("unexpected argument '{a}'\nusage: {USAGE}") };
        let (k, v) = match body.split_once('=') {
            Some((k, v)) => (k.replace('-', "_"), Some(v.to_string())),
            None => (body.replace('-', "_"), None),
        };
        if k == "quick" && v.is_none() {
            quick = true;
        } else if KEYS.contains(&k.as_str()) {
            let v = match v {
                Some(v) => v,
                None => it.next().with_context(|| format!("--{k} needs a value"))?.clone(),
            };
            opts.push((k, v));
        } else if v.is_some() {
            overrides.push(a.clone());
        } else {
            bail!(
                "unknown option '{a}': experiment options are --{}, --quick, or a training override --key=value",
                KEYS.join(", --")
            );
        }
    }
    let get = |k: &str| opts.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let num = |k: &str| -> Result<Option<usize>> {
        get(k).map(|v| v.parse().with_context(|| format!("--{k}={v} is not a whole number"))).transpose()
    };
    let preset = if quick { &QUICK } else { &DEFAULT };

    let variants = get("variants")
        .unwrap_or("softmax,quiet")
        .split(',')
        .map(|s| s.trim().parse::<AttentionKind>())
        .collect::<Result<Vec<_>, _>>()
        .context("--variants")?;
    let seeds: Vec<u64> = match (get("seed_list"), num("seeds")?) {
        (Some(_), Some(_)) => bail!("give --seeds N or --seed_list a,b,c, not both"),
        (Some(list), None) => list
            .split(',')
            .map(|s| s.trim().parse().with_context(|| format!("--seed_list: '{s}' is not a seed (a whole number)")))
            .collect::<Result<_>>()?,
        (None, n) => (0..n.unwrap_or(preset.seeds) as u64).collect(),
    };
    let out = PathBuf::from(get("out").unwrap_or("experiment"));
    let input = get("input").map(PathBuf::from);
    let kind: TokenizerKind = get("tokenizer").unwrap_or("char").parse()?;
    // With --input and no --data_dir the data is prepared inside the experiment directory.
    let data_dir = match (get("data_dir"), &input) {
        (Some(d), _) => PathBuf::from(d),
        (None, Some(_)) => out.join("data"),
        (None, None) => PathBuf::from(Config::default().data_dir),
    };
    for o in &overrides {
        let key = o.trim_start_matches('-').split('=').next().unwrap_or("").replace('-', "_");
        if let Some(instead) = [("attention", "--variants"), ("seed", "--seeds or --seed_list"), ("out_dir", "--out")]
            .iter()
            .find(|(k, _)| *k == key)
        {
            bail!("{o}: the experiment sets {key} for each run; use {} instead", instead.1);
        }
    }

    let mut exp =
        Experiment::new(preset, &overrides, variants, seeds, out.clone()).context("invalid experiment settings")?;
    exp.base.data_dir = data_dir.display().to_string();
    exp.options.analyze_every = num("analyze_every")?.unwrap_or(0);
    if let Some(n) = num("quant_windows")? {
        exp.options.quant_windows = n;
    }
    if let Some(n) = num("analyze_windows")? {
        exp.options.analyze.windows = n;
    }
    set_threads(exp.base.threads)?;

    let prepared = ensure_data(input.as_deref(), &data_dir, kind).with_context(|| match &input {
        Some(p) => format!("cannot prepare {} from {}", data_dir.display(), p.display()),
        None => {
            format!("{} holds no prepared data and Tiny Shakespeare could not be fetched into it", data_dir.display())
        }
    })?;
    if prepared {
        println!("prepared {}", data_dir.display());
    }
    let c = &exp.base;
    println!(
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
            println!("{line}");
            let _ = std::io::stdout().flush();
        })
        .with_context(|| format!("experiment in {} failed", out.display()))?;
    println!("report: {} ({:.1}s)", report.display(), start.elapsed().as_secs_f64());
    Ok(())
}
