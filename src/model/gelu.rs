//! GELU, exact erf form as PyTorch's `nn.GELU()` (not the tanh approximation of GPT-2 / llm.c):
//! gelu(x) = x·Φ(x) = ½·x·(1 + erf(x/√2)),   gelu'(x) = Φ(x) + x·φ(x),   φ(x) = exp(−x²/2)/√(2π).

use super::real::Real;
use crate::multiversion;
use rayon::prelude::*;

const CHUNK: usize = 8192;

/// out (N) = gelu(inp (N))
pub fn gelu_forward<F: Real>(out: &mut [F], inp: &[F]) {
    out.par_chunks_mut(CHUNK).zip(inp.par_chunks(CHUNK)).for_each(|(o, x)| gelu_forward_chunk(o, x));
}

multiversion! {
    fn gelu_forward_chunk<F: Real>(out: &mut [F], inp: &[F]) {
        let half = F::from_f64(0.5);
        let inv_sqrt2 = F::from_f64(std::f64::consts::FRAC_1_SQRT_2);
        for (o, &x) in out.iter_mut().zip(inp) {
            let erf = (x * inv_sqrt2).erf();
            *o = (half * x).mul_add(erf, half * x);
        }
    }
}

/// dinp (N) += gelu'(inp) · dout
pub fn gelu_backward<F: Real>(dinp: &mut [F], inp: &[F], dout: &[F]) {
    dinp.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK))
        .zip(dout.par_chunks(CHUNK))
        .for_each(|((d, x), g)| gelu_backward_chunk(d, x, g));
}

/// d (N) = gelu'(inp) · d, in place: `gelu_backward` into a zeroed buffer, without a second buffer.
pub fn gelu_backward_inplace<F: Real>(d: &mut [F], inp: &[F]) {
    d.par_chunks_mut(CHUNK).zip(inp.par_chunks(CHUNK)).for_each(|(d, x)| gelu_backward_inplace_chunk(d, x));
}

/// gelu'(x) = Φ(x) + x·φ(x); erf(x/√2) comes with exp(−x²/2), which is φ(x)·√(2π).
#[inline(always)]
fn gelu_grad<F: Real>(x: F) -> F {
    let half = F::from_f64(0.5);
    let inv_sqrt2 = F::from_f64(std::f64::consts::FRAC_1_SQRT_2);
    let inv_sqrt_2pi = F::from_f64(0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2);
    let (erf, gauss) = (x * inv_sqrt2).erf_and_gauss();
    let cdf = half * (F::ONE + erf);
    let pdf = gauss * inv_sqrt_2pi;
    x.mul_add(pdf, cdf)
}

multiversion! {
    fn gelu_backward_chunk<F: Real>(dinp: &mut [F], inp: &[F], dout: &[F]) {
        for ((d, &x), &g) in dinp.iter_mut().zip(inp).zip(dout) {
            *d += g * gelu_grad(x);
        }
    }
}

multiversion! {
    fn gelu_backward_inplace_chunk<F: Real>(d: &mut [F], inp: &[F]) {
        for (d, &x) in d.iter_mut().zip(inp) {
            *d = *d * gelu_grad(x);
        }
    }
}
