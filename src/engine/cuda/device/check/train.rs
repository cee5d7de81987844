//! The self-test's training check, as llm.c's test_gpt2.cu: 10 AdamW steps of a small model from the
//! same initialisation and batches on the CPU engine, the CUDA engine in f32 (every loss within 1e-4 of
//! the CPU's) and in bf16 (within 0.05), and a second bf16 run that must be bitwise equal to the first
//! (losses and final parameters: the same algorithms and reduction orders every run).

use super::super::super::engine::PlanEngine;
use super::super::super::plan::Precision;
use super::compare::bitwise_equal;
use super::Device;
use crate::config::{AttentionKind, ModelConfig};
use crate::engine::params::init_params;
use crate::engine::{create, AdamWConfig, Batch, Buffer, Engine, OptimConfig};
use crate::rng::Rng;
use crate::Result;
use serde::Serialize;
use std::time::Instant;

pub const STEPS: usize = 10;
pub const F32_LOSS_TOL: f64 = 1e-4;
pub const BF16_LOSS_TOL: f64 = 0.05;

/// The model: 2 layers, 4 heads, C 64, T 67 of 80, V 97, biases on, batch 4.
pub fn model(kind: AttentionKind) -> ModelConfig {
    ModelConfig::new(2, 4, 64, 80, 97, true, 0.0, kind)
}
const B: usize = 4;
const T: usize = 67;

/// Step `s`'s batch: rows that follow x' = (5x + 3) mod V from a random start (a rule the model can
/// learn, so the loss moves), targets the next token.
pub fn batch(s: usize, v: usize) -> (Vec<u32>, Vec<u32>) {
    let mut rng = Rng::new(11, 100 + s as u64);
    let (mut idx, mut tgt) = (Vec::with_capacity(B * T), Vec::with_capacity(B * T));
    for _ in 0..B {
        let mut x = rng.below(v as u64) as usize;
        for _ in 0..T {
            idx.push(x as u32);
            x = (5 * x + 3) % v;
            tgt.push(x as u32);
        }
    }
    (idx, tgt)
}

/// Trains `engine` for `STEPS` steps; returns the losses and the final parameters.
fn train(engine: &mut dyn Engine, params: &[f32]) -> Result<(Vec<f64>, Vec<f32>)> {
    engine.write(Buffer::Params, params)?;
    let opt = OptimConfig::AdamW(AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 });
    let v = engine.config().vocab_size;
    let mut losses = Vec::new();
    for s in 0..STEPS {
        let (idx, tgt) = batch(s, v);
        engine.zero_grad();
        let loss = engine.forward(Batch { idx: &idx, targets: Some(&tgt), b: B, t: T }, None)?.unwrap_or(f64::NAN);
        engine.backward(1.0)?;
        engine.step(1e-3, &opt, 1.0)?;
        losses.push(loss);
    }
    Ok((losses, engine.snapshot(Buffer::Params)?))
}

#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    pub attention: String,
    pub losses_cpu: Vec<f64>,
    pub losses_cuda_f32: Vec<f64>,
    pub losses_cuda_bf16: Vec<f64>,
    pub max_diff_f32: f64,
    pub max_diff_bf16: f64,
    pub bf16_runs_bitwise_equal: bool,
    pub seconds: f64,
    pub ok: bool,
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| if x.is_finite() && y.is_finite() { (x - y).abs() } else { f64::INFINITY })
        .fold(0.0, f64::max)
}

pub fn run<D: Device>(dev: &D, kind: AttentionKind) -> Result<TrainReport> {
    let t0 = Instant::now();
    let cfg = model(kind);
    let mut cpu = create("cpu", cfg.clone(), B)?;
    let mut params = vec![0.0f32; cpu.layout().total];
    init_params(&cfg, cpu.layout(), &mut Rng::new(5, 1), &mut params);
    let (losses_cpu, _) = train(cpu.as_mut(), &params)?;
    let gpu = |p: Precision| -> Result<PlanEngine<D::E>> { PlanEngine::new(cfg.clone(), B, dev.executor(p)?) };
    let (losses_f32, _) = train(&mut gpu(Precision::F32)?, &params)?;
    let (losses_bf16, params_bf16) = train(&mut gpu(Precision::Bf16)?, &params)?;
    let (again, params_again) = train(&mut gpu(Precision::Bf16)?, &params)?;
    let bitwise = losses_bf16.iter().zip(&again).all(|(a, b)| a.to_bits() == b.to_bits())
        && bitwise_equal(&params_bf16, &params_again);
    let (d32, d16) = (max_diff(&losses_f32, &losses_cpu), max_diff(&losses_bf16, &losses_cpu));
    Ok(TrainReport {
        attention: kind.name().into(),
        ok: d32 <= F32_LOSS_TOL && d16 <= BF16_LOSS_TOL && bitwise,
        losses_cpu,
        losses_cuda_f32: losses_f32,
        losses_cuda_bf16: losses_bf16,
        max_diff_f32: d32,
        max_diff_bf16: d16,
        bf16_runs_bitwise_equal: bitwise,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batches are a learnable rule and in range, and the CPU engine's loss falls over the 10
    /// steps (so that the comparison is of a moving loss, not of a plateau).
    #[test]
    fn batches_and_a_falling_cpu_loss() {
        let (idx, tgt) = batch(0, 97);
        assert_eq!(idx.len(), B * T);
        assert_eq!(tgt[0] as usize, (5 * idx[0] as usize + 3) % 97);
        assert_eq!(idx[1], tgt[0]);
        assert_eq!(batch(3, 97), batch(3, 97));
        let cfg = model(AttentionKind::Quiet);
        let mut cpu = create("cpu", cfg.clone(), B).unwrap();
        let mut params = vec![0.0f32; cpu.layout().total];
        init_params(&cfg, cpu.layout(), &mut Rng::new(5, 1), &mut params);
        let (losses, _) = train(cpu.as_mut(), &params).unwrap();
        assert!(losses[STEPS - 1] < losses[0] - 0.1, "{losses:?}");
        assert_eq!(max_diff(&[1.0, f64::NAN], &[1.0, 1.0]), f64::INFINITY);
    }
}
