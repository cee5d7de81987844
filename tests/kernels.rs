//! The kernels in f64 against central finite differences, the whole model's gradient likewise,
//! gradient accumulation, the causal mask of both attention kinds (tested directly: under softmax1 a
//! wrong mask gives zeros, not NaN), dropout masks, and attention in f32 against f64.
//!
//! Method and tolerances: `common/fd.rs` (central differences of L = Σ G ∘ forward(x) in f64).

mod common;

use common::fd::*;
use common::VariantExt;
use quietgpt::config::{AttentionKind, GeluKind, ModelConfig};
use quietgpt::engine::cpu::attention::{
    attention_backward, attention_forward, backward_scratch, AttnDropout, AttnMask, Variant,
};
use quietgpt::engine::cpu::attention_gemm::{small_gemm, Tri};
use quietgpt::engine::cpu::crossentropy::{crossentropy_backward, crossentropy_forward};
use quietgpt::engine::cpu::encoder::{encoder_backward, encoder_forward};
use quietgpt::engine::cpu::gelu::{
    gelu_backward_from_grad, gelu_forward, gelu_remake_with_grad, gelu_tanh_forward, gelu_tanh_remake_with_grad,
};
use quietgpt::engine::cpu::layernorm::{
    layernorm_backward, layernorm_forward, layernorm_recompute, residual_layernorm_forward,
};
use quietgpt::engine::cpu::matmul::{matmul_backward, matmul_forward, Dinp};
use quietgpt::engine::dropout::Dropout;
use quietgpt::rng::Rng;

// Small shapes for the kernels.
const B: usize = 2;
const T: usize = 5;
const C: usize = 8;
const NH: usize = 2;
const V: usize = 7;
const OC: usize = 6;

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

// ---------------------------------------------------------------------------------------------- matmul

fn matmul_case(n: usize, c: usize, oc: usize, bias: bool, seed: u64) {
    let mut rng = Rng::new(seed, bias as u64);
    let inp = randn(&mut rng, n * c, 1.0);
    let w = randn(&mut rng, oc * c, 1.0);
    let b = randn(&mut rng, oc, 1.0);
    let g = randn(&mut rng, n * oc, 1.0);
    let fwd = |inp: &[f64], w: &[f64], b: Option<&[f64]>| {
        let mut out = vec![f64::NAN; n * oc];
        matmul_forward(&mut out, inp, w, b, n, c, oc, true);
        out
    };
    let bo = bias.then_some(&b[..]);
    let (pi, pw, pb) = (randn(&mut rng, n * c, 1.0), randn(&mut rng, oc * c, 1.0), randn(&mut rng, oc, 1.0));
    let (mut di, mut dw, mut db) = (pi.clone(), pw.clone(), pb.clone());
    matmul_backward(
        &mut di,
        Dinp::Add,
        &mut dw,
        if bias { Some(&mut db[..]) } else { None },
        &g,
        &inp,
        &w,
        n,
        c,
        oc,
        true,
    );
    let tag = format!("matmul {n}x{c}->{oc} bias={bias}");
    check(&format!("{tag} dinp"), &added(&di, &pi), &numeric(&inp, &all(n * c), &g, |x| fwd(x, &w, bo)), &all(n * c));
    check(
        &format!("{tag} dweight"),
        &added(&dw, &pw),
        &numeric(&w, &all(oc * c), &g, |x| fwd(&inp, x, bo)),
        &all(oc * c),
    );
    if bias {
        check(
            &format!("{tag} dbias"),
            &added(&db, &pb),
            &numeric(&b, &all(oc), &g, |x| fwd(&inp, &w, Some(x))),
            &all(oc),
        );
    } else {
        assert_eq!(db, pb, "{tag}: dbias touched although bias is None");
    }
}

#[test]
fn matmul_gradients_with_bias() {
    matmul_case(B * T, C, OC, true, 1);
}

#[test]
fn matmul_gradients_without_bias() {
    matmul_case(B * T, C, OC, false, 1);
}

/// Shapes past COL_CHUNK (32) channels, so that the bias column sum runs in several tasks.
#[test]
fn matmul_gradients_large_shapes() {
    matmul_case(19, 9, 70, true, 2);
}

/// Larger shapes against a naive triple loop (gemm may take other code paths there), f64 and f32.
#[test]
fn matmul_matches_naive_on_larger_shapes() {
    let (n, c, oc) = (37, 70, 53);
    let mut rng = Rng::new(3, 0);
    let inp = randn(&mut rng, n * c, 1.0);
    let w = randn(&mut rng, oc * c, 1.0);
    let b = randn(&mut rng, oc, 1.0);
    let dout = randn(&mut rng, n * oc, 1.0);
    let mut want = vec![0.0; n * oc];
    for r in 0..n {
        for o in 0..oc {
            want[r * oc + o] = b[o] + dot(&inp[r * c..(r + 1) * c], &w[o * c..(o + 1) * c]);
        }
    }
    let (mut want_di, mut want_dw, mut want_db) = (vec![0.0; n * c], vec![0.0; oc * c], vec![0.0; oc]);
    for r in 0..n {
        for o in 0..oc {
            let d = dout[r * oc + o];
            want_db[o] += d;
            for i in 0..c {
                want_di[r * c + i] += d * w[o * c + i];
                want_dw[o * c + i] += d * inp[r * c + i];
            }
        }
    }
    let mut out = vec![0.0; n * oc];
    matmul_forward(&mut out, &inp, &w, Some(&b), n, c, oc, true);
    assert!(max_abs_diff(&out, &want) < 1e-12, "forward f64: {}", max_abs_diff(&out, &want));
    let (mut di, mut dw, mut db) = (vec![0.0; n * c], vec![0.0; oc * c], vec![0.0; oc]);
    matmul_backward(&mut di, Dinp::Add, &mut dw, Some(&mut db), &dout, &inp, &w, n, c, oc, true);
    for (what, got, want) in [("dinp", &di, &want_di), ("dweight", &dw, &want_dw), ("dbias", &db, &want_db)] {
        assert!(max_abs_diff(got, want) < 1e-12, "backward f64 {what}: {}", max_abs_diff(got, want));
    }
    // f32: within float32 rounding of sums of 70 products of N(0,1) values (|values| ≲ 30).
    let f = |x: &[f64]| x.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let back = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<f64>>();
    let mut out32 = vec![0.0f32; n * oc];
    matmul_forward(&mut out32, &f(&inp), &f(&w), Some(&f(&b)), n, c, oc, true);
    assert!(max_abs_diff(&back(&out32), &want) < 2e-5, "forward f32: {}", max_abs_diff(&back(&out32), &want));
    let (mut di32, mut dw32, mut db32) = (vec![0.0f32; n * c], vec![0.0f32; oc * c], vec![0.0f32; oc]);
    matmul_backward(&mut di32, Dinp::Add, &mut dw32, Some(&mut db32), &f(&dout), &f(&inp), &f(&w), n, c, oc, true);
    for (what, got, want) in
        [("dinp", back(&di32), &want_di), ("dweight", back(&dw32), &want_dw), ("dbias", back(&db32), &want_db)]
    {
        assert!(max_abs_diff(&got, want) < 2e-5, "backward f32 {what}: {}", max_abs_diff(&got, want));
    }
}

