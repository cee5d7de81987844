//! `quietgpt train` and `quietgpt config`.

use super::args::set_threads;
use anyhow::{bail, Context, Result};
use quietgpt::config::Config;
use quietgpt::model::flops::gemm_peak_gflops;
use quietgpt::train::checkpoint::CKPT_FILE;
use quietgpt::train::trainer::{Event, Trainer};
use std::path::{Path, PathBuf};

/// `train`/`config` arguments: --preset, --config, --resume, and every other `--key=value` is a config override.
pub fn train_args(args: &[String]) -> Result<(Option<String>, Option<PathBuf>, bool, Vec<String>)> {
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
            bail!(
                "unexpected argument '{a}': training options are --preset NAME, --config FILE, --resume or --key=value"
            );
        }
    }
    Ok((preset, file, resume, overrides))
}

pub fn run(args: &[String]) -> Result<()> {
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
        let t = Trainer::resume(Path::new(&out_dir), &overrides).with_context(|| {
            format!("cannot resume from {} (train without --resume to start afresh)", path.display())
        })?;
        println!("resuming from {} at iter {}", path.display(), t.state.iter_num);
        t
    } else {
        let config = Config::build(preset.as_deref(), file.as_deref(), &overrides)?;
        Trainer::new(config.clone()).with_context(|| {
            format!("cannot start training on {} (run `quietgpt prepare` first, or set --data_dir)", config.data_dir)
        })?
    };
    set_threads(trainer.config.threads)?;
    trainer.peak_flops = gemm_peak_gflops() * 1e9;
    let c = &trainer.config;
    println!(
        "model: {} layers, {} heads, {} embd, block {}, vocab {}, attention {}, {:.2}M params | {} tokens/iter | {} threads, GEMM peak {:.0} GFLOP/s",
        c.n_layer,
        c.n_head,
        c.n_embd,
        c.block_size,
        trainer.engine.config().vocab_size,
        c.attention,
        trainer.engine.num_params() as f64 / 1e6,
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
                println!(
                    "iter {iter}: loss {loss:.4}, time {ms:.1}ms, {tokens_per_s:.0} tok/s, mfu {:.1}%",
                    mfu * 100.0
                );
            }
        })
        .context("training failed")?;
    println!("done in {:.1}s; best val loss {:.4}", start.elapsed().as_secs_f64(), trainer.state.best_val_loss);
    Ok(())
}

/// Print the resolved config (every key).
pub fn config(args: &[String]) -> Result<()> {
    let (preset, file, _, overrides) = train_args(args)?;
    print!("{}", Config::build(preset.as_deref(), file.as_deref(), &overrides)?.to_toml());
    Ok(())
}
