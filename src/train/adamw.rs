//! Gradient clipping and AdamW over the flat buffers, exactly as PyTorch's
//! `clip_grad_norm_` and single-tensor `torch.optim.AdamW` (nanoGPT's groups: decay on 2-D tensors).

use crate::model::params::{ParamLayout, KINDS};
use crate::model::Gpt;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

const CHUNK: usize = 8192;

/// Scale `grads` so that their global L2 norm is at most `max_norm` (no-op when max_norm = 0).
/// total = sqrt(Σ g²) (accumulated in f64, in a fixed order), coef = min(1, max_norm / (total + 1e-6)).
/// Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [f32], max_norm: f32) -> f64 {
    let sq: f64 = grads
        .par_chunks(CHUNK)
        .map(|c| c.iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>())
        .collect::<Vec<f64>>() // one f64 per chunk, summed in order below: deterministic
        .iter()
        .sum();
    let total = sq.sqrt();
    if max_norm > 0.0 {
        let coef = (max_norm as f64 / (total + 1e-6)).min(1.0) as f32;
        grads.par_chunks_mut(CHUNK).for_each(|c| c.iter_mut().for_each(|g| *g *= coef));
    }
    total
}

#[derive(Clone, Copy, Debug)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

/// The optimizer state: first and second moments (laid out as the parameters) and the step count.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdamW {
    #[serde(skip)]
    pub m: Vec<f32>,
    #[serde(skip)]
    pub v: Vec<f32>,
    pub step: u64,
}

impl AdamW {
    pub fn new(layout: &ParamLayout) -> Self {
        AdamW { m: vec![0.0; layout.total], v: vec![0.0; layout.total], step: 0 }
    }

    /// One AdamW step at learning rate `lr`:
    ///   p ← p·(1 − lr·wd)   (decayed tensors only)
    ///   m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²
    ///   p ← p − lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + eps)
    pub fn update(&mut self, model: &mut Gpt<f32>, lr: f32, hp: &AdamWConfig) {
        self.step += 1;
        let t = self.step as i32;
        // Scalars as PyTorch forms them: Python floats (f64), used by f32 kernels.
        let bc1 = 1.0 - (hp.beta1 as f64).powi(t);
        let bc2_sqrt = (1.0 - (hp.beta2 as f64).powi(t)).sqrt();
        let step_size = (lr as f64 / bc1) as f32;
        let bc2_sqrt = bc2_sqrt as f32;
        let decay = (1.0 - lr as f64 * hp.weight_decay as f64) as f32;
        let (b1, b2, eps) = (hp.beta1, hp.beta2, hp.eps);
        let one_minus_b1 = 1.0 - b1;
        let one_minus_b2 = 1.0 - b2;
        let layout = &model.layout;
        let (params, grads) = (&mut model.params, &model.grads);
        for kind in KINDS {
            let r = layout.range(kind);
            if r.is_empty() {
                continue;
            }
            let decays = kind.shape(&model.config).len() >= 2;
            params[r.clone()]
                .par_chunks_mut(CHUNK)
                .zip(grads[r.clone()].par_chunks(CHUNK))
                .zip(self.m[r.clone()].par_chunks_mut(CHUNK))
                .zip(self.v[r.clone()].par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| {
                    for i in 0..p.len() {
                        if decays {
                            p[i] *= decay;
                        }
                        m[i] += (g[i] - m[i]) * one_minus_b1; // torch: exp_avg.lerp_(grad, 1 − β1)
                        v[i] = v[i] * b2 + one_minus_b2 * g[i] * g[i];
                        let denom = v[i].sqrt() / bc2_sqrt + eps;
                        p[i] += -step_size * (m[i] / denom);
                    }
                });
        }
    }
}