// ------------------------------------------------------------------------------------------- layernorm

fn layernorm_case(n: usize, c: usize, bias: bool, seed: u64) {
    let mut rng = Rng::new(seed, 10 + bias as u64);
    // rows with their own offset and scale, so that mean and variance matter
    let mut inp = randn(&mut rng, n * c, 1.0);
    for r in 0..n {
        let (off, sc) = (rng.normal() * 2.0, 0.5 + rng.uniform() * 2.0);
        inp[r * c..(r + 1) * c].iter_mut().for_each(|x| *x = *x * sc + off);
    }
    let w: Vec<f64> = randn(&mut rng, c, 0.5).iter().map(|x| 1.0 + x).collect();
    let b = randn(&mut rng, c, 0.5);
    let g = randn(&mut rng, n * c, 1.0);
    let bo = bias.then_some(&b[..]);
    let fwd = |inp: &[f64], w: &[f64], b: Option<&[f64]>| {
        let (mut out, mut mean, mut rstd) = (vec![f64::NAN; n * c], vec![f64::NAN; n], vec![f64::NAN; n]);
        layernorm_forward(&mut out, &mut mean, &mut rstd, inp, w, b, n, c);
        out
    };
    let (mut out, mut mean, mut rstd) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
    layernorm_forward(&mut out, &mut mean, &mut rstd, &inp, &w, bo, n, c);
    for r in 0..n {
        let x = &inp[r * c..(r + 1) * c];
        let m = x.iter().sum::<f64>() / c as f64;
        let var = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / c as f64;
        assert!((mean[r] - m).abs() < 1e-12 && (rstd[r] - 1.0 / (var + 1e-5).sqrt()).abs() < 1e-9, "mean/rstd row {r}");
    }
    let (pi, pw, pb) = (randn(&mut rng, n * c, 1.0), randn(&mut rng, c, 1.0), randn(&mut rng, c, 1.0));
    let (mut di, mut dw, mut db) = (pi.clone(), pw.clone(), pb.clone());
    layernorm_backward(
        &mut di,
        &mut dw,
        if bias { Some(&mut db[..]) } else { None },
        &g,
        &inp,
        &w,
        &mean,
        &rstd,
        n,
        c,
        &mut Vec::new(),
    );
    let tag = format!("layernorm {n}x{c} bias={bias}");
    check(&format!("{tag} dinp"), &added(&di, &pi), &numeric(&inp, &all(n * c), &g, |x| fwd(x, &w, bo)), &all(n * c));
    check(&format!("{tag} dweight"), &added(&dw, &pw), &numeric(&w, &all(c), &g, |x| fwd(&inp, x, bo)), &all(c));
    if bias {
        check(
            &format!("{tag} dbias"),
            &added(&db, &pb),
            &numeric(&b, &all(c), &g, |x| fwd(&inp, &w, Some(x))),
            &all(c),
        );
    } else {
        assert_eq!(db, pb, "{tag}: dbias touched although bias is None");
    }
}

#[test]
fn layernorm_gradients_with_bias() {
    layernorm_case(B * T, C, true, 1);
}

#[test]
fn layernorm_gradients_without_bias() {
    layernorm_case(B * T, C, false, 1);
}

/// More than ROW_CHUNK (16) rows and COL_CHUNK (32) channels: several tasks in both directions.
#[test]
fn layernorm_gradients_large_shapes() {
    layernorm_case(21, 40, true, 2);
}

// ------------------------------------------------------------------------------------------------ gelu

/// What the model remakes in backward instead of keeping: LayerNorm outputs from (input, mean, rstd),
/// and GELU's output with its derivative in one pass, then its backward in place from that derivative,
/// all bitwise equal to what they replace (f32, several chunks).
#[test]
fn remade_layernorm_and_gelu_are_bitwise_the_same() {
    let mut rng = Rng::new(21, 4);
    let (n, c) = (300, 48);
    let inp: Vec<f32> = (0..n * c).map(|_| (rng.normal() * 2.0 + 0.5) as f32).collect();
    let w: Vec<f32> = (0..c).map(|_| (1.0 + 0.3 * rng.normal()) as f32).collect();
    let b: Vec<f32> = (0..c).map(|_| (0.2 * rng.normal()) as f32).collect();
    for bias in [Some(&b[..]), None] {
        let (mut out, mut mean, mut rstd) = (vec![0.0f32; n * c], vec![0.0f32; n], vec![0.0f32; n]);
        layernorm_forward(&mut out, &mut mean, &mut rstd, &inp, &w, bias, n, c);
        let mut again = vec![f32::NAN; n * c];
        layernorm_recompute(&mut again, &inp, &mean, &rstd, &w, bias, n, c);
        assert!(out.iter().zip(&again).all(|(x, y)| x.to_bits() == y.to_bits()), "bias={}", bias.is_some());
    }
    let x: Vec<f32> = (0..20_000).map(|_| (rng.normal() * 3.0) as f32).collect();
    let mut out = vec![0.0f32; x.len()];
    gelu_forward(&mut out, &x);
    let (mut again, mut grad) = (vec![f32::NAN; x.len()], x.clone());
    gelu_remake_with_grad(&mut again, &mut grad);
    assert!(out.iter().zip(&again).all(|(p, q)| p.to_bits() == q.to_bits()), "remade gelu");
    // the kept derivative is the exact-erf gelu'(x) (the finite-difference tests check the pair in f64)
    for (&xi, &d) in x.iter().zip(&grad).step_by(97) {
        let xd = xi as f64;
        let (phi, pdf) =
            (0.5 * (1.0 + libm::erf(xd / 2f64.sqrt())), (-0.5 * xd * xd).exp() / (2.0 * std::f64::consts::PI).sqrt());
        let want = phi + xd * pdf;
        assert!((d as f64 - want).abs() < 1e-5, "gelu'({xi}) = {d}, want {want}");
    }
}

