//! Gradient clipping and AdamW over the flat buffers, exactly as PyTorch's
//! `clip_grad_norm_` and single-tensor `torch.optim.AdamW` (nanoGPT's groups: decay on 2-D tensors).

use crate::model::params::{ParamLayout, KINDS};
use crate::model::Gpt;
use crate::multiversion;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

const CHUNK: usize = 8192;

/// Scale `grads` so that their global L2 norm is at most `max_norm` (no-op when max_norm = 0).
/// total = sqrt(Σ g²) (accumulated in f64, in a fixed order), coef = min(1, max_norm / (total + 1e-6)).
/// Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [f32], max_norm: f32) -> f64 {
    crate::model::gpt::on_pool(|| clip_on_pool(grads, max_norm))
}

fn clip_on_pool(grads: &mut [f32], max_norm: f32) -> f64 {
    // A fixed number of parts, each summed on its own and then added in order: deterministic for any
    // thread count, and no allocation.
    const PARTS: usize = 64;
    let part = grads.len().div_ceil(PARTS).max(1);
    let mut partial = [0.0f64; PARTS];
    partial.par_iter_mut().enumerate().for_each(|(i, s)| {
        let (a, b) = ((i * part).min(grads.len()), ((i + 1) * part).min(grads.len()));
        *s = sum_squares::<f32>(&grads[a..b]);
    });
    let sq: f64 = partial.iter().sum();
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
        let layout = &model.layout;
        let (params, grads) = (&mut model.params, &model.grads);
        let (m, v) = (&mut self.m, &mut self.v);
        crate::model::gpt::on_pool(|| {
            for kind in KINDS {
                let r = layout.range(kind);
                if r.is_empty() {
                    continue;
                }
                // Tensors of 2+ dimensions decay; a factor of exactly 1 leaves the others untouched.
                let d = if layout.decays(kind) { decay } else { 1.0 };
                let k = AdamWConsts {
                    decay: d,
                    b1_rest: 1.0 - hp.beta1,
                    b2: hp.beta2,
                    b2_rest: 1.0 - hp.beta2,
                    bc2_sqrt,
                    eps: hp.eps,
                    step_size,
                };
                params[r.clone()]
                    .par_chunks_mut(CHUNK)
                    .zip(grads[r.clone()].par_chunks(CHUNK))
                    .zip(m[r.clone()].par_chunks_mut(CHUNK))
                    .zip(v[r.clone()].par_chunks_mut(CHUNK))
                    .for_each(|(((p, g), m), v)| adamw_chunk::<f32>(p, g, m, v, &k));
            }
        });
    }
}

/// The per-element constants of one AdamW step.
struct AdamWConsts {
    decay: f32,
    b1_rest: f32,
    b2: f32,
    b2_rest: f32,
    bc2_sqrt: f32,
    eps: f32,
    step_size: f32,
}

multiversion! {
    fn adamw_chunk<F: Real>(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &AdamWConsts) {
        for i in 0..p.len() {
            p[i] *= k.decay;
            m[i] += (g[i] - m[i]) * k.b1_rest; // torch: exp_avg.lerp_(grad, 1 − β1)
            v[i] = v[i] * k.b2 + k.b2_rest * g[i] * g[i];
            let denom = v[i].sqrt() / k.bc2_sqrt + k.eps;
            p[i] += -k.step_size * (m[i] / denom);
        }
    }
}

multiversion! {
    /// Σ g² in f64, with a fixed set of partial sums.
    fn sum_squares<F: Real>(g: &[f32]) -> f64 {
        let mut acc = [0.0f64; 8];
        let c = g.chunks_exact(8);
        let mut s = 0.0;
        for x in c.remainder() {
            s += (*x as f64) * (*x as f64);
        }
        for x in c {
            for k in 0..8 {
                acc[k] += (x[k] as f64) * (x[k] as f64);
            }
        }
        acc.iter().sum::<f64>() + s
    }
}
