//! `quietgpt train` and `quietgpt config`.

use super::args::{check_out_dir, set_threads, Overrides};
use super::out::{say, show};
use anyhow::{bail, Context, Result};
use clap::Args;
use quietgpt::config::{ActivationKind, Config};
use quietgpt::engine::cpu::flops::gemm_peak_gflops;
use quietgpt::hf;
use quietgpt::train::checkpoint::CKPT_FILE;
use quietgpt::train::trainer::{Event, Trainer};
use std::path::{Path, PathBuf};

const KEYS_HELP: &str = "Every key that `quietgpt config` prints can be set with --key=value (a TOML value or a bare \
word): model shape, optimizer, schedule, data_dir, out_dir, seed, threads, device (cpu, cuda or cuda:N), dtype (auto, bfloat16 on cuda, float32). \
Model and optimizer options beside nanoGPT's defaults: activation = gelu|relu, tie_weights = true|false (false: \
lm_head.weight of its own), init = nanogpt|pytorch, optimizer = adamw|sgd (momentum, default 0.9).";

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
#[command(after_help = format!("Examples:
  quietgpt train --preset shakespeare-char-cpu                    # nanoGPT README's CPU recipe
  quietgpt train --preset shakespeare-char --attention=quiet       # 6/6/384, the GPU recipe
  quietgpt train --config my.toml --max_iters=3000 --out_dir=out/run2
  quietgpt train --resume --out_dir=out-shakespeare-char --max_iters=3000
  quietgpt train --init_from=gpt2/ --attention=quiet --data_dir=data/shakespeare --block_size=256   # fine-tune GPT-2

