//! nanoGPT's learning-rate schedule: linear warmup, cosine decay to min_lr, then constant.

use crate::config::Config;

/// The learning rate of iteration `it`, in f64 as nanoGPT's `get_lr` computes it (Python floats).
pub fn learning_rate(cfg: &Config, it: usize) -> f64 {
    if !cfg.decay_lr {
        return cfg.learning_rate;
    }
    if it < cfg.warmup_iters {
        return cfg.learning_rate * (it + 1) as f64 / (cfg.warmup_iters + 1) as f64;
    }
    if it > cfg.lr_decay_iters {
        return cfg.min_lr;
    }
    let ratio = (it - cfg.warmup_iters) as f64 / (cfg.lr_decay_iters - cfg.warmup_iters) as f64;
    let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos());
    cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_cosine_floor() {
        let c =
            Config { learning_rate: 1e-3, min_lr: 1e-4, warmup_iters: 100, lr_decay_iters: 1000, ..Config::default() };
        assert!((learning_rate(&c, 0) - 1e-3 / 101.0).abs() < 1e-9);
        assert!((learning_rate(&c, 100) - 1e-3).abs() < 1e-9);
        assert!((learning_rate(&c, 550) - 5.5e-4).abs() < 1e-7);
        assert!((learning_rate(&c, 1000) - 1e-4).abs() < 1e-9);
        assert_eq!(learning_rate(&c, 5000), 1e-4);
        let fixed = Config { decay_lr: false, ..c };
        assert_eq!(learning_rate(&fixed, 0), 1e-3);
    }
}
