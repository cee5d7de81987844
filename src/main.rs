//! quietgpt's command line: parses arguments, calls the library, adds context to errors.

use anyhow::{bail, Context, Result};
use quietgpt::config::{Config, PRESETS};
use quietgpt::data::{self, Tokenizer, TokenizerKind};
use quietgpt::model::flops::measure_gemm_gflops;
use quietgpt::sample::{generate, SampleOptions};
use quietgpt::train::checkpoint::{self, CKPT_FILE};
use quietgpt::train::trainer::{Event, Trainer};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "quietgpt: nanoGPT in Rust, with softmax or quiet (softmax1) attention

usage:
  quietgpt prepare [--input FILE] [--tokenizer char|gpt2] [--out DIR]
  quietgpt train   [--preset NAME] [--config FILE.toml] [--resume] [--key=value ...]
  quietgpt sample  [--out_dir DIR | --checkpoint FILE] [--start TEXT|FILE:path] [--num_samples N]
                   [--max_new_tokens N] [--temperature T] [--top_k K] [--seed S] [--threads N]
  quietgpt config  [--preset NAME] [--config FILE.toml] [--key=value ...]   print the resolved config
  quietgpt presets                                                           list the presets

Run `quietgpt config` for every training key with its default. See README.md for examples.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let Some((cmd, rest)) = args.split_first() else {
        println!("{USAGE}");
        return Ok(());
    };
    match cmd.as_str() {
        "prepare" => prepare(Args::parse(rest, &["input", "tokenizer", "out"], &[])?),
        "train" => train(rest),
        "sample" => sample(Args::parse(
            rest,
            &["out_dir", "checkpoint", "start", "num_samples", "max_new_tokens", "temperature", "top_k", "seed", "threads"],
            &[],
        )?),
        "config" => {
            let (preset, file, _, overrides) = train_args(rest)?;
            print!("{}", Config::build(preset.as_deref(), file.as_deref(), &overrides)?.to_toml());
            Ok(())
        }
        "presets" => {
            for (name, about, _) in PRESETS {
                println!("{name:22} {about}");
            }
            Ok(())
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command '{other}'\n\n{USAGE}"),
    }
}

/// `--key=value` / `--key value` options and `--flag`s, all of them named in advance.
struct Args {
    values: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Args {
    fn parse(args: &[String], keys: &[&str], flags: &[&str]) -> Result<Args> {
        let mut out = Args { values: vec![], flags: vec![] };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(body) = a.strip_prefix("--") else { bail!("unexpected argument '{a}' (options start with --)") };
            let (k, v) = match body.split_once('=') {
                Some((k, v)) => (k.replace('-', "_"), Some(v.to_string())),
                None => (body.replace('-', "_"), None),
            };
            if flags.contains(&k.as_str()) && v.is_none() {
                out.flags.push(k);
            } else if keys.contains(&k.as_str()) {
                let v = match v {
                    Some(v) => v,
                    None => it.next().with_context(|| format!("--{k} needs a value"))?.clone(),
                };
                out.values.push((k, v));
            } else {
                bail!("unknown option '--{k}': expected one of {}", keys.iter().chain(flags).map(|k| format!("--{k}")).collect::<Vec<_>>().join(", "));
            }
        }
        Ok(out)
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.values.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }

    fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> Result<T> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| anyhow::anyhow!("--{k}={v} is not a valid number")),
        }
    }
}

fn prepare(a: Args) -> Result<()> {
    let kind: TokenizerKind = a.get("tokenizer").unwrap_or("char").parse()?;
    let default_out = match kind {
        TokenizerKind::Char => "data/shakespeare_char",
        TokenizerKind::Gpt2 => "data/shakespeare",
    };
    let out = PathBuf::from(a.get("out").unwrap_or(default_out));
    let input = a.get("input").map(PathBuf::from);
    let text = data::read_input(input.as_deref(), &out).with_context(|| match &input {
        Some(p) => format!("cannot read the input text {}", p.display()),
        None => "no --input given and Tiny Shakespeare could not be fetched".into(),
    })?;
    let r = data::prepare(&text, &out, kind).with_context(|| format!("preparing {}", out.display()))?;
    println!(
        "prepared {} ({} tokenizer): vocab {}, {} train tokens, {} val tokens",
        out.display(),
        kind,
        r.vocab_size,
        r.train_tokens,
        r.val_tokens
    );
    Ok(())
}

