//! quietgpt's command line: parses arguments, calls the library, adds context to errors.

mod cmd;

use anyhow::{bail, Result};
use cmd::args::Args;
use quietgpt::config::PRESETS;
use std::process::ExitCode;

const USAGE: &str = "quietgpt: nanoGPT in Rust, with softmax or quiet (softmax1) attention

usage:
  quietgpt prepare [--input FILE] [--tokenizer char|gpt2] [--out DIR]
  quietgpt train   [--preset NAME] [--config FILE.toml] [--resume] [--key=value ...]
  quietgpt sample  [--out_dir DIR | --checkpoint FILE] [--start TEXT|FILE:path] [--num_samples N]
                   [--max_new_tokens N] [--temperature T] [--top_k K] [--seed S] [--threads N]
  quietgpt bench   [--preset tiny|medium] [--attention softmax|quiet|clipped|gated|outgate|sink] [--iters N] [--warmup N] [--threads N] [--json]
                   [--n_layer N] [--n_head N] [--n_embd N] [--block_size N] [--batch_size N]
  quietgpt config  [--preset NAME] [--config FILE.toml] [--key=value ...]   print the resolved config
  quietgpt presets                                                           list the presets
  quietgpt analyze CHECKPOINT [--json FILE|-] [--windows N] [--batch N] [--top_k K] [--data_dir DIR]   activation/weight/attention outlier stats
  quietgpt quantize-eval CHECKPOINT [--json FILE|-] [--max_windows N] [--calib_windows N] [--percentile P] [--data_dir DIR]   W8A8/W8/A8/W4 val loss vs float32
  quietgpt experiment [--input FILE | --data_dir DIR] [--variants softmax,quiet] [--seeds N | --seed_list 1,2,3] [--out DIR] [--analyze_every N] [--quick] [--key=value ...]   train, analyse and compare attention variants over seeds

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
        "prepare" => cmd::prepare::run(Args::parse(rest, &["input", "tokenizer", "out"], &[])?),
        "train" => cmd::train::run(rest),
        "sample" => cmd::sample::run(Args::parse(
            rest,
            &[
                "out_dir",
                "checkpoint",
                "start",
                "num_samples",
                "max_new_tokens",
                "temperature",
                "top_k",
                "seed",
                "threads",
            ],
            &[],
        )?),
        "bench" => cmd::bench::run(Args::parse(
            rest,
            &[
                "preset",
                "attention",
                "iters",
                "warmup",
                "threads",
                "vocab_size",
                "n_layer",
                "n_head",
                "n_embd",
                "block_size",
                "batch_size",
            ],
            &["json"],
        )?),
        "config" => cmd::train::config(rest),
        "analyze" => cmd::analyze::run(rest),
        "quantize-eval" => cmd::quantize::run(rest),
        "experiment" => cmd::experiment::run(rest),
        "presets" => {
            for p in PRESETS {
                println!("{:22} {}", p.name, p.about());
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