/// The residual add fused with the next LayerNorm gives bitwise what the add and then the LayerNorm
/// give (with and without bias, several row chunks).
#[test]
fn residual_layernorm_is_add_then_layernorm() {
    let mut rng = Rng::new(23, 4);
    let (n, c) = (70, 48);
    let x: Vec<f32> = (0..n * c).map(|_| (rng.normal() * 2.0) as f32).collect();
    let y: Vec<f32> = (0..n * c).map(|_| rng.normal() as f32).collect();
    let w: Vec<f32> = (0..c).map(|_| (1.0 + 0.3 * rng.normal()) as f32).collect();
    let b: Vec<f32> = (0..c).map(|_| (0.2 * rng.normal()) as f32).collect();
    for bias in [Some(&b[..]), None] {
        let res: Vec<f32> = x.iter().zip(&y).map(|(p, q)| p + q).collect();
        let (mut out, mut mean, mut rstd) = (vec![0.0f32; n * c], vec![0.0f32; n], vec![0.0f32; n]);
        layernorm_forward(&mut out, &mut mean, &mut rstd, &res, &w, bias, n, c);
        let (mut res2, mut out2, mut mean2, mut rstd2) =
            (vec![f32::NAN; n * c], vec![f32::NAN; n * c], vec![f32::NAN; n], vec![f32::NAN; n]);
        residual_layernorm_forward(&mut res2, &mut out2, &mut mean2, &mut rstd2, &x, &y, &w, bias, n, c);
        let same = |p: &[f32], q: &[f32]| p.iter().zip(q).all(|(u, v)| u.to_bits() == v.to_bits());
        assert!(
            same(&res, &res2) && same(&out, &out2) && same(&mean, &mean2) && same(&rstd, &rstd2),
            "bias={}",
            bias.is_some()
        );
    }
}

#[test]
fn gelu_gradient() {
    let n = 40;
    let mut rng = Rng::new(1, 20);
    let x = randn(&mut rng, n, 2.0);
    let g = randn(&mut rng, n, 1.0);
    let fwd = |x: &[f64]| {
        let mut out = vec![f64::NAN; n];
        gelu_forward(&mut out, x);
        out
    };
    // exact-erf GELU values, not the tanh approximation
    let mut out = vec![0.0f64; 3];
    gelu_forward(&mut out, &[1.0, -0.5, 3.0]);
    for (o, want) in out.iter().zip([0.8413447460685429f64, -0.15426876936299344, 2.995_950_305_905_11]) {
        assert!((o - want).abs() < 1e-14, "gelu value {o} vs {want}");
    }
    let pre = randn(&mut rng, n, 1.0);
    let mut d = pre.clone();
    gelu_backward(&mut d, &x, &g);
    check("gelu dinp", &added(&d, &pre), &numeric(&x, &all(n), &g, fwd), &all(n));
}

/// Past the 4096-element chunk: the kernel is elementwise, so one perturbation of every element at once
/// gives every diagonal derivative.
#[test]
fn gelu_gradient_across_chunks() {
    let n = 9000;
    let mut rng = Rng::new(2, 20);
    let x = randn(&mut rng, n, 2.0);
    let g = randn(&mut rng, n, 1.0);
    let f = |x: &[f64]| {
        let mut out = vec![f64::NAN; n];
        gelu_forward(&mut out, x);
        out
    };
    let (xp, xm): (Vec<f64>, Vec<f64>) = (x.iter().map(|v| v + H).collect(), x.iter().map(|v| v - H).collect());
    let (fp, fm) = (f(&xp), f(&xm));
    let num: Vec<f64> = (0..n).map(|i| g[i] * (fp[i] - fm[i]) / (2.0 * H)).collect();
    let mut d = vec![0.0; n];
    gelu_backward(&mut d, &x, &g);
    check("gelu dinp (9000, elementwise)", &d, &num, &all(n));
}

/// dinp (N) += gelu'(inp) · dout through the pair the training backward uses: `gelu_remake_with_grad`
/// (which leaves gelu'(x) where x was) and `gelu_backward_from_grad`.
fn gelu_backward<F: quietgpt::engine::cpu::Real>(dinp: &mut [F], inp: &[F], dout: &[F]) {
    let (mut remade, mut grad) = (vec![F::ZERO; inp.len()], inp.to_vec());
    gelu_remake_with_grad(&mut remade, &mut grad);
    let mut d = dout.to_vec();
    gelu_backward_from_grad(&mut d, &grad);
    dinp.iter_mut().zip(&d).for_each(|(a, &b)| *a += b);
}

/// GPT-2's tanh GELU (`gelu_new`) in f64, as Hugging Face writes it.
fn gelu_new_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

#[test]
fn gelu_tanh_values_and_remake() {
    // values against the textbook formula (f64), including the tails where tanh saturates
    let xs = [1.0, -0.5, 3.0, 0.0, -7.5, 12.0, 1e-3, -30.0, 40.0];
    let mut out = vec![0.0f64; xs.len()];
    gelu_tanh_forward(&mut out, &xs);
    for (&x, &o) in xs.iter().zip(&out) {
        let want = gelu_new_f64(x);
        assert!((o - want).abs() <= 1e-14 * (1.0 + want.abs()), "gelu_tanh({x}) = {o}, want {want}");
    }
    // the tanh form differs from the erf form (by up to about 1e-3 near |x| ≈ 2)
    let mut erf = vec![0.0f64; xs.len()];
    gelu_forward(&mut erf, &xs);
    assert!((erf[2] - out[2]).abs() > 1e-5, "{} vs {}", erf[2], out[2]);
    // f32: the remake is bitwise the forward, the kept derivative is gelu_new'(x)
    let mut rng = Rng::new(22, 4);
    let x: Vec<f32> = (0..20_000).map(|_| (rng.normal() * 3.0) as f32).collect();
    let mut out = vec![0.0f32; x.len()];
    gelu_tanh_forward(&mut out, &x);
    let (mut again, mut grad) = (vec![f32::NAN; x.len()], x.clone());
    gelu_tanh_remake_with_grad(&mut again, &mut grad);
    assert!(out.iter().zip(&again).all(|(p, q)| p.to_bits() == q.to_bits()), "remade gelu_tanh");
    for ((&xi, &o), &d) in x.iter().zip(&out).zip(&grad).step_by(97) {
        let xd = xi as f64;
        assert!((o as f64 - gelu_new_f64(xd)).abs() < 1e-5 * (1.0 + xd.abs()), "gelu_tanh({xi}) = {o}");
        let want = (gelu_new_f64(xd + 1e-6) - gelu_new_f64(xd - 1e-6)) / 2e-6;
        assert!((d as f64 - want).abs() < 1e-5, "gelu_tanh'({xi}) = {d}, want {want}");
    }
}