{KEYS_HELP}"))]
pub struct TrainArgs {
    /// Start from a named preset (`quietgpt presets` lists them)
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    /// A TOML file of config keys, applied over the preset
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// Continue from <out_dir>/ckpt.safetensors with its whole config; only --key=value overrides that keep the
    /// model's shape (e.g. --max_iters) may be given
    #[arg(long)]
    resume: bool,
    /// Start afresh even if <out_dir> holds a checkpoint, replacing it (and metrics.jsonl) as training goes
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Start from a Hugging Face GPT-2 (a directory with config.json and model.safetensors, or the weights
    /// file), as nanoGPT's init_from='gpt2': the model's shape follows the file (block_size cut to the
    /// config's if smaller), the rest (attention, dropout, lr, data, ...) the preset and overrides. The data
    /// must be GPT-2 BPE (prepare --tokenizer gpt2)
    #[arg(long, value_name = "PATH", conflicts_with = "resume")]
    init_from: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
#[command(after_help = format!("Examples:
  quietgpt config                                       # every key with its default
  quietgpt config --preset shakespeare-char-cpu --attention=quiet
  quietgpt config --config my.toml > resolved.toml

{KEYS_HELP}"))]
pub struct ConfigArgs {
    /// Start from a named preset (`quietgpt presets` lists them)
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    /// A TOML file of config keys, applied over the preset
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

/// A new run's out_dir must be a directory (or not exist yet) without a checkpoint, unless `overwrite`.
fn fresh_out_dir(config: &Config, overwrite: bool) -> Result<()> {
    check_out_dir("out_dir", Path::new(&config.out_dir))?;
    if Path::new(&config.out_dir).join(CKPT_FILE).exists() && !overwrite {
        bail!(
            "{} already holds a checkpoint; pass --resume to continue it (quietgpt train --resume --out_dir={}), \
             --overwrite to replace it with a fresh run, or another --out_dir",
            config.out_dir,
            config.out_dir
        );
    }
    Ok(())
}

pub fn run(a: TrainArgs) -> Result<()> {
    let overrides = a.overrides.checked("--preset NAME, --config FILE, --resume, --init_from PATH")?;
    let mut trainer = if a.resume {
        if a.preset.is_some() || a.config.is_some() {
            bail!("--resume restores the whole config from the checkpoint; pass only --key=value overrides (e.g. --max_iters=3000)");
        }
        let out_dir = a.overrides.get("out_dir").unwrap_or_else(|| Config::default().out_dir);
        let path = Path::new(&out_dir).join(CKPT_FILE);
        let t = Trainer::resume(Path::new(&out_dir), overrides).with_context(|| {
            format!("cannot resume from {} (train without --resume to start afresh)", path.display())
        })?;
        say!("resuming from {} at iter {}", path.display(), t.state.iter_num);
        t
    } else if let Some(from) = &a.init_from {
        let config = Config::build(a.preset.as_deref(), a.config.as_deref(), overrides)?;
        quietgpt::engine::probe(&config.device)?; // a missing GPU stands alone, not as a data problem
        fresh_out_dir(&config, a.overwrite)?;
        let hint = a.overrides.get("n_head").and_then(|n| n.parse().ok());
        let pre = hf::load(from, hint).with_context(|| format!("cannot load --init_from {}", from.display()))?;
        let m = &pre.model;
        say!(
            "init_from {}: GPT-2 of {} layers, {} heads, {} embd, n_positions {}, vocab {}, {}{}",
            pre.source.display(),
            m.n_layer,
            m.n_head,
            m.n_embd,
            m.block_size,
            m.vocab_size,
            match m.activation {
                ActivationKind::Gelu => format!("{} GELU", m.gelu),
                ActivationKind::Relu => "ReLU".to_string(),
            },
            if m.tie_weights { "" } else { ", untied lm_head" }
        );
        hf::init_trainer(&pre, &config).with_context(|| {
            format!(
                "cannot start fine-tuning on {} (prepare it with --tokenizer gpt2, or set --data_dir)",
                config.data_dir
            )
        })?
    } else {
        let config = Config::build(a.preset.as_deref(), a.config.as_deref(), overrides)?;
        quietgpt::engine::probe(&config.device)?; // a missing GPU stands alone, not as a data problem
        fresh_out_dir(&config, a.overwrite)?;
        // Only a missing data directory calls for `prepare` (its error says so); other data errors stand alone.
        let hint =
            if Path::new(&config.data_dir).is_dir() { "" } else { " (or set --data_dir to a prepared directory)" };
        Trainer::new(config.clone()).with_context(|| format!("cannot start training on {}{hint}", config.data_dir))?
    };
    set_threads(trainer.config.threads)?;
    // the GPU's datasheet peak, or the CPU's GEMM rate measured here
    trainer.peak_flops = trainer.engine.peak_flops().unwrap_or_else(|| gemm_peak_gflops() * 1e9);
    let c = &trainer.config;
    say!(
        "model: {} layers, {} heads, {} embd, block {}, vocab {}, attention {}, mlp {}{}, {:.2}M params | optimizer {} | {} tokens/iter | {} threads, {} peak {:.0} GFLOP/s",
        c.n_layer,
        c.n_head,
        c.n_embd,
        c.block_size,
        trainer.engine.config().vocab_size,
        c.attention,
        c.activation,
        if c.tie_weights { "" } else { ", untied lm_head" },
        trainer.engine.num_params() as f64 / 1e6,
        c.optimizer,
        c.tokens_per_iter(),
        rayon::current_num_threads(),
        trainer.engine.device(),
        trainer.peak_flops / 1e9
    );
    let start = std::time::Instant::now();
    let ckpt = trainer.checkpoint_path();
    trainer
        .run(&mut |e| match e {
            Event::Eval { iter, train_loss, val_loss, saved, copy_loss, bigram_loss, .. } => {
                let s = if *saved { format!(", saved {}", ckpt.display()) } else { String::new() };
                let task = match (copy_loss, bigram_loss) {
                    (Some(c), Some(b)) => format!(" (copy {c:.4}, bigram {b:.4})"),
                    _ => String::new(),
                };
                say!("step {iter}: train loss {train_loss:.4}, val loss {val_loss:.4}{task}{s}");
            }
            Event::Step { iter, loss, ms, tokens_per_s, mfu, .. } => {
                say!("iter {iter}: loss {loss:.4}, time {ms:.1}ms, {tokens_per_s:.0} tok/s, mfu {:.1}%", mfu * 100.0);
            }
        })
        .context("training failed")?;
    say!("done in {:.1}s; best val loss {:.4}", start.elapsed().as_secs_f64(), trainer.state.best_val_loss);
    Ok(())
}

/// Print the resolved config (every key).
pub fn config(a: ConfigArgs) -> Result<()> {
    let overrides = a.overrides.checked("--preset NAME, --config FILE")?;
    show!("{}", Config::build(a.preset.as_deref(), a.config.as_deref(), overrides)?.to_toml());
    super::out::finish()
}
