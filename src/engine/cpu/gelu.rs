//! GELU, exact erf form as PyTorch's `nn.GELU()` (nanoGPT's, `gelu = "erf"`, the default):
//! gelu(x) = x·Φ(x) = ½·x·(1 + erf(x/√2)),   gelu'(x) = Φ(x) + x·φ(x),   φ(x) = exp(−x²/2)/√(2π);
//! and the tanh approximation of GPT-2 / llm.c (Hugging Face's `gelu_new`, `gelu = "tanh"`), below the
//! erf form with the same pair of functions. `Activation::of` chooses the MLP's activation among them
//! and ReLU (`relu`, `activation = "relu"`).

use super::real::Real;
use super::relu::{relu_forward, relu_remake_with_grad};
use crate::config::{ActivationKind, GeluKind};
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

// ------------------------------------------------------------------------------------------ tanh form
//
// gelu(x) = ½x·(1 + tanh(u)),  u = √(2/π)·(x + 0.044715·x³)  (GPT-2's `gelu_new`)
//         = x·s,  s = sigmoid(2u) = 1 / (1 + exp(−2u))      (½(1 + tanh u) = sigmoid(2u): no cancellation)
// gelu'(x) = s + x·s·(1 − s)·2u',  u' = √(2/π)·(1 + 3·0.044715·x²)   (½(1 − tanh²u) = 2s(1 − s))

const SQRT_2_OVER_PI: f64 = 0.7978845608028654; // √(2/π)
const GELU_TANH_CUBIC: f64 = 0.044715;

/// out (N) = gelu_tanh(inp (N))
pub fn gelu_tanh_forward<F: Real>(out: &mut [F], inp: &[F]) {
    out.par_chunks_mut(CHUNK).zip(inp.par_chunks(CHUNK)).for_each(|(o, x)| gelu_tanh_forward_chunk(o, x));
}

multiversion! {
    fn gelu_tanh_forward_chunk<F: Real>(out: &mut [F], inp: &[F]) {
        for (o, &x) in out.iter_mut().zip(inp) {
            *o = x * gelu_tanh_sigmoid(x);
        }
    }
}

/// `gelu_remake_with_grad` for the tanh form: out (N) = gelu_tanh(x) (bitwise what `gelu_tanh_forward`
/// gives) and x (N) ← gelu_tanh'(x) in place, from one exp.
pub fn gelu_tanh_remake_with_grad<F: Real>(out: &mut [F], x_then_grad: &mut [F]) {
    out.par_chunks_mut(CHUNK)
        .zip(x_then_grad.par_chunks_mut(CHUNK))
        .for_each(|(o, x)| gelu_tanh_remake_with_grad_chunk(o, x));
}

multiversion! {
    fn gelu_tanh_remake_with_grad_chunk<F: Real>(out: &mut [F], x_then_grad: &mut [F]) {
        for (o, x) in out.iter_mut().zip(x_then_grad.iter_mut()) {
            let v = *x;
            let s = gelu_tanh_sigmoid(v);
            *o = v * s;
            let du2 = F::from_f64(2.0 * SQRT_2_OVER_PI)
                * (v * v).mul_add(F::from_f64(3.0 * GELU_TANH_CUBIC), F::ONE); // 2u'
            *x = (v * s * (F::ONE - s)).mul_add(du2, s);
        }
    }
}

/// s = sigmoid(2u) = ½(1 + tanh u), u = √(2/π)(x + 0.044715x³).
#[inline(always)]
fn gelu_tanh_sigmoid<F: Real>(x: F) -> F {
    let u = F::from_f64(SQRT_2_OVER_PI) * (x * x * x).mul_add(F::from_f64(GELU_TANH_CUBIC), x);
    F::ONE / (F::ONE + (F::from_f64(-2.0) * u).exp())
}

/// The kernels of one MLP activation: the forward and the backward's remake-with-derivative (the
/// backward's second half, `gelu_backward_from_grad`, is the same for every activation).
pub struct Activation<F> {
    pub forward: fn(&mut [F], &[F]),
    pub remake_with_grad: fn(&mut [F], &mut [F]),
}

impl<F: Real> Activation<F> {
    /// The kernels of `activation`; a GELU in the form `gelu`.
    pub fn of(activation: ActivationKind, gelu: GeluKind) -> Activation<F> {
        match (activation, gelu) {
            (ActivationKind::Gelu, GeluKind::Erf) => {
                Activation { forward: gelu_forward, remake_with_grad: gelu_remake_with_grad }
            }
            (ActivationKind::Gelu, GeluKind::Tanh) => {
                Activation { forward: gelu_tanh_forward, remake_with_grad: gelu_tanh_remake_with_grad }
            }
            (ActivationKind::Relu, _) => Activation { forward: relu_forward, remake_with_grad: relu_remake_with_grad },
        }
    }
}
