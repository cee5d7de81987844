//! The self-test's benchmark: GPT-2 124M (12/12/768, T 1024, vocab 50304, biases) in bf16, a whole
//! training step (zero_grad, forward, backward, clip, AdamW) per timing, for softmax and quiet; and
//! beside it PyTorch nanoGPT on the same card (`bench/nanogpt_bench.py`, built into the binary, run
//! with the given python when torch imports). MFU is nanoGPT's `estimate_mfu`.

use super::super::super::engine::PlanEngine;
use super::super::super::plan::Precision;
use super::Device;
use crate::config::{AttentionKind, ModelConfig};
use crate::engine::params::ParamLayout;
use crate::engine::{AdamWConfig, Batch, Engine, OptimConfig};
use crate::rng::Rng;
use crate::{Error, Result};
use serde::Serialize;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The PyTorch side, as it is in the repository.
pub const NANOGPT_BENCH: &str = include_str!("../../../../../bench/nanogpt_bench.py");

pub fn gpt2_124m(kind: AttentionKind) -> ModelConfig {
    ModelConfig::new(12, 12, 768, 1024, 50304, true, 0.0, kind)
}

/// nanoGPT's `estimate_mfu` flops of one step of `b` sequences of block_size tokens: (6N + 12·L·H·Q·T)
/// per token, N the parameters without the position embedding (`get_num_params(non_embedding=True)`).
pub fn flops_per_step(cfg: &ModelConfig, b: usize) -> f64 {
    let n = ParamLayout::new(cfg).total - cfg.block_size * cfg.n_embd;
    let (l, h, q, t) = (cfg.n_layer, cfg.n_head, cfg.n_embd / cfg.n_head, cfg.block_size);
    (6.0 * n as f64 + 12.0 * (l * h * q * t) as f64) * t as f64 * b as f64
}

/// The card's dense bf16 peak in TFLOPS (nanoGPT's A100 figure, and Hopper's), by its name.
pub fn peak_tflops(gpu: &str) -> Option<f64> {
    super::super::peak_tflops(gpu, Precision::Bf16)
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    pub attention: String,
    pub batch_size: usize,
    pub block_size: usize,
    pub vocab_size: usize,
    pub ms_per_step: f64,
    pub ms_per_step_min: f64,
    pub tokens_per_s: f64,
    pub flops_per_step: f64,
    pub mfu: Option<f64>,
    /// The first step (kernel loading, cuBLASLt's algorithm choices).
    pub first_step_s: f64,
    pub loss: f64,
    pub plan_gib: f64,
}