#[test]
fn gelu_tanh_gradient() {
    for (n, seed) in [(40, 1), (9000, 2)] {
        let mut rng = Rng::new(seed, 21);
        let x = randn(&mut rng, n, 2.0);
        let g = randn(&mut rng, n, 1.0);
        let f = |x: &[f64]| {
            let mut out = vec![f64::NAN; n];
            gelu_tanh_forward(&mut out, x);
            out
        };
        // elementwise: one perturbation of every element at once gives every diagonal derivative
        let (xp, xm): (Vec<f64>, Vec<f64>) = (x.iter().map(|v| v + H).collect(), x.iter().map(|v| v - H).collect());
        let (fp, fm) = (f(&xp), f(&xm));
        let num: Vec<f64> = (0..n).map(|i| g[i] * (fp[i] - fm[i]) / (2.0 * H)).collect();
        let (mut remade, mut grad) = (vec![0.0; n], x.clone());
        gelu_tanh_remake_with_grad(&mut remade, &mut grad);
        let mut d = g.clone();
        gelu_backward_from_grad(&mut d, &grad);
        check(&format!("gelu_tanh dinp ({n})"), &d, &num, &all(n));
    }
}

/// The whole model's gradient with the tanh GELU (GPT-2's), softmax and quiet.
#[test]
fn gpt_gradient_gelu_tanh() {
    for attention in [AttentionKind::Softmax, AttentionKind::Quiet] {
        let mut c = model_config(attention, true);
        c.gelu = GeluKind::Tanh;
        model_case_cfg(c, 0.0, 2, 5);
    }
}

// --------------------------------------------------------------------------------------------- encoder

fn encoder_case(b: usize, t: usize, c: usize, v: usize, seed: u64) {
    let max_t = t + 1; // one position row unused: its gradient must stay 0
    let mut rng = Rng::new(seed, 30);
    let mut idx: Vec<u32> = (0..b * t).map(|_| rng.below(v as u64 - 1) as u32).collect(); // token v−1 unused
    idx[3] = idx[0];
    idx[t + 1] = idx[0]; // collisions within and across sequences
    let wte = randn(&mut rng, v * c, 1.0);
    let wpe = randn(&mut rng, max_t * c, 1.0);
    let g = randn(&mut rng, b * t * c, 1.0);
    let fwd = |wte: &[f64], wpe: &[f64]| {
        let mut out = vec![f64::NAN; b * t * c];
        encoder_forward(&mut out, &idx, wte, wpe, b, t, c);
        out
    };
    let (pe, pp) = (randn(&mut rng, v * c, 1.0), randn(&mut rng, max_t * c, 1.0));
    let (mut de, mut dp) = (pe.clone(), pp.clone());
    encoder_backward(&mut de, &mut dp, &g, &idx, b, t, c);
    let (de, dp) = (added(&de, &pe), added(&dp, &pp));
    let tag = format!("encoder {b}x{t}x{c} V={v}");
    check(&format!("{tag} dwte"), &de, &numeric(&wte, &all(v * c), &g, |x| fwd(x, &wpe)), &all(v * c));
    check(&format!("{tag} dwpe"), &dp, &numeric(&wpe, &all(max_t * c), &g, |x| fwd(&wte, x)), &all(max_t * c));
    assert!(de[(v - 1) * c..].iter().all(|&x| x == 0.0), "{tag}: unused token row got a gradient");
    assert!(dp[t * c..].iter().all(|&x| x == 0.0), "{tag}: unused position row got a gradient");
}

#[test]
fn encoder_gradients_with_repeated_tokens() {
    encoder_case(B, T, C, V, 1);
}

/// More than ROW_CHUNK (16) rows and COL_CHUNK (32) channels.
#[test]
fn encoder_gradients_large_shapes() {
    encoder_case(3, 7, 40, 9, 2);
}

// ---------------------------------------------------------------------------------------- crossentropy

fn crossentropy_case(n: usize, v: usize, seed: u64) {
    let mut rng = Rng::new(seed, 40);
    let logits = randn(&mut rng, n * v, 2.0);
    let targets: Vec<u32> = (0..n).map(|_| rng.below(v as u64) as u32).collect();
    let fwd = |x: &[f64]| {
        let mut losses = vec![f64::NAN; n];
        crossentropy_forward(&mut losses, x, &targets, n, v);
        losses
    };
    let g = vec![1.0 / n as f64; n]; // L = mean loss
    let mut losses = vec![0.0; n];
    crossentropy_forward(&mut losses, &logits, &targets, n, v);
    for r in 0..n {
        let x = &logits[r * v..(r + 1) * v];
        let want = x.iter().map(|z| z.exp()).sum::<f64>().ln() - x[targets[r] as usize];
        assert!((losses[r] - want).abs() < 1e-12, "loss row {r}: {} vs {want}", losses[r]);
    }
    // crossentropy_backward writes dlogits over the logits
    let mut d = logits.clone();
    crossentropy_backward(&mut d, &targets, 1.0 / n as f64, n, v);
    check(&format!("crossentropy {n}x{v} dlogits"), &d, &numeric(&logits, &all(n * v), &g, fwd), &all(n * v));
}

#[test]
fn crossentropy_gradient() {
    crossentropy_case(B * T, V, 1);
}

/// More than ROW_CHUNK (16) rows.
#[test]
fn crossentropy_gradient_many_rows() {
    crossentropy_case(37, 5, 2);
}

// ------------------------------------------------------------------------------------------- attention

