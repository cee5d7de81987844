//! Gradient clipping and AdamW over the flat buffers, exactly as PyTorch's `clip_grad_norm_` and
//! single-tensor `torch.optim.AdamW` (nanoGPT's groups: decay on tensors of 2+ dimensions). The CPU
//! engine's optimizer kernels; the hyper-parameters are `engine::AdamWConfig`.

use super::real::Real;
use crate::engine::params::{ParamLayout, KINDS};
use crate::engine::AdamWConfig;
use crate::multiversion;
use rayon::prelude::*;

const CHUNK: usize = 8192;

/// Scale `grads` so that their global L2 norm is at most `max_norm` (no-op when max_norm = 0).
/// total = sqrt(Σ g²) (accumulated in f64, in a fixed order), coef = min(1, max_norm / (total + 1e-6)).
/// Returns the norm before clipping.
pub fn clip_grad_norm<F: Real>(grads: &mut [F], max_norm: f64) -> f64 {
    super::shard::on_pool(|| clip_on_pool(grads, max_norm))
}

fn clip_on_pool<F: Real>(grads: &mut [F], max_norm: f64) -> f64 {
    // A fixed number of parts, each summed on its own and then added in order: deterministic for any
    // thread count, and no allocation.
    const PARTS: usize = 64;
    let part = grads.len().div_ceil(PARTS).max(1);
    let mut partial = [0.0f64; PARTS];
    partial.par_iter_mut().enumerate().for_each(|(i, s)| {
        let (a, b) = ((i * part).min(grads.len()), ((i + 1) * part).min(grads.len()));
        *s = sum_squares::<F>(&grads[a..b]);
    });
    let sq: f64 = partial.iter().sum();
    let total = sq.sqrt();
    if max_norm > 0.0 {
        // the threshold as the engine's precision holds it, the coefficient formed in f64
        let max_norm = F::from_f64(max_norm).to_f64();
        let coef = F::from_f64((max_norm / (total + 1e-6)).min(1.0));
        grads.par_chunks_mut(CHUNK).for_each(|c| c.iter_mut().for_each(|g| *g *= coef));
    }
    total
}

/// The optimizer state: first and second moments (laid out as the parameters) and the step count.
#[derive(Clone, Debug)]
pub struct AdamW<F = f32> {
    pub m: Vec<F>,
    pub v: Vec<F>,
    pub step: u64,
}

impl<F: Real> AdamW<F> {
    pub fn new(layout: &ParamLayout) -> Self {
        AdamW { m: vec![F::ZERO; layout.total], v: vec![F::ZERO; layout.total], step: 0 }
    }

    /// One AdamW step at learning rate `lr`:
    ///   p ← p·(1 − lr·wd)   (decayed tensors only)
    ///   m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²
    ///   p ← p − lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + eps)
    /// The hyper-parameters are first rounded to the engine's precision F; the scalars are then formed
    /// in f64 as PyTorch forms them (Python floats) and used by the F kernels.
    pub fn update(&mut self, params: &mut [F], grads: &[F], layout: &ParamLayout, lr: f64, hp: &AdamWConfig) {
        self.step += 1;
        let t = self.step as i32;
        let r = |x: f64| F::from_f64(x);
        let (beta1, beta2) = (r(hp.beta1), r(hp.beta2));
        let bc1 = 1.0 - beta1.to_f64().powi(t);
        let bc2_sqrt = r((1.0 - beta2.to_f64().powi(t)).sqrt());
        let step_size = r(lr / bc1);
        let decay = r(1.0 - lr * r(hp.weight_decay).to_f64());
        let (m, v) = (&mut self.m, &mut self.v);
        super::shard::on_pool(|| {
            for kind in KINDS {
                let range = layout.range(kind);
                if range.is_empty() {
                    continue;
                }
                // Tensors of 2+ dimensions decay; a factor of exactly 1 leaves the others untouched.
                let d = if layout.decays(kind) { decay } else { F::ONE };
                let k = AdamWConsts {
                    decay: d,
                    b1_rest: F::ONE - beta1,
                    b2: beta2,
                    b2_rest: F::ONE - beta2,
                    bc2_sqrt,
                    eps: r(hp.eps),
                    step_size,
                };
                params[range.clone()]
                    .par_chunks_mut(CHUNK)
                    .zip(grads[range.clone()].par_chunks(CHUNK))
                    .zip(m[range.clone()].par_chunks_mut(CHUNK))
                    .zip(v[range.clone()].par_chunks_mut(CHUNK))
                    .for_each(|(((p, g), m), v)| adamw_chunk::<F>(p, g, m, v, &k));
            }
        });
    }
}

/// The per-element constants of one AdamW step.
struct AdamWConsts<F> {
    decay: F,
    b1_rest: F,
    b2: F,
    b2_rest: F,
    bc2_sqrt: F,
    eps: F,
    step_size: F,
}

multiversion! {
    fn adamw_chunk<F: Real>(p: &mut [F], g: &[F], m: &mut [F], v: &mut [F], k: &AdamWConsts<F>) {
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
    fn sum_squares<F: Real>(g: &[F]) -> f64 {
        let mut acc = [0.0f64; 8];
        let c = g.chunks_exact(8);
        let mut s = 0.0;
        for x in c.remainder() {
            s += x.to_f64() * x.to_f64();
        }
        for x in c {
            for k in 0..8 {
                acc[k] += x[k].to_f64() * x[k].to_f64();
            }
        }
        acc.iter().sum::<f64>() + s
    }
}
