//! ReLU, the MLP activation of `activation = "relu"` (Guo et al. 2024's `F.relu`):
//! relu(x) = max(x, 0),   relu'(x) = 1 if x > 0 else 0   (0 at x = 0, as PyTorch's `threshold_backward`).
//! The same pair of functions as the GELU kernels (`gelu::Activation` chooses among them): the forward,
//! and backward's remake of the output with the derivative written over the input; the backward's
//! second half is `gelu::gelu_backward_from_grad`, d ← relu'(x)·d.

use super::real::Real;
use crate::multiversion;
use rayon::prelude::*;

const CHUNK: usize = 8192;

/// out (N) = relu(inp (N))
pub fn relu_forward<F: Real>(out: &mut [F], inp: &[F]) {
    out.par_chunks_mut(CHUNK).zip(inp.par_chunks(CHUNK)).for_each(|(o, x)| relu_forward_chunk(o, x));
}

multiversion! {
    fn relu_forward_chunk<F: Real>(out: &mut [F], inp: &[F]) {
        for (o, &x) in out.iter_mut().zip(inp) {
            *o = relu_of(x);
        }
    }
}

/// out (N) = relu(x) (bitwise what `relu_forward` gives), and x (N) ← relu'(x) in place.
pub fn relu_remake_with_grad<F: Real>(out: &mut [F], x_then_grad: &mut [F]) {
    out.par_chunks_mut(CHUNK)
        .zip(x_then_grad.par_chunks_mut(CHUNK))
        .for_each(|(o, x)| relu_remake_with_grad_chunk(o, x));
}

multiversion! {
    fn relu_remake_with_grad_chunk<F: Real>(out: &mut [F], x_then_grad: &mut [F]) {
        for (o, x) in out.iter_mut().zip(x_then_grad.iter_mut()) {
            *o = relu_of(*x);
            *x = if *x > F::ZERO { F::ONE } else { F::ZERO };
        }
    }
}

/// max(x, 0), with NaN passed through (as PyTorch's relu) rather than turned into 0.
#[inline(always)]
fn relu_of<F: Real>(x: F) -> F {
    if x < F::ZERO {
        F::ZERO
    } else {
        x
    }
}