/// The fused attention's own small products against a plain triple loop: every register-block path
/// (8-row blocks and single rows, 32-, 16- and 1-wide columns), strided and transposed a, accumulate or
/// not, and each causal restriction (`Tri`) with a zero where the mask puts one (offset 100: no zeros, the whole
/// product), in f64 and f32.
#[test]
fn attention_small_gemm_matches_plain_products() {
    fn run<F: quietgpt::engine::cpu::Real>(tol: f64) {
        let mut rng = Rng::new(31, 9);
        for &(m, n, k) in &[(64, 32, 64), (13, 57, 21), (70, 25, 40), (8, 16, 1), (5, 3, 9)] {
            for tri in [Tri::KUpTo(3), Tri::KUpTo(100), Tri::KFrom(3), Tri::KFrom(100)] {
                for (transposed, accumulate) in [(false, false), (true, true), (true, false)] {
                    // a (m, k): a(r, p) at a[r·ars + p·acs]; zero where the restriction says so
                    let (ars, acs) = if transposed { (1, m + 2) } else { (k + 3, 1) };
                    let mut a = vec![F::from_f64(f64::NAN); (m + 2) * (k + 3)];
                    for r in 0..m {
                        for p in 0..k {
                            let zero = match tri {
                                Tri::KUpTo(off) => p > off + r,
                                Tri::KFrom(off) => off + p < r,
                            };
                            a[r * ars + p * acs] = F::from_f64(if zero { 0.0 } else { rng.normal() });
                        }
                    }
                    let ldb = n + 5;
                    let b: Vec<F> = (0..k * ldb).map(|_| F::from_f64(rng.normal())).collect();
                    let ldc = n + 1;
                    let c0: Vec<F> = (0..m * ldc).map(|_| F::from_f64(rng.normal())).collect();
                    let mut c = c0.clone();
                    let alpha = F::from_f64(0.7);
                    unsafe {
                        small_gemm(
                            m,
                            n,
                            k,
                            c.as_mut_ptr(),
                            ldc,
                            accumulate,
                            (a.as_ptr(), ars, acs),
                            (b.as_ptr(), ldb),
                            alpha,
                            tri,
                        )
                    };
                    for r in 0..m {
                        for j in 0..n {
                            let dot: f64 =
                                (0..k).map(|p| a[r * ars + p * acs].to_f64() * b[p * ldb + j].to_f64()).sum();
                            let want = 0.7 * dot + if accumulate { c0[r * ldc + j].to_f64() } else { 0.0 };
                            let got = c[r * ldc + j].to_f64();
                            assert!(
                                (got - want).abs() <= tol * (1.0 + want.abs()),
                                "{m}x{n}x{k} {tri:?} t={transposed} acc={accumulate} ({r}, {j}): {got} vs {want}"
                            );
                        }
                        // the padding column is never written
                        assert!(c[r * ldc + n].to_f64() == c0[r * ldc + n].to_f64());
                    }
                }
            }
        }
    }
    run::<f64>(1e-12);
    run::<f32>(2e-5);
}

const DROP: Dropout = Dropout { p: 0.3, key: 42 };
const SITE: u64 = 3;

fn drop_of(with_dropout: bool) -> AttnDropout<'static> {
    with_dropout.then_some(AttnMask { dropout: &DROP, site: SITE, first_seq: 0 })
}

/// Sink logits of the NH = 2 heads, and the clip of these tests: γ = −0.1 clips weights below 1/11 in
/// rows of a handful of keys (both branches occur).
const SINKS: [f64; 2] = [0.3, -0.7];
const SINKS32: [f32; 2] = [0.3, -0.7];
const GAMMA: f64 = -0.1;

fn variant(kind: AttentionKind) -> Variant<'static, f64> {
    Variant::new(kind).with_sink(&SINKS).with_clip(1.0, GAMMA)
}

fn variant32(kind: AttentionKind) -> Variant<'static, f32> {
    Variant::new(kind).with_sink(&SINKS32).with_clip(1.0, GAMMA as f32)
}

fn attention_out(
    qkv: &[f64],
    kind: AttentionKind,
    dropout: bool,
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (mut out, mut att) = (vec![f64::NAN; b * t * c], vec![f64::NAN; b * nh * t * t]);
    attention_forward(&mut out, &mut att, qkv, &variant(kind), drop_of(dropout), b, t, c, nh);
    (out, att)
}

/// Scores of (b, h, i, j), j ≤ i, computed here.
fn scores(qkv: &[f64], b: usize, t: usize, c: usize, nh: usize) -> Vec<Vec<f64>> {
    let hs = c / nh;
    let mut rows = Vec::new();
    for bi in 0..b {
        for h in 0..nh {
            for i in 0..t {
                let q = &qkv[(bi * t + i) * 3 * c + h * hs..][..hs];
                rows.push(
                    (0..=i)
                        .map(|j| dot(q, &qkv[(bi * t + j) * 3 * c + c + h * hs..][..hs]) / (hs as f64).sqrt())
                        .collect(),
                );
            }
        }
    }
    rows
}

fn attention_case(kind: AttentionKind, dropout: bool, std: f64, seed: u64) {
    let (b, t, c, nh) = (B, T, C, NH);
    let mut rng = Rng::new(seed, 50);
    let qkv = randn(&mut rng, b * t * 3 * c, std);
    let g = randn(&mut rng, b * t * c, 1.0);
    if kind == AttentionKind::Quiet {
        // both branches of m = max(0, max_j s_j) occur
        let s = scores(&qkv, b, t, c, nh);
        let pos = s.iter().filter(|r| r.iter().any(|&x| x > 0.0)).count();
        assert!(pos > 0 && pos < s.len(), "seed gives rows of one sign only ({pos} of {})", s.len());
    }
    let (_, att) = attention_out(&qkv, kind, dropout, b, t, c, nh);
    let fwd = |x: &[f64]| attention_out(x, kind, dropout, b, t, c, nh).0;
    let pre = randn(&mut rng, b * t * 3 * c, 1.0);
    let mut d = pre.clone();
    let mut scratch = vec![f64::NAN; backward_scratch(b, t, nh)];
    attention_backward(&mut d, None, &mut scratch, &g, &qkv, &att, &variant(kind), drop_of(dropout), b, t, c, nh);
    let d = added(&d, &pre);
    let n = b * t * 3 * c;
    let num = numeric(&qkv, &all(n), &g, fwd);
    let tag = format!("attention {kind} dropout={dropout} std={std}");
    check(&format!("{tag} dqkv"), &d, &num, &all(n));
    assert_qkv_parts_nonzero(&tag, &d, b * t, c);
}

#[test]
fn attention_softmax_gradient() {
    attention_case(AttentionKind::Softmax, false, 1.0, 1);
    attention_case(AttentionKind::Softmax, false, 2.0, 2);
}

#[test]
fn attention_quiet_gradient() {
    attention_case(AttentionKind::Quiet, false, 1.0, 1);
    attention_case(AttentionKind::Quiet, false, 2.0, 2);
}

#[test]
fn attention_softmax_gradient_with_dropout() {
    attention_case(AttentionKind::Softmax, true, 1.0, 3);
}

#[test]
fn attention_quiet_gradient_with_dropout() {
    attention_case(AttentionKind::Quiet, true, 1.0, 3);
}

