//! Softmax cross-entropy over the vocabulary, fused: loss_n = logsumexp(logits_n) − logits_n[target_n].

use super::real::{Real, ROW_CHUNK};
use rayon::prelude::*;

/// losses (N) from logits (N, V) and targets (N). (The model's mean is taken over the whole batch, after
/// the shards, in `Gpt::forward`.)
pub fn crossentropy_forward<F: Real>(losses: &mut [F], logits: &[F], targets: &[u32], n: usize, v: usize) {
    losses[..n].par_chunks_mut(ROW_CHUNK).enumerate().for_each(|(chunk, ls)| {
        for (r, l) in ls.iter_mut().enumerate() {
            let row = chunk * ROW_CHUNK + r;
            let x = &logits[row * v..(row + 1) * v];
            *l = logsumexp(x) - x[targets[row] as usize];
        }
    });
}

/// logits (N, V) ← ∂L/∂logits = (softmax(logits) − onehot(target)) · dloss, in place: backward needs
/// the logits only here, so the gradient takes their buffer, and the largest activation (N·V, 2.5 GB
/// for GPT-2's vocabulary at batch 12 × 1024) is not held twice. dloss is ∂L/∂loss_n, i.e. 1/N for the
/// mean (divided further by the gradient-accumulation steps).
pub fn crossentropy_backward<F: Real>(logits_then_dlogits: &mut [F], targets: &[u32], dloss: F, n: usize, v: usize) {
    logits_then_dlogits[..n * v].par_chunks_mut(v * ROW_CHUNK).enumerate().for_each(|(chunk, d)| {
        for (r, row) in d.chunks_exact_mut(v).enumerate() {
            let lse = logsumexp(row);
            for x in row.iter_mut() {
                *x = (*x - lse).exp() * dloss;
            }
            row[targets[chunk * ROW_CHUNK + r] as usize] -= dloss;
        }
    });
}

/// log Σ exp(x), shifted by the maximum.
pub fn logsumexp<F: Real>(x: &[F]) -> F {
    let m = x.iter().fold(F::NEG_INFINITY, |a, &b| a.max(b));
    let mut s = F::ZERO;
    for &xv in x {
        s += (xv - m).exp();
    }
    m + F::from_f64(s.to_f64().ln())
}
