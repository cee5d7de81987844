//! How much memory a CPU model needs, estimated before anything is allocated, and the check against
//! the machine's memory: a config that cannot fit is refused with both numbers instead of aborting on a
//! failed allocation ("memory allocation of 51200000000 bytes failed").
//!
//! The estimate counts what `Gpt::new` and the first steps allocate, in the buffers' own precision:
//! parameters and gradients (`Gpt`), the forward activations (`acts::Acts`, sized for (max_batch,
//! block_size)) and, for training, AdamW's two moments, the backward buffers (`acts::GradActs`), one
//! gradient copy per extra shard and the fused attention's per-thread scratch (shards and threads taken
//! as the machine's cores). All arithmetic is checked: a size that overflows is `u64::MAX`.

use crate::config::ModelConfig;
use crate::engine::params::param_count;
use crate::{Error, Result};

/// What the model is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Forward passes only (sampling, analysis, quantization).
    Inference,
    /// Forward, backward and AdamW steps.
    Training,
}

/// Bytes a model of `config` for batches of up to `max_batch` sequences needs, with `elem` bytes per
/// number (4 for f32); `u64::MAX` when the count overflows.
pub fn estimate(config: &ModelConfig, max_batch: usize, elem: usize, use_: Use) -> u64 {
    count(config, max_batch, use_).and_then(|n| n.checked_mul(elem as u64)).unwrap_or(u64::MAX)
}

/// The numbers (not bytes) of `estimate`.
fn count(config: &ModelConfig, max_batch: usize, use_: Use) -> Option<u64> {
    let u = |x: usize| x as u64;
    let mul = |xs: &[u64]| xs.iter().try_fold(1u64, |acc, &x| acc.checked_mul(x));
    let (l, c, t, v, nh) =
        (u(config.n_layer), u(config.n_embd), u(config.block_size), u(config.vocab_size), u(config.n_head));
    let b = u(max_batch);
    let g = u(config.attention.gate_groups(config.n_head, config.n_embd).unwrap_or(0));
    let p = param_count(config)?;
    let bt = mul(&[b, t])?;
    // Acts::new: per-layer buffers, widths in units of (L, B, T)
    let per_layer_width = [2, 3 * c, c, g, if g > 0 { c } else { 0 }, c, 2, 4 * c, c]
        .iter()
        .try_fold(0u64, |acc, &w| acc.checked_add(w))?;
    let per_layer = mul(&[l, bt, per_layer_width])?.checked_add(mul(&[l, b, nh, t])?)?; // + lse
                                                                                        // the rest: encoded, lnf, lnf_mean/rstd, logits, losses, proj, ln, hidden
    let once = mul(&[bt, c.checked_mul(8)?.checked_add(3)?.checked_add(v)?])?;
    let io = mul(&[bt, 2])?; // idx and targets (u32, counted as one number each)
    let mut n = [mul(&[p, 2])?, per_layer, once, io].iter().try_fold(0u64, |acc, &x| acc.checked_add(x))?;
    if use_ == Use::Training {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        let shards = b.min(cores);
        // AdamW's m and v, and a gradient copy per shard after the first
        let optimizer = mul(&[p, 2])?.checked_add(mul(&[p, shards - 1])?)?;
        // GradActs::ensure (+ dproj, with dropout): dresidual, dproj, dln, dqkv, dattc; dgate; dnull; the
        // reference attention's backward scratch (2·B·NH·T)
        let grad_width = c.checked_mul(6)?.checked_add(g)?.checked_add(if g > 0 { c } else { 0 })?;
        let grad_acts = mul(&[bt, grad_width])?.checked_add(mul(&[b, nh])?)?.checked_add(mul(&[b, nh, t, 2])?)?;
        // the fused attention's scratch (`scratch_per_thread(t)` = 3·min(64, T)·T) per thread, in every shard
        let scratch = mul(&[shards, cores, 3, t.min(64), t])?;
        n = [n, optimizer, grad_acts, scratch].iter().try_fold(0u64, |acc, &x| acc.checked_add(x))?;
    }
    Some(n)
}

