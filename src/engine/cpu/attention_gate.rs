//! The gate around the attention core of the gated variants (forward and backward side by side):
//!
//!   z = ln_1(x) W_gᵀ (+ b_g)          (N, G): `attn.c_gate` (G = n_head) or `attn.c_outgate` (G = C)
//!   y'[n, c] = y[n, c] · σ(z[n, c / (C/G)])                                          (N, C)
//!
//! y is the concatenated head outputs (the attention core's output) and y' goes to c_proj. With
//! G = n_head each gate scales one head's hs channels (Bondarenko et al. 2023, "gated attention",
//! their `attn_gate_linear_all_features` form: one linear map n_embd → n_head); with G = C each channel
//! has its own gate (Qiu et al. 2025, the elementwise "SDPA output gate"). The gate's input is ln_1(x),
//! the input of the attention block, as in both papers (the OPT/BERT `hidden_states` given to the
//! attention, and the pre-norm hidden state X of Qiu et al.).
//!
//! Backward, with g = ∂L/∂y':  ∂L/∂y = g ⊙ σ(z) (broadcast),  ∂L/∂z[n, k] = σ'(z) Σ_{c in group k} g·y,
//! σ' = σ(1 − σ). The linear map z (forward and backward, `gate_linear_*`) runs on the model's ordinary
//! `matmul` kernels.

use super::matmul::{matmul_backward, matmul_forward, Dinp};
use super::real::{Real, ROW_CHUNK};
use crate::config::AttentionKind;
use crate::engine::params::Kind;
use rayon::prelude::*;

#[inline(always)]
fn sigmoid<F: Real>(z: F) -> F {
    F::ONE / (F::ONE + (-z).exp())
}

/// out (N, C) = y ⊙ σ(z); `gate` (N, G) holds the logits z on entry and σ(z) on return.
pub fn gate_forward<F: Real>(out: &mut [F], gate: &mut [F], y: &[F], n: usize, c: usize, g: usize) {
    assert!(g > 0 && c.is_multiple_of(g), "{g} gates do not divide {c} channels");
    assert!(out.len() >= n * c && y.len() >= n * c && gate.len() >= n * g);
    let w = c / g;
    out[..n * c]
        .par_chunks_mut(ROW_CHUNK * c)
        .zip(gate[..n * g].par_chunks_mut(ROW_CHUNK * g))
        .zip(y[..n * c].par_chunks(ROW_CHUNK * c))
        .for_each(|((o, s), y)| {
            for x in s.iter_mut() {
                *x = sigmoid(*x);
            }
            for ((o, y), &s) in o.chunks_exact_mut(w).zip(y.chunks_exact(w)).zip(s.iter()) {
                for (o, &y) in o.iter_mut().zip(y) {
                    *o = y * s;
                }
            }
        });
}

/// dy (N, C) += ∂L/∂y and dz (N, G) = ∂L/∂z (written), from dout = ∂L/∂y' (N, C), y and σ(z) (N, G).
#[allow(clippy::too_many_arguments)]
pub fn gate_backward<F: Real>(
    dy: &mut [F],
    dz: &mut [F],
    dout: &[F],
    y: &[F],
    gate: &[F],
    n: usize,
    c: usize,
    g: usize,
) {
    assert!(g > 0 && c.is_multiple_of(g), "{g} gates do not divide {c} channels");
    assert!(dy.len() >= n * c && dout.len() >= n * c && y.len() >= n * c && dz.len() >= n * g && gate.len() >= n * g);
    let w = c / g;
    dy[..n * c]
        .par_chunks_mut(ROW_CHUNK * c)
        .zip(dz[..n * g].par_chunks_mut(ROW_CHUNK * g))
        .zip(dout[..n * c].par_chunks(ROW_CHUNK * c).zip(y[..n * c].par_chunks(ROW_CHUNK * c)))
        .zip(gate[..n * g].par_chunks(ROW_CHUNK * g))
        .for_each(|(((dy, dz), (dout, y)), s)| {
            for ((((dy, dz), dout), y), &s) in
                dy.chunks_exact_mut(w).zip(dz.iter_mut()).zip(dout.chunks_exact(w)).zip(y.chunks_exact(w)).zip(s.iter())
            {
                let mut acc = F::ZERO;
                for ((dy, &go), &yv) in dy.iter_mut().zip(dout).zip(y) {
                    *dy += go * s;
                    acc += go * yv;
                }
                *dz = acc * s * (F::ONE - s);
            }
        });
}

/// The weight and bias kinds of the gate's linear map: `attn.c_outgate` for `outgate`, else `attn.c_gate`.
pub fn gate_kinds(kind: AttentionKind) -> (Kind, Kind) {
    match kind {
        AttentionKind::Outgate => (Kind::OutGateW, Kind::OutGateB),
        _ => (Kind::GateW, Kind::GateB),
    }
}

/// z (N, G) = x W_gᵀ (+ b_g), x = ln_1 output (N, C).
#[allow(clippy::too_many_arguments)]
pub fn gate_linear_forward<F: Real>(
    z: &mut [F],
    x: &[F],
    w: &[F],
    b: Option<&[F]>,
    n: usize,
    c: usize,
    g: usize,
    parallel: bool,
) {
    matmul_forward(z, x, w, b, n, c, g, parallel)
}

/// Backward of `gate_linear_forward`: dx (N, C) += dz W_g (the gate reads ln_1 too, so its input
/// gradient adds to c_attn's), dw += dzᵀ x, db += Σ dz.
#[allow(clippy::too_many_arguments)]
pub fn gate_linear_backward<F: Real>(
    dx: &mut [F],
    dw: &mut [F],
    db: Option<&mut [F]>,
    dz: &[F],
    x: &[F],
    w: &[F],
    n: usize,
    c: usize,
    g: usize,
    parallel: bool,
) {
    matmul_backward(dx, Dinp::Add, dw, db, dz, x, w, n, c, g, parallel)
}