/// `train`/`config` arguments: --preset, --config, --resume, and every other `--key=value` is a config override.
fn train_args(args: &[String]) -> Result<(Option<String>, Option<PathBuf>, bool, Vec<String>)> {
    let (mut preset, mut file, mut resume, mut overrides) = (None, None, false, vec![]);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut take = |name: &str| -> Result<Option<String>> {
            if let Some(v) = a.strip_prefix(&format!("--{name}=")) {
                return Ok(Some(v.to_string()));
            }
            if a == &format!("--{name}") {
                return Ok(Some(it.next().with_context(|| format!("--{name} needs a value"))?.clone()));
            }
            Ok(None)
        };
        if let Some(p) = take("preset")? {
            preset = Some(p);
        } else if let Some(f) = take("config")? {
            file = Some(PathBuf::from(f));
        } else if a == "--resume" {
            resume = true;
        } else if a.starts_with("--") && a.contains('=') {
            overrides.push(a.clone());
        } else {
            bail!("unexpected argument '{a}': training options are --preset NAME, --config FILE, --resume or --key=value");
        }
    }
    Ok((preset, file, resume, overrides))
}

fn set_threads(n: usize) -> Result<()> {
    rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("starting the thread pool")
}

fn train(args: &[String]) -> Result<()> {
    let (preset, file, resume, overrides) = train_args(args)?;
    let mut trainer = if resume {
        if preset.is_some() || file.is_some() {
            bail!("--resume restores the whole config from the checkpoint; pass only --key=value overrides (e.g. --max_iters=3000)");
        }
        let out_dir = overrides
            .iter()
            .find_map(|o| o.strip_prefix("--out_dir="))
            .map(String::from)
            .unwrap_or_else(|| Config::default().out_dir);
        let path = Path::new(&out_dir).join(CKPT_FILE);
        let t = Trainer::resume(Path::new(&out_dir), &overrides)
            .with_context(|| format!("cannot resume from {} (train without --resume to start afresh)", path.display()))?;
        println!("resuming from {} at iter {}", path.display(), t.state.iter_num);
        t
    } else {
        let config = Config::build(preset.as_deref(), file.as_deref(), &overrides)?;
        Trainer::new(config.clone()).with_context(|| {
            format!("cannot start training on {} (run `quietgpt prepare` first, or set --data_dir)", config.data_dir)
        })?
    };
    set_threads(trainer.config.threads)?;
    trainer.peak_flops = measure_gemm_gflops(512, 5) * 1e9;
    let c = &trainer.config;
    println!(
        "model: {} layers, {} heads, {} embd, block {}, vocab {}, attention {}, {:.2}M params | {} tokens/iter | {} threads, GEMM peak {:.0} GFLOP/s",
        c.n_layer,
        c.n_head,
        c.n_embd,
        c.block_size,
        trainer.model.config.vocab_size,
        c.attention,
        trainer.model.num_params() as f64 / 1e6,
        c.tokens_per_iter(),
        rayon::current_num_threads(),
        trainer.peak_flops / 1e9
    );
    let start = std::time::Instant::now();
    let ckpt = trainer.checkpoint_path();
    trainer
        .run(&mut |e| match e {
            Event::Eval { iter, train_loss, val_loss, saved, .. } => {
                let s = if *saved { format!(", saved {}", ckpt.display()) } else { String::new() };
                println!("step {iter}: train loss {train_loss:.4}, val loss {val_loss:.4}{s}");
            }
            Event::Step { iter, loss, ms, tokens_per_s, mfu, .. } => {
                println!("iter {iter}: loss {loss:.4}, time {ms:.1}ms, {tokens_per_s:.0} tok/s, mfu {:.1}%", mfu * 100.0);
            }
        })
        .context("training failed")?;
    println!("done in {:.1}s; best val loss {:.4}", start.elapsed().as_secs_f64(), trainer.state.best_val_loss);
    Ok(())
}

fn sample(a: Args) -> Result<()> {
    let path = match (a.get("checkpoint"), a.get("out_dir")) {
        (Some(c), _) => PathBuf::from(c),
        (None, d) => Path::new(d.unwrap_or("out")).join(CKPT_FILE),
    };
    set_threads(a.num("threads", 0)?)?;
    let mut ckpt = checkpoint::load(&path, 1).with_context(|| format!("cannot load the checkpoint {}", path.display()))?;
    let d = SampleOptions::default();
    let mut start = a.get("start").map(String::from).unwrap_or(d.start);
    if let Some(f) = start.strip_prefix("FILE:") {
        start = std::fs::read_to_string(f).with_context(|| format!("cannot read the start file {f}"))?;
    }
    let top_k: usize = a.num("top_k", d.top_k.unwrap_or(0))?;
    let opts = SampleOptions {
        start,
        num_samples: a.num("num_samples", d.num_samples)?,
        max_new_tokens: a.num("max_new_tokens", d.max_new_tokens)?,
        temperature: a.num("temperature", d.temperature)?,
        top_k: (top_k > 0).then_some(top_k),
        seed: a.num("seed", d.seed)?,
    };
    let tok: Tokenizer = ckpt.tokenizer.clone();
    generate(&mut ckpt.model, &tok, &opts, &mut |_, text| {
        println!("{text}\n---------------");
    })
    .context("sampling failed")?;
    Ok(())
}