/// (a) probabilities above the diagonal are exactly 0, whatever the buffer held before.
#[test]
fn attention_mask_zero_above_diagonal() {
    let (b, t, c, nh) = (B, 6, C, NH);
    let mut rng = Rng::new(4, 50);
    let qkv = randn(&mut rng, b * t * 3 * c, 2.0);
    for kind in AttentionKind::ALL {
        for dropout in [false, true] {
            let (out, att) = attention_out(&qkv, kind, dropout, b, t, c, nh); // att starts as NaN
            assert!(out.iter().all(|v| v.is_finite()), "{kind}: non-finite output");
            for bh in 0..b * nh {
                for i in 0..t {
                    let row = &att[(bh * t + i) * t..][..t];
                    // (the clip, relu and softpick give exact zeros to visible keys too; a relu weight
                    // s/(i+1) has no upper bound)
                    let zero_ok =
                        matches!(kind, AttentionKind::Clipped | AttentionKind::Relu | AttentionKind::Softpick);
                    let lo_ok = |p: f64| if zero_ok { p >= 0.0 } else { p > 0.0 };
                    let hi_ok = |p: f64| kind == AttentionKind::Relu || p <= 1.0;
                    assert!(row[..=i].iter().all(|&p| lo_ok(p) && hi_ok(p)), "{kind} row {i}: {row:?}");
                    assert!(
                        row[i + 1..].iter().all(|&p| p == 0.0),
                        "{kind} dropout={dropout} (bh {bh}, row {i}) above diagonal: {row:?}"
                    );
                }
            }
        }
    }
}

/// (b) changing q, k or v at positions > i changes neither the output nor the probabilities at
/// positions ≤ i (bitwise); and an upstream gradient at positions ≤ i only reaches qkv at positions ≤ i.
#[test]
fn attention_is_causal() {
    let (b, t, c, nh) = (B, 6, C, NH);
    let mut rng = Rng::new(5, 50);
    let qkv = randn(&mut rng, b * t * 3 * c, 1.5);
    for kind in AttentionKind::ALL {
        for dropout in [false, true] {
            let (out, att) = attention_out(&qkv, kind, dropout, b, t, c, nh);
            for i in 0..t - 1 {
                let mut q2 = qkv.clone();
                for bi in 0..b {
                    for j in i + 1..t {
                        q2[(bi * t + j) * 3 * c..(bi * t + j + 1) * 3 * c]
                            .iter_mut()
                            .for_each(|x| *x = rng.normal() * 3.0);
                    }
                }
                let (out2, att2) = attention_out(&q2, kind, dropout, b, t, c, nh);
                for bi in 0..b {
                    let s = (bi * t) * c..(bi * t + i + 1) * c;
                    assert!(
                        out[s.clone()].iter().zip(&out2[s]).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{kind} dropout={dropout}: output at ≤ {i} depends on the future"
                    );
                    assert!(
                        out[(bi * t + i + 1) * c..(bi + 1) * t * c] != out2[(bi * t + i + 1) * c..(bi + 1) * t * c],
                        "{kind}: the perturbation did nothing"
                    );
                }
                for bh in 0..b * nh {
                    let s = bh * t * t..(bh * t + i + 1) * t;
                    assert!(
                        att[s.clone()].iter().zip(&att2[s]).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{kind} dropout={dropout}: probabilities at ≤ {i} depend on the future"
                    );
                }
                // backward: dout only at positions ≤ i
                let mut dout = randn(&mut rng, b * t * c, 1.0);
                for bi in 0..b {
                    dout[(bi * t + i + 1) * c..(bi + 1) * t * c].fill(0.0);
                }
                let mut d = vec![0.0; b * t * 3 * c];
                let mut scratch = vec![0.0; backward_scratch(b, t, nh)];
                attention_backward(
                    &mut d,
                    None,
                    &mut scratch,
                    &dout,
                    &qkv,
                    &att,
                    &variant(kind),
                    drop_of(dropout),
                    b,
                    t,
                    c,
                    nh,
                );
                let mut reached_past = false;
                for bi in 0..b {
                    let future = &d[(bi * t + i + 1) * 3 * c..(bi + 1) * t * 3 * c];
                    assert!(
                        future.iter().all(|&x| x == 0.0),
                        "{kind} dropout={dropout}: gradient from ≤ {i} reached the future"
                    );
                    reached_past |= d[(bi * t) * 3 * c..(bi * t + i + 1) * 3 * c].iter().any(|&x| x != 0.0);
                }
                // (row 0 of softmax has ∂/∂q = ∂/∂k = 0, and dropout may drop its only weight)
                assert!(reached_past || (dropout && i == 0), "{kind} dropout={dropout}: no gradient at ≤ {i}");
            }
        }
    }
}

/// (c) with all scores 0 (q = k = 0): softmax rows are uniform 1/(i+1) and sum to 1; quiet rows are
/// 1/(i+2) and sum to (i+1)/(i+2), the null key taking 1/(i+2); sink rows 1/(i+1+e^σ_h); clipped rows
/// (ζ = 1) 1.1/(i+1) − 0.1 each; relu rows 0 (ReLU(0) = 0); sigmoid rows ½ each, summing to (i+1)/2;
/// softpick rows 0 (0/ε, not NaN). f64 and f32.
#[test]
fn attention_uniform_rows_and_null_mass() {
    fn run<F: quietgpt::engine::cpu::Real>(tol: f64) {
        let sinks: Vec<F> = SINKS.iter().map(|&x| F::from_f64(x)).collect();
        let (b, t, c, nh) = (B, 7, C, NH);
        let mut rng = Rng::new(6, 50);
        let mut qkv: Vec<F> = (0..b * t * 3 * c).map(|_| F::from_f64(rng.normal())).collect();
        for r in 0..b * t {
            qkv[r * 3 * c..r * 3 * c + 2 * c].fill(F::ZERO); // q = k = 0
        }
        for kind in AttentionKind::ALL {
            let (mut out, mut att) = (vec![F::ZERO; b * t * c], vec![F::from_f64(f64::NAN); b * nh * t * t]);
            let v = Variant::new(kind).with_sink(&sinks).with_clip(F::ONE, F::from_f64(GAMMA));
            attention_forward(&mut out, &mut att, &qkv, &v, None, b, t, c, nh);
            // (weight of each visible key, row sum) of row i of head h
            let expect = |h: usize, i: usize| {
                let n = (i + 1) as f64;
                let p = match kind {
                    AttentionKind::Softmax | AttentionKind::Gated | AttentionKind::Outgate => 1.0 / n,
                    AttentionKind::Quiet => 1.0 / (n + 1.0),
                    AttentionKind::Sink => 1.0 / (n + SINKS[h].exp()),
                    AttentionKind::Clipped => (1.1 / n - 0.1).max(0.0),
                    AttentionKind::Relu | AttentionKind::Softpick => 0.0,
                    AttentionKind::Sigmoid => 0.5,
                };
                (p, p * n)
            };
            for bh in 0..b * nh {
                for i in 0..t {
                    let row = &att[(bh * t + i) * t..][..t];
                    let (p, sum) = expect(bh % nh, i);
                    let got: f64 = row.iter().map(|x| x.to_f64()).sum();
                    assert!((got - sum).abs() < tol, "{kind} row {i}: sum {got} vs {sum}");
                    assert!(row[..=i].iter().all(|x| (x.to_f64() - p).abs() < tol), "{kind} row {i}: {row:?}");
                    assert!(row[i + 1..].iter().all(|x| x.to_f64() == 0.0));
                }
            }
            // and y_i is the (scaled) mean of v_0..v_i
            let (bi, h, hs) = (1, 1, c / nh);
            for i in 0..t {
                let scale = expect(h, i).1;
                for ch in 0..hs {
                    let mean = (0..=i).map(|j| qkv[(bi * t + j) * 3 * c + 2 * c + h * hs + ch].to_f64()).sum::<f64>()
                        / (i + 1) as f64;
                    let y = out[(bi * t + i) * c + h * hs + ch].to_f64();
                    assert!((y - scale * mean).abs() < 10.0 * tol, "{kind}: y[{i}][{ch}] = {y}, want {}", scale * mean);
                }
            }
        }
    }
    run::<f64>(1e-15);
    run::<f32>(3e-7);
}

