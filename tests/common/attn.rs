//! Both attention kernels behind one interface, for the tests that hold them to finite differences and
//! to each other: `forward` gives the output and what the kernel's backward needs (the weights, or lse),
//! `backward` ∂L/∂qkv and ∂L/∂σ.

use quietgpt::config::AttentionKind;
use quietgpt::engine::cpu::attention::{self as reference, backward_scratch, AttnDropout, AttnMask, Variant};
use quietgpt::engine::cpu::attention_fused::{self as fused, scratch_per_thread};
use quietgpt::engine::cpu::Real;
use quietgpt::engine::dropout::Dropout;

pub const DROP: Dropout = Dropout { p: 0.3, key: 42 };

pub fn drop_of(on: bool) -> AttnDropout<'static> {
    on.then_some(AttnMask { dropout: &DROP, site: 3, first_seq: 0 })
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kernel {
    Reference,
    Fused,
}

/// Forward of one kernel: the output (B, T, C) and what its backward needs (the weights, or lse).
#[allow(clippy::too_many_arguments)]
pub fn forward<F: Real>(
    k: Kernel,
    qkv: &[F],
    v: &Variant<F>,
    dropout: bool,
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
) -> (Vec<F>, Vec<F>) {
    let mut out = vec![F::from_f64(f64::NAN); b * t * c];
    match k {
        Kernel::Reference => {
            let mut att = vec![F::from_f64(f64::NAN); b * nh * t * t];
            reference::attention_forward(&mut out, &mut att, qkv, v, drop_of(dropout), b, t, c, nh);
            (out, att)
        }
        Kernel::Fused => {
            let mut lse = vec![F::from_f64(f64::NAN); b * nh * t];
            let mut scratch = vec![F::ZERO; rayon::current_num_threads() * scratch_per_thread(t)];
            fused::attention_forward(&mut out, &mut lse, qkv, v, drop_of(dropout), &mut scratch, b, t, c, nh);
            (out, lse)
        }
    }
}

/// Backward of one kernel: ∂L/∂qkv (from zero) and ∂L/∂σ (NH, summed over sequences; zeros unless sink).
#[allow(clippy::too_many_arguments)]
pub fn backward<F: Real>(
    k: Kernel,
    dout: &[F],
    qkv: &[F],
    saved: &[F],
    v: &Variant<F>,
    dropout: bool,
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
) -> (Vec<F>, Vec<F>) {
    let mut d = vec![F::ZERO; b * t * 3 * c];
    let mut dnull = vec![F::from_f64(f64::NAN); b * nh];
    let want = v.kind == AttentionKind::Sink;
    let dn = want.then_some(&mut dnull[..]);
    match k {
        Kernel::Reference => {
            let mut scratch = vec![F::from_f64(f64::NAN); backward_scratch(b, t, nh)];
            reference::attention_backward(&mut d, dn, &mut scratch, dout, qkv, saved, v, drop_of(dropout), b, t, c, nh);
        }
        Kernel::Fused => {
            let mut scratch = vec![F::ZERO; rayon::current_num_threads() * scratch_per_thread(t)];
            fused::attention_backward(&mut d, dn, dout, qkv, saved, v, drop_of(dropout), &mut scratch, b, t, c, nh);
        }
    }
    let mut ds = vec![F::ZERO; nh];
    if want {
        for bi in 0..b {
            for h in 0..nh {
                ds[h] += dnull[bi * nh + h];
            }
        }
    }
    (d, ds)
}
