//! GELU, exact erf form as PyTorch's `nn.GELU()` (not the tanh approximation of GPT-2 / llm.c):
//! gelu(x) = x·Φ(x) = ½·x·(1 + erf(x/√2)),   gelu'(x) = Φ(x) + x·φ(x),   φ(x) = exp(−x²/2)/√(2π).

use super::real::Real;
use crate::multiversion;
use rayon::prelude::*;
use std::f64::consts::FRAC_1_SQRT_2;

const CHUNK: usize = 8192;

/// out (N) = gelu(inp (N))
pub fn gelu_forward<F: Real>(out: &mut [F], inp: &[F]) {
    out.par_chunks_mut(CHUNK).zip(inp.par_chunks(CHUNK)).for_each(|(o, x)| gelu_forward_chunk(o, x));
}

multiversion! {
    fn gelu_forward_chunk<F: Real>(out: &mut [F], inp: &[F]) {
        for (o, &x) in out.iter_mut().zip(inp) {
            *o = gelu_of(x, (x * F::from_f64(FRAC_1_SQRT_2)).erf());
        }
    }
}

/// out (N) = gelu(x), and x (N) ← gelu'(x) in place: backward's remake of the forward's output (bitwise
/// the same) together with the derivative, both from one erf, written over the input that backward no
/// longer needs (a buffer fewer than keeping both, and one erf fewer than remaking then differentiating).
pub fn gelu_remake_with_grad<F: Real>(out: &mut [F], x_then_grad: &mut [F]) {
    out.par_chunks_mut(CHUNK)
        .zip(x_then_grad.par_chunks_mut(CHUNK))
        .for_each(|(o, x)| gelu_remake_with_grad_chunk(o, x));
}

multiversion! {
    fn gelu_remake_with_grad_chunk<F: Real>(out: &mut [F], x_then_grad: &mut [F]) {
        for (o, x) in out.iter_mut().zip(x_then_grad.iter_mut()) {
            let (erf, gauss) = (*x * F::from_f64(FRAC_1_SQRT_2)).erf_and_gauss();
            *o = gelu_of(*x, erf);
            *x = gelu_grad_of(*x, erf, gauss);
        }
    }
}

/// d (N) = gelu'(x) · d in place, from the derivative that `gelu_remake_with_grad` left: `gelu_backward`
/// into a zeroed buffer, without a second buffer.
pub fn gelu_backward_from_grad<F: Real>(d: &mut [F], grad: &[F]) {
    d.par_chunks_mut(CHUNK).zip(grad.par_chunks(CHUNK)).for_each(|(d, gr)| gelu_backward_from_grad_chunk(d, gr));
}

multiversion! {
    fn gelu_backward_from_grad_chunk<F: Real>(d: &mut [F], grad: &[F]) {
        for (d, &gr) in d.iter_mut().zip(grad) {
            *d *= gr;
        }
    }
}

/// gelu(x) = ½x·(1 + erf), erf = erf(x/√2).
#[inline(always)]
fn gelu_of<F: Real>(x: F, erf: F) -> F {
    let hx = F::from_f64(0.5) * x;
    hx.mul_add(erf, hx)
}

/// gelu'(x) = Φ(x) + x·φ(x), from erf = erf(x/√2) and gauss = exp(−x²/2) = φ(x)·√(2π), which erf's
/// approximation computes anyway.
#[inline(always)]
fn gelu_grad_of<F: Real>(x: F, erf: F, gauss: F) -> F {
    let inv_sqrt_2pi = F::from_f64(0.5 * std::f64::consts::FRAC_2_SQRT_PI * FRAC_1_SQRT_2);
    let cdf = F::from_f64(0.5) * (F::ONE + erf);
    x.mul_add(gauss * inv_sqrt_2pi, cdf)
}