/// The same attention in f32 and f64 (f32 inputs, so both see identical values).
#[test]
fn attention_f32_matches_f64() {
    let (b, t, c, nh) = (2, 16, 32, 4);
    let mut rng = Rng::new(7, 50);
    let q32: Vec<f32> = (0..b * t * 3 * c).map(|_| rng.normal() as f32).collect();
    let g32: Vec<f32> = (0..b * t * c).map(|_| rng.normal() as f32).collect();
    let q64: Vec<f64> = q32.iter().map(|&x| x as f64).collect();
    // Softpick's backward is ill-conditioned where w_j = e^{s_j}/N is large: a row whose Σ|e^s − 1| is
    // small, here query 0 of one head with its one score s = 2.2e-4 (w = 4500; its weight d/(d + ε),
    // d = e^s − 1, is a step of width ε). There any float32 evaluation carries a relative error ~1e-7·w
    // (observed 1.7e-4 in ∂qkv), so those rows get no upstream gradient in the softpick comparison; the
    // f64 finite-difference tests check them.
    let ill: Vec<bool> = scores(&q64, b, t, c, nh)
        .iter()
        .map(|r| {
            let n: f64 = r.iter().map(|s| (s.exp() - 1.0).abs()).sum();
            r.iter().any(|s| s.exp() / n > 10.0)
        })
        .collect();
    let n_ill = ill.iter().filter(|&&x| x).count();
    assert!(n_ill < 3, "{n_ill} ill-conditioned softpick rows");
    let hs = c / nh;
    let well = |kind: AttentionKind, mut g: Vec<f32>| {
        for (r, _) in ill.iter().enumerate().filter(|(_, &x)| x && kind == AttentionKind::Softpick) {
            let (bi, h, i) = (r / (nh * t), r / t % nh, r % t);
            g[(bi * t + i) * c + h * hs..][..hs].fill(0.0);
        }
        g
    };
    for kind in AttentionKind::ALL {
        let g32 = well(kind, g32.clone());
        let g64: Vec<f64> = g32.iter().map(|&x| x as f64).collect();
        for dropout in [false, true] {
            let (mut o32, mut a32) = (vec![0.0f32; b * t * c], vec![0.0f32; b * nh * t * t]);
            let sinks32: Vec<f32> = (0..nh).map(|h| SINKS32[h % 2]).collect();
            let sinks64: Vec<f64> = sinks32.iter().map(|&x| x as f64).collect();
            let v32 = variant32(kind).with_sink(&sinks32);
            let v64 = variant(kind).with_sink(&sinks64).with_clip(1.0, GAMMA as f32 as f64);
            attention_forward(&mut o32, &mut a32, &q32, &v32, drop_of(dropout), b, t, c, nh);
            let (mut o64, mut a64) = (vec![0.0f64; b * t * c], vec![0.0f64; b * nh * t * t]);
            attention_forward(&mut o64, &mut a64, &q64, &v64, drop_of(dropout), b, t, c, nh);
            let mut d32 = vec![0.0f32; b * t * 3 * c];
            attention_backward(
                &mut d32,
                None,
                &mut vec![0.0f32; backward_scratch(b, t, nh)],
                &g32,
                &q32,
                &a32,
                &v32,
                drop_of(dropout),
                b,
                t,
                c,
                nh,
            );
            let mut d64 = vec![0.0f64; b * t * 3 * c];
            attention_backward(
                &mut d64,
                None,
                &mut vec![0.0f64; backward_scratch(b, t, nh)],
                &g64,
                &q64,
                &a64,
                &v64,
                drop_of(dropout),
                b,
                t,
                c,
                nh,
            );
            let err = |x: &[f32], y: &[f64]| x.iter().zip(y).map(|(&a, &b)| (a as f64 - b).abs()).fold(0.0, f64::max);
            let (eo, ea, ed) = (err(&o32, &o64), err(&a32, &a64), err(&d32, &d64));
            // an output is a sum of the row's weights times v, and so is its rounding: rows of sigmoid
            // weights sum to up to (i+1)/2, not to at most 1
            let mass = a64.chunks(t).map(|r| r.iter().sum::<f64>()).fold(1.0, f64::max);
            println!(
                "attention f32 vs f64 {kind} dropout={dropout}: out {eo:.1e}, att {ea:.1e}, dqkv {ed:.1e} (max row sum {mass:.2})"
            );
            assert!(
                eo < 1e-6 * mass && ea < 1e-6,
                "{kind} dropout={dropout}: forward f32 vs f64: out {eo:e}, att {ea:e}"
            );
            assert!(ed < 4e-6, "{kind} dropout={dropout}: backward f32 vs f64: {ed:e}");
        }
    }
}

// --------------------------------------------------------------------------------------------- dropout

