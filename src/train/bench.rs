//! `quietgpt bench`: N full training steps (forward, backward, clip, AdamW) on random tokens, timed
//! per phase and per kernel kind, with model FLOP utilisation against a GEMM peak measured on the spot.
//! The JSON has the keys of bench/torch_reference.py, so the two can be compared line by line.

use super::trainer::{fresh_engine, optim_config, STREAM_DATA};
use crate::config::Config;
use crate::engine::cpu::flops::{flops_per_token, gemm_peak_gflops};
use crate::engine::profile::Op;
use crate::engine::{Batch, Engine};
use crate::rng::Rng;
use crate::{Error, Result};
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct KernelTime {
    pub kernel: &'static str,
    pub forward_ms: f64,
    pub backward_ms: f64,
    /// Share of the whole step.
    pub share: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    #[serde(rename = "impl")]
    pub implementation: &'static str,
    pub device: &'static str,
    pub preset: String,
    pub attention: String,
    pub threads: usize,
    pub iters: usize,
    pub ms_per_iter_median: f64,
    pub ms_per_iter_min: f64,
    pub tokens_per_s: f64,
    pub final_loss: f64,
    pub peak_rss_mb: f64,
    pub forward_ms: f64,
    pub backward_ms: f64,
    pub optimizer_ms: f64,
    pub kernels: Vec<KernelTime>,
    pub gflop_per_iter: f64,
    pub achieved_gflops: f64,
    pub gemm_peak_gflops: f64,
    pub mfu: f64,
}

pub fn run(
    cfg: &Config,
    device: &str,
    preset: &str,
    vocab_size: usize,
    iters: usize,
    warmup: usize,
) -> Result<BenchReport> {
    if iters == 0 {
        return Err(Error::Config("bench needs at least 1 timed iteration (--iters)".into()));
    }
    let peak_before = gemm_peak_gflops();
    // Peak RSS should be the training step's, not the GEMM measurement's: reset the high-water mark
    // (Linux: writing 5 to clear_refs; elsewhere the value simply includes the measurement).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let mcfg = cfg.model_config(vocab_size);
    let (b, t) = (cfg.batch_size, cfg.block_size);
    let mut engine = fresh_engine(device, &cfg.dtype, mcfg.clone(), b, cfg.seed)?;
    let opt = optim_config(cfg);
    let mut rng = Rng::new(cfg.seed, STREAM_DATA);
    let mut x = vec![0u32; b * t];
    let mut y = vec![0u32; b * t];
    let (mut times, mut fwd, mut bwd, mut optim) = (vec![], 0.0, 0.0, 0.0);
    let mut loss = 0.0;
    for i in 0..warmup + iters {
        if i == warmup {
            engine.reset_profile();
        }
        for v in x.iter_mut().chain(y.iter_mut()) {
            *v = rng.below(vocab_size as u64) as u32;
        }
        // the whole step in the engine's context, as the trainer runs it
        let mut marks = [Instant::now(); 4];
        engine.run(&mut |e: &mut dyn Engine| {
            marks[0] = Instant::now();
            e.zero_grad();
            loss = e.forward(Batch { idx: &x, targets: Some(&y), b, t }, None)?.expect("targets given");
            marks[1] = Instant::now();
            e.backward(1.0)?;
            marks[2] = Instant::now();
            e.step(cfg.learning_rate, &opt, cfg.grad_clip)?;
            marks[3] = Instant::now();
            Ok(loss)
        })?;
        let [t0, t1, t2, t3] = marks;
        if i >= warmup {
            times.push((t3 - t0).as_secs_f64());
            fwd += (t1 - t0).as_secs_f64();
            bwd += (t2 - t1).as_secs_f64();
            optim += (t3 - t2).as_secs_f64();
        }
    }
    let peak_rss = peak_rss_mb();
    let n = iters.max(1) as f64;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = if sorted.is_empty() { 0.0 } else { sorted[sorted.len() / 2] };
    let total: f64 = times.iter().sum::<f64>().max(1e-12);
    let profile = engine.profile().cloned().unwrap_or_default();
    let kernels = Op::ALL
        .iter()
        .map(|&op| {
            let (f, bk) = (profile.forward[op as usize], profile.backward[op as usize]);
            KernelTime {
                kernel: op.name(),
                forward_ms: f / n * 1e3,
                backward_ms: bk / n * 1e3,
                share: (f + bk) / total,
            }
        })
        .collect();
    let flop = flops_per_token(&mcfg, t) * (b * t) as f64;
    // Measured before and after the steps, the best kept: a busy moment can only make it look lower.
    // a GPU's datasheet peak; on the CPU the better of two GEMM measurements around the run
    let peak = engine.peak_flops().map_or_else(|| peak_before.max(gemm_peak_gflops()), |f| f / 1e9);
    let achieved = flop / median / 1e9;
    Ok(BenchReport {
        implementation: "quietgpt",
        device: engine.device(),
        preset: preset.to_string(),
        attention: cfg.attention.to_string(),
        threads: rayon::current_num_threads(),
        iters,
        ms_per_iter_median: median * 1e3,
        ms_per_iter_min: sorted.first().copied().unwrap_or(0.0) * 1e3,
        tokens_per_s: (b * t) as f64 / median,
        final_loss: loss,
        peak_rss_mb: peak_rss,
        forward_ms: fwd / n * 1e3,
        backward_ms: bwd / n * 1e3,
        optimizer_ms: optim / n * 1e3,
        kernels,
        gflop_per_iter: flop / 1e9,
        achieved_gflops: achieved,
        gemm_peak_gflops: peak,
        mfu: achieved / peak,
    })
}

/// Peak resident set size of this process (VmHWM), in MB; 0 where /proc is not available.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

impl BenchReport {
    pub fn table(&self) -> String {
        let mut s =
            format!(
            "{} / {}: {:.2} ms/iter median ({:.2} min) over {} iters, {:.0} tokens/s, {} threads, peak RSS {:.0} MB\n\
             phases: forward {:.2} ms, backward {:.2} ms, optimizer {:.2} ms\n\
             {:.2} GFLOP/iter → {:.1} GFLOP/s; GEMM peak {:.1} GFLOP/s; MFU {:.1}%\n\
             {:<14} {:>10} {:>10} {:>7}\n",
            self.preset, self.attention, self.ms_per_iter_median, self.ms_per_iter_min, self.iters, self.tokens_per_s,
            self.threads, self.peak_rss_mb, self.forward_ms, self.backward_ms, self.optimizer_ms, self.gflop_per_iter,
            self.achieved_gflops, self.gemm_peak_gflops, self.mfu * 100.0, "kernel", "fwd ms", "bwd ms", "share"
        );
        for k in &self.kernels {
            s +=
                &format!("{:<14} {:>10.2} {:>10.2} {:>6.1}%\n", k.kernel, k.forward_ms, k.backward_ms, k.share * 100.0);
        }
        s
    }
}