/// The machine's memory in bytes: (available, total) from /proc/meminfo on Linux; None where unknown.
pub fn machine_memory() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
            .map(|kb| kb.saturating_mul(1024))
    };
    let total = field("MemTotal")?;
    Some((field("MemAvailable").unwrap_or(total), total))
}

/// Refuses `bytes` for `what` when the machine (see `machine_memory`) has less available; passes where
/// the machine's memory is unknown.
pub fn check(what: &str, bytes: u64) -> Result<()> {
    let Some((available, total)) = machine_memory() else { return Ok(()) };
    if bytes <= available {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{what} needs about {} of memory, but this machine has {} available (of {}): make the model or the batch \
         smaller",
        gib(bytes),
        gib(available),
        gib(total)
    )))
}

/// Bytes for people: "12.3 GiB" (or "more than 16 EiB" for an overflowed count).
pub fn gib(bytes: u64) -> String {
    if bytes == u64::MAX {
        return "more than 16 EiB".into();
    }
    let g = bytes as f64 / (1u64 << 30) as f64;
    if g >= 0.1 {
        format!("{g:.1} GiB")
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// Checks that a model of `config` for batches of `max_batch` fits the machine, before it is built.
pub fn check_model(config: &ModelConfig, max_batch: usize, elem: usize, use_: Use) -> Result<()> {
    let what = format!(
        "a model of {} layers, n_embd {}, vocab_size {} for batches of {max_batch} x {} tokens ({})",
        config.n_layer,
        config.n_embd,
        config.vocab_size,
        config.block_size,
        match use_ {
            Use::Inference => "inference",
            Use::Training => "training",
        }
    );
    check(&what, estimate(config, max_batch, elem, use_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AttentionKind;
    use crate::engine::cpu::acts::{Acts, GradActs};
    use crate::engine::cpu::attention::backward_scratch;
    use crate::engine::cpu::attention_fused::scratch_per_thread;
    use crate::engine::params::ParamLayout;

    #[test]
    fn estimate_counts_what_the_model_allocates() {
        for attention in AttentionKind::ALL {
            for bias in [false, true] {
                let cfg = ModelConfig::new(3, 2, 8, 16, 11, bias, 0.1, attention);
                let b = 5;
                let p = ParamLayout::new(&cfg).total as u64;
                assert_eq!(param_count(&cfg), Some(p), "{attention} bias={bias}");
                let acts = Acts::<Vec<f32>>::new(&cfg, b).len() as u64;
                let inference = 2 * p + acts + 2 * (b * 16) as u64;
                assert_eq!(estimate(&cfg, b, 4, Use::Inference), 4 * inference, "{attention} bias={bias}");
                let mut g = GradActs::<Vec<f32>>::none();
                g.ensure(&cfg, b);
                g.ensure_dropout(&cfg, b);
                let cores = std::thread::available_parallelism().unwrap().get().min(b) as u64;
                let threads = std::thread::available_parallelism().unwrap().get() as u64;
                assert_eq!(g.datt_row.len(), backward_scratch(b, 16, 2));
                let training =
                    inference + (2 + cores - 1) * p + g.len() as u64 + cores * threads * scratch_per_thread(16) as u64;
                assert_eq!(estimate(&cfg, b, 4, Use::Training), 4 * training, "{attention} bias={bias}");
            }
        }
    }

    #[test]
    fn absurd_sizes_do_not_overflow() {
        let mut cfg = ModelConfig::new(1, 1, 1, 1, 1, false, 0.0, AttentionKind::Softmax);
        for (l, c, v, b) in [(usize::MAX, 1, 1, 1), (1, usize::MAX, 1, 1), (1, 1, usize::MAX, 1), (1, 1, 1, usize::MAX)]
        {
            (cfg.n_layer, cfg.n_embd, cfg.vocab_size) = (l, c, v);
            assert_eq!(estimate(&cfg, b, 4, Use::Training), u64::MAX);
        }
        cfg.n_layer = 100_000;
        assert!(check_model(&cfg, 1, 4, Use::Training).is_ok(), "a deep but thin model is small");
    }
}