#[test]
fn dropout_masks() {
    let n = 50_000;
    let d = Dropout { p: 0.5, key: 42 };
    let mut x = vec![1.0f64; n];
    d.apply_from(7, 0, &mut x);
    let zeros = x.iter().filter(|&&v| v == 0.0).count();
    assert!(x.iter().all(|&v| v == 0.0 || v == 2.0), "values other than 0 and 2");
    let frac = zeros as f64 / n as f64;
    assert!((frac - 0.5).abs() < 0.015, "dropped fraction {frac} (σ ≈ 0.0022)");
    // the same key and site: the same mask (f32 too); another site or key: another mask
    let mut y = vec![1.0f64; n];
    Dropout { p: 0.5, key: 42 }.apply_from(7, 0, &mut y);
    assert_eq!(x, y);
    let mut y32 = vec![1.0f32; n];
    d.apply_from(7, 0, &mut y32);
    assert!(x.iter().zip(&y32).all(|(&a, &b)| a == b as f64), "f32 and f64 masks differ");
    for (other, site) in [(d, 8), (Dropout { p: 0.5, key: 43 }, 7)] {
        let mut z = vec![1.0f64; n];
        other.apply_from(site, 0, &mut z);
        let differ = x.iter().zip(&z).filter(|(a, b)| a != b).count() as f64 / n as f64;
        assert!((differ - 0.5).abs() < 0.02, "key/site change: masks differ on {differ} of elements");
    }
    // apply is factor(site key, global index), across its internal 4096-element chunks
    let key = d.site(7);
    assert!(x.iter().enumerate().all(|(i, &v)| v == d.factor::<f64>(key, i as u64)));
    // p = 0.3: kept values scaled by 1/(1 − p)
    let d3 = Dropout { p: 0.3, key: 9 };
    let mut x3 = vec![1.0f64; n];
    d3.apply_from(1, 0, &mut x3);
    let kept = x3.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
    assert!((kept - 0.7).abs() < 0.015, "kept {kept}");
    assert!(x3.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-7));
    // per-pass keys: none at p = 0, deterministic, distinct per step and micro-step
    assert!(Dropout::new(0.0, 1, 2, 3).is_none());
    let k = |s, m| Dropout::new(0.2, 1, s, m).unwrap().key;
    assert_eq!(k(2, 3), k(2, 3));
    assert!(k(2, 3) != k(2, 4) && k(2, 3) != k(3, 3));
}

// ---------------------------------------------------------------------------------------- whole model

fn model_config(attention: AttentionKind, bias: bool) -> ModelConfig {
    ModelConfig::new(2, 2, 8, 6, 11, bias, 0.0, attention)
}

fn model_case(attention: AttentionKind, bias: bool, dropout: f32, b: usize, t: usize) {
    model_case_cfg(model_config(attention, bias), dropout, b, t);
}

#[test]
fn gpt_gradient_softmax_bias() {
    model_case(AttentionKind::Softmax, true, 0.0, 2, 5);
}

#[test]
fn gpt_gradient_quiet_bias() {
    model_case(AttentionKind::Quiet, true, 0.0, 2, 5);
}

#[test]
fn gpt_gradient_softmax_no_bias() {
    model_case(AttentionKind::Softmax, false, 0.0, 2, 6);
}

#[test]
fn gpt_gradient_quiet_no_bias() {
    model_case(AttentionKind::Quiet, false, 0.0, 1, 6);
}

#[test]
fn gpt_gradient_quiet_dropout() {
    model_case(AttentionKind::Quiet, true, 0.2, 2, 5);
}

#[test]
fn gpt_gradient_softmax_dropout() {
    model_case(AttentionKind::Softmax, false, 0.2, 2, 5);
}

/// The attention switch reaches the model: same parameters, different loss.
#[test]
fn gpt_attention_kind_matters() {
    let mut rng = Rng::new(13, 1);
    let (idx, tg) = batch(&mut rng, 2, 5, 11);
    let loss = |kind| random_model(model_config(kind, true), 3).forward(&idx, Some(&tg), 2, 5, None).unwrap().unwrap();
    let (s, q) = (loss(AttentionKind::Softmax), loss(AttentionKind::Quiet));
    assert!((s - q).abs() > 1e-6, "softmax {s} vs quiet {q}");
}

/// backward accumulates: two backward(0.5) after identical forwards equal one backward(1.0); and
/// backward(0.5) on batches A and B equals the mean of their separate gradients.
#[test]
fn gpt_gradient_accumulation() {
    for (attention, dropout) in [(AttentionKind::Quiet, 0.2), (AttentionKind::Softmax, 0.0)] {
        let mut m = random_model(model_config(attention, true), 21);
        let mut rng = Rng::new(22, 1);
        let (a, ta) = batch(&mut rng, 2, 6, 11);
        let (bb, tb) = batch(&mut rng, 2, 6, 11);
        let drop = Dropout::new(dropout, 7, 1, 0);
        let mut grad_of = |steps: &[(&[u32], &[u32], f64)]| {
            m.zero_grad();
            for &(x, y, s) in steps {
                m.forward(x, Some(y), 2, 6, drop).unwrap();
                m.backward(s).unwrap();
            }
            m.grads.clone()
        };
        let one = grad_of(&[(&a, &ta, 1.0)]);
        let two = grad_of(&[(&a, &ta, 0.5), (&a, &ta, 0.5)]);
        let scale = one.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        assert!(scale > 1e-3);
        let e = max_abs_diff(&one, &two);
        println!("accumulation {attention}: max |2×backward(0.5) − backward(1)| = {e:e} (max|g| {scale:.2e})");
        assert!(e <= 1e-14 * scale, "{attention}: 2 × backward(0.5) differs from backward(1.0) by {e:e}");
        let gb = grad_of(&[(&bb, &tb, 1.0)]);
        let mixed = grad_of(&[(&a, &ta, 0.5), (&bb, &tb, 0.5)]);
        let want: Vec<f64> = one.iter().zip(&gb).map(|(x, y)| 0.5 * (x + y)).collect();
        let e = max_abs_diff(&mixed, &want);
        assert!(e <= 1e-13 * scale, "{attention}: backward over two batches: {e:e}");
        assert!(max_abs_diff(&one, &gb) > 1e-3, "the two batches give the same gradient");
    }
}

/// The checker itself: a gradient off by 1e-4 relative, or missing a factor, must fail.
#[test]
fn checker_rejects_wrong_gradients() {
    let (n, c, oc) = (B * T, C, OC);
    let mut rng = Rng::new(30, 0);
    let inp = randn(&mut rng, n * c, 1.0);
    let w = randn(&mut rng, oc * c, 1.0);
    let g = randn(&mut rng, n * oc, 1.0);
    let fwd = |w: &[f64]| {
        let mut out = vec![0.0; n * oc];
        matmul_forward(&mut out, &inp, w, None, n, c, oc, true);
        out
    };
    let (mut di, mut dw) = (vec![0.0; n * c], vec![0.0; oc * c]);
    matmul_backward(&mut di, Dinp::Add, &mut dw, None, &g, &inp, &w, n, c, oc, true);
    let num = numeric(&w, &all(oc * c), &g, fwd);
    assert!(errors(&dw, &num, &all(oc * c)).bad.is_empty());
    let off: Vec<f64> = dw.iter().map(|x| x * (1.0 + 1e-4)).collect();
    assert!(errors(&off, &num, &all(oc * c)).bad.len() > oc * c / 2, "a 1e-4 relative error passed");
    let half: Vec<f64> = dw.iter().map(|x| x * 0.5).collect();
    assert!(errors(&half, &num, &all(oc * c)).bad.len() > oc * c / 2, "a missing factor 2 passed");
}