/// Times `iters` steps (after `warmup`) of the model `cfg` (GPT-2 124M in the self-test) at batch `b`
/// and T = block_size on the device in bf16.
pub fn ours<D: Device>(
    dev: &D,
    cfg: &ModelConfig,
    b: usize,
    warmup: usize,
    iters: usize,
    peak: Option<f64>,
) -> Result<BenchRow> {
    let cfg = cfg.clone();
    let mut e = PlanEngine::new(cfg.clone(), b, dev.executor(Precision::Bf16)?)?;
    let plan_gib = e.plan().bytes(Precision::Bf16) as f64 / (1u64 << 30) as f64;
    let mut params = vec![0.0f32; e.layout().total];
    crate::engine::params::init_params(&cfg, e.layout(), &mut Rng::new(0, 1), &mut params);
    e.write(crate::engine::Buffer::Params, &params)?;
    let t = cfg.block_size;
    let mut rng = Rng::new(1, 2);
    let v = cfg.vocab_size.min(50257) as u64;
    let idx: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();
    let tgt: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();
    let opt = OptimConfig::AdamW(AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 });
    let step = |e: &mut PlanEngine<D::E>| -> Result<f64> {
        e.zero_grad();
        let loss = e.forward(Batch { idx: &idx, targets: Some(&tgt), b, t }, None)?.unwrap_or(f64::NAN);
        e.backward(1.0)?;
        e.step(6e-4, &opt, 1.0)?;
        dev.synchronize(e.executor())?;
        Ok(loss)
    };
    let t0 = Instant::now();
    let mut loss = step(&mut e)?;
    let first_step_s = t0.elapsed().as_secs_f64();
    for _ in 0..warmup {
        step(&mut e)?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let t1 = Instant::now();
        loss = step(&mut e)?;
        times.push(t1.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let flops = flops_per_step(&cfg, b);
    Ok(BenchRow {
        attention: cfg.attention.name().into(),
        batch_size: b,
        block_size: t,
        vocab_size: cfg.vocab_size,
        ms_per_step: median * 1e3,
        ms_per_step_min: times[0] * 1e3,
        tokens_per_s: (b * t) as f64 / median,
        flops_per_step: flops,
        mfu: peak.map(|p| flops / median / (p * 1e12)),
        first_step_s,
        loss,
        plan_gib,
    })
}

/// Runs `python` on the built-in `nanogpt_bench.py` with `args`, killed after `timeout`; its last
/// stdout line as JSON, or an object saying why there is none.
pub fn pytorch(python: &str, args: &[String], timeout: Duration) -> serde_json::Value {
    let fail = |why: String| serde_json::json!({ "impl": "pytorch-nanogpt", "skipped": why });
    let probe = Command::new(python).args(["-c", "import torch; print(torch.__version__)"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => return fail(format!("{python} cannot import torch: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => return fail(format!("cannot run {python}: {e}")),
    }
    let script = std::env::temp_dir().join(format!("quietgpt-nanogpt-bench-{}.py", std::process::id()));
    if let Err(e) = std::fs::write(&script, NANOGPT_BENCH) {
        return fail(format!("{}: {e}", script.display()));
    }
    let child = Command::new(python).arg(&script).args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot run {python}: {e}")),
    };
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(200)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let out = reader.join().unwrap_or_default();
    let _ = std::fs::remove_file(&script);
    let last = out.lines().rev().find(|l| l.trim_start().starts_with('{'));
    match (status, last.map(serde_json::from_str::<serde_json::Value>)) {
        (_, Some(Ok(v))) => v,
        (None, _) => fail(format!("killed after {} s", timeout.as_secs())),
        (Some(s), _) => fail(format!("{python} nanogpt_bench.py exited with {s} and no JSON")),
    }
}

/// An error naming the configuration, for the report.
pub fn failed(kind: AttentionKind, b: usize, e: &Error) -> String {
    format!("bench {} B={b}: {e}", kind.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nanoGPT's numbers: GPT-2 124M at vocab 50304 has 124,475,904 parameters, 123.69M without wpe,
    /// and 0.855 GFLOP per token at T = 1024 (875.9 GFLOP per sequence, as nanogpt_bench.py computes).
    #[test]
    fn flops_and_peaks() {
        let cfg = gpt2_124m(AttentionKind::Softmax);
        assert_eq!(ParamLayout::new(&cfg).total, 124_475_904);
        assert_eq!(flops_per_step(&cfg, 1), 875_912_232_960.0);
        assert_eq!(flops_per_step(&cfg, 16), 16.0 * 875_912_232_960.0);
        assert_eq!(peak_tflops("NVIDIA H200"), Some(989.0));
        assert_eq!(peak_tflops("NVIDIA H100 80GB HBM3"), Some(989.0));
        assert_eq!(peak_tflops("NVIDIA A100-SXM4-80GB"), Some(312.0));
        assert_eq!(peak_tflops("NVIDIA GeForce RTX 4090"), None);
        // f32 with TF32 off: the CUDA cores' rate.
        assert_eq!(super::super::super::peak_tflops("NVIDIA H200", Precision::F32), Some(67.0));
        assert_eq!(super::super::super::peak_tflops("NVIDIA A100-PCIE-40GB", Precision::F32), Some(19.5));
    }

    /// Without a python that has torch, the PyTorch side is a reason, not an error; the built-in
    /// script is the repository's.
    #[test]
    fn pytorch_without_torch_is_skipped_with_the_reason() {
        let v = pytorch("/nonexistent/python3", &[], Duration::from_secs(5));
        assert!(v["skipped"].as_str().unwrap().contains("cannot run /nonexistent/python3"), "{v}");
        assert!(NANOGPT_BENCH.contains("def run_one") && NANOGPT_BENCH.contains("quiet-sdpa_zero_kv"));
    }
}
