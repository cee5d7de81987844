//! Inverted dropout with counter-based masks: element i of site s is kept iff
//! hash(key_s, i) ≥ p, and kept values are scaled by 1/(1−p). The mask is a pure function of
//! (seed, step, micro-step, site, i), so it is the same for any thread count and is recomputed in
//! backward instead of stored.

use super::cpu::real::Real;
use crate::rng::{hash_uniform, splitmix64};
use rayon::prelude::*;

/// Dropout for one forward/backward pass: probability and the key of this pass.
#[derive(Clone, Copy, Debug)]
pub struct Dropout {
    pub p: f32,
    pub key: u64,
}

impl Dropout {
    /// The key of one micro-step of one training step, from the run's dropout seed.
    pub fn new(p: f32, seed: u64, step: u64, micro: u64) -> Option<Dropout> {
        (p > 0.0).then(|| Dropout { p, key: splitmix64(seed ^ splitmix64(step.wrapping_mul(1 << 20) ^ micro)) })
    }

    /// The key of one site (layer × place) within the pass.
    #[inline]
    pub fn site(&self, site: u64) -> u64 {
        splitmix64(self.key ^ site.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// mask·scale for element `i` of the site keyed `key`: 0 or 1/(1−p).
    #[inline]
    pub fn factor<F: Real>(&self, key: u64, i: u64) -> F {
        if hash_uniform(key, i) >= self.p {
            F::from_f64(1.0 / (1.0 - self.p as f64))
        } else {
            F::ZERO
        }
    }

    /// x (N) *= mask·scale in place, for the part of a site's tensor that starts at element `first` (a shard
    /// of the batch). Used in forward on activations and in backward on their gradients.
    pub fn apply_from<F: Real>(&self, site: u64, first: usize, x: &mut [F]) {
        let key = self.site(site);
        const CHUNK: usize = 4096;
        x.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, xs)| {
            for (j, v) in xs.iter_mut().enumerate() {
                *v *= self.factor::<F>(key, (first + ci * CHUNK + j) as u64);
            }
        });
    }
}

/// x ← drop(x) for the part of site `s` that starts at element `first` (a shard of the batch); nothing
/// without dropout.
pub fn dropout_forward<F: Real>(d: Option<&Dropout>, s: u64, first: usize, x: &mut [F]) {
    if let Some(d) = d {
        d.apply_from(s, first, x);
    }
}

/// Backward of `dropout_forward` in place: g ← g ⊙ mask·scale (the mask is its own adjoint).
pub fn dropout_backward_in_place<F: Real>(d: Option<&Dropout>, s: u64, first: usize, g: &mut [F]) {
    dropout_forward(d, s, first, g)
}

/// Backward of `dropout_forward` where the incoming gradient `g` must stay as it is (∂L/∂residual feeds
/// the residual path too): the dropped gradient goes to `buf` and is returned; without dropout, `g`.
pub fn dropout_backward<'a, F: Real>(
    buf: &'a mut [F],
    g: &'a [F],
    d: Option<&Dropout>,
    s: u64,
    first: usize,
) -> &'a [F] {
    match d {
        None => g,
        Some(d) => {
            let n = g.len();
            buf[..n].copy_from_slice(g);
            d.apply_from(s, first, &mut buf[..n]);
            &buf[..n]
        }
    }
}

/// The places where nanoGPT applies dropout; combined with the layer index into a site number.
pub enum Site {
    Embedding,
    AttentionWeights,
    AttentionOut,
    MlpOut,
}

pub fn site(layer: usize, s: Site) -> u64 {
    (layer as u64) * 4 + s as u64 + 1
}
