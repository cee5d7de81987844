//! `quietgpt bench`: time training steps of a preset on random tokens (see `quietgpt::train::bench`).

use super::args::Threads;
use super::out::{say, show};
use anyhow::Result;
use clap::Args;
use quietgpt::config::Config;

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
#[command(after_help = "Examples:
  quietgpt bench                                  # the tiny shape, softmax
  quietgpt bench --preset medium --attention quiet --iters 10 --json
  quietgpt bench --preset medium --batch_size 8 --threads 2
  quietgpt bench --preset medium --device cuda --dtype float32   # the GPU engine in f32")]
pub struct BenchArgs {
    /// The shape to time (any preset; tiny and medium are the shapes of bench/torch_reference.py)
    #[arg(long, value_name = "NAME", default_value = "tiny")]
    preset: String,
    /// Attention variant: softmax, quiet, clipped, gated, outgate, sink, relu, sigmoid or softpick
    #[arg(long, value_name = "NAME")]
    attention: Option<String>,
    /// Timed iterations
    #[arg(long, value_name = "N", default_value_t = 30)]
    iters: usize,
    /// Untimed iterations first
    #[arg(long, value_name = "N", default_value_t = 3)]
    warmup: usize,
    /// Vocabulary size of the random tokens
    #[arg(long, value_name = "N", default_value_t = 65)]
    vocab_size: usize,
    /// Override the preset's n_layer
    #[arg(long, value_name = "N")]
    n_layer: Option<usize>,
    /// Override the preset's n_head
    #[arg(long, value_name = "N")]
    n_head: Option<usize>,
    /// Override the preset's n_embd
    #[arg(long, value_name = "N")]
    n_embd: Option<usize>,
    /// Override the preset's block_size
    #[arg(long, value_name = "N")]
    block_size: Option<usize>,
    /// Override the preset's batch_size
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// Where to run: cpu, or cuda / cuda:N (the GPU engine)
    #[arg(long, value_name = "cpu|cuda[:N]", default_value = "cpu")]
    device: String,
    /// The arithmetic: auto (bfloat16 on cuda, float32 on cpu), bfloat16 (cuda only) or float32
    #[arg(long, value_name = "DTYPE", default_value = "auto")]
    dtype: String,
    /// Print the result as one JSON line instead of a table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    threads: Threads,
}

pub fn run(a: BenchArgs) -> Result<()> {
    let mut overrides = vec![];
    if let Some(v) = &a.attention {
        overrides.push(format!("attention={v}"));
    }
    for (key, v) in [
        ("n_layer", a.n_layer),
        ("n_head", a.n_head),
        ("n_embd", a.n_embd),
        ("block_size", a.block_size),
        ("batch_size", a.batch_size),
    ] {
        if let Some(v) = v {
            overrides.push(format!("{key}={v}"));
        }
    }
    overrides.push(format!("device={:?}", a.device));
    overrides.push(format!("dtype={:?}", a.dtype));
    let cfg = Config::build(Some(&a.preset), None, &overrides)?;
    a.threads.start()?;
    let r = quietgpt::train::bench::run(&cfg, &cfg.device, &a.preset, a.vocab_size, a.iters, a.warmup)?;
    if a.json {
        say!("{}", serde_json::to_string(&r)?);
    } else {
        show!("{}", r.table());
    }
    super::out::finish()
}
