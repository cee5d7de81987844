//! The attention variants beyond softmax1 (clipped softmax, per-head gate, output gate, learned sink):
//! every new backward against f64 finite differences (both attention kernels, the gate kernel, the
//! whole model and every element of the new parameters), the two attention kernels against each other
//! (f32 and f64, forward and backward, every variant, with and without dropout), sink at σ = 0 against
//! softmax1, the parameter layout, initialisation and weight decay of the new tensors, config and
//! checkpoint round trips (old checkpoints included), analysis and quantization of the new variants,
//! and a short training run of each on Tiny Shakespeare (relu, sigmoid and softpick too; their kernels'
//! own tests are in normalisers.rs).

mod common;

use common::attn::{backward, forward, Kernel};
use common::fd::*;
use common::{shakespeare, temp_dir, train_collecting_val_losses, VariantExt};
use quietgpt::analysis::analyze::{analyze, analyze_batch, AnalyzeOptions};
use quietgpt::analysis::quant::QuantScheme;
use quietgpt::analysis::quantize_eval::{
    quantize_eval, quantize_weights, ActQuant, QuantEvalOptions, RangeMethod, Setting,
};
use quietgpt::config::{AttentionKind, Config, ModelConfig};
use quietgpt::data::{prepare, Dataset, Tokenizer, TokenizerKind};
use quietgpt::engine::cpu::adamw::AdamW;
use quietgpt::engine::cpu::attention::Variant;
use quietgpt::engine::cpu::attention_gate::{gate_backward, gate_forward};
use quietgpt::engine::cpu::{Gpt, Real};
use quietgpt::engine::dropout::Dropout;
use quietgpt::engine::params::Kind;
use quietgpt::engine::{AdamWConfig, Buffer};
use quietgpt::rng::Rng;
use quietgpt::train::checkpoint::{self, TrainState};
use std::collections::HashMap;

/// The variants beyond softmax and quiet (the first two of `AttentionKind::ALL`).
const NEW: &[AttentionKind] = AttentionKind::ALL.split_at(2).1;

/// The pre-clip values a·u + γ of every visible (row, key), u the softmax, from the reference; rows of
/// one key are left out (u ≡ 1 there does not depend on the scores).
fn preclip(qkv: &[f64], zeta: f64, gamma: f64, b: usize, t: usize, c: usize, nh: usize) -> Vec<f64> {
    let (_, u) = forward(Kernel::Reference, qkv, &Variant::new(AttentionKind::Softmax), false, b, t, c, nh);
    let mut w = Vec::new();
    for bh in 0..b * nh {
        for i in 1..t {
            for j in 0..=i {
                w.push((zeta - gamma) * u[(bh * t + i) * t + j] + gamma);
            }
        }
    }
    w
}

/// dqkv (and dσ for sink) of one kernel and variant against finite differences.
#[allow(clippy::too_many_arguments)]
fn attention_fd(k: Kernel, kind: AttentionKind, dropout: bool, std: f64, zeta: f64, gamma: f64, seed: u64) {
    let (b, t, c, nh) = (2, 5, 8, 2);
    let mut rng = Rng::new(seed, 70);
    let qkv = randn(&mut rng, b * t * 3 * c, std);
    let g = randn(&mut rng, b * t * c, 1.0);
    let sinks = [0.4, -0.6];
    let v = Variant::new(kind).with_sink(&sinks).with_clip(zeta, gamma);
    let tag = format!("{k:?} {kind} dropout={dropout} std={std} zeta={zeta} gamma={gamma}");
    if kind == AttentionKind::Clipped {
        // away from the clip's boundaries, and both sides of each that the case means to test
        let w = preclip(&qkv, zeta, gamma, b, t, c, nh);
        let near = w.iter().map(|&x| x.abs().min((x - 1.0).abs())).fold(f64::INFINITY, f64::min);
        assert!(near > 1e-4, "{tag}: a weight is within {near:e} of a clip boundary");
        let (lo, mid, hi) = (
            w.iter().filter(|&&x| x <= 0.0).count(),
            w.iter().filter(|&&x| x > 0.0 && x < 1.0).count(),
            w.iter().filter(|&&x| x >= 1.0).count(),
        );
        assert!(lo > 0 && mid > 0, "{tag}: clipped {lo}, inside {mid}");
        assert!(zeta == 1.0 || hi > 0, "{tag}: nothing clipped at 1 (but row 0)");
        println!("{tag}: {lo} weights clipped to 0, {mid} inside, {hi} clipped to 1");
    }
    let (_, saved) = forward(k, &qkv, &v, dropout, b, t, c, nh);
    let (d, ds) = backward(k, &g, &qkv, &saved, &v, dropout, b, t, c, nh);
    let num = numeric(&qkv, &all(qkv.len()), &g, |x| forward(k, x, &v, dropout, b, t, c, nh).0);
    check(&format!("attention {tag} dqkv"), &d, &num, &all(qkv.len()));
    if kind == AttentionKind::Sink {
        let num = numeric(&sinks, &all(nh), &g, |s| forward(k, &qkv, &v.with_sink(s), dropout, b, t, c, nh).0);
        check(&format!("attention {tag} dsink"), &ds, &num, &all(nh));
    }
}

#[test]
fn clipped_softmax_gradients_both_kernels() {
    for k in [Kernel::Reference, Kernel::Fused] {
        attention_fd(k, AttentionKind::Clipped, false, 1.0, 1.0, -0.1, 1);
        attention_fd(k, AttentionKind::Clipped, true, 1.0, 1.0, -0.1, 1);
        // ζ > 1: weights also clip at 1 (row 0 always: ζ·1 + γ(1 − 1) = ζ)
        attention_fd(k, AttentionKind::Clipped, false, 2.0, 1.2, -0.1, 2);
        attention_fd(k, AttentionKind::Clipped, true, 2.0, 1.2, -0.1, 2);
    }
}

#[test]
fn sink_gradients_both_kernels() {
    for k in [Kernel::Reference, Kernel::Fused] {
        for (dropout, std, seed) in [(false, 1.0, 3), (false, 2.0, 4), (true, 1.0, 5)] {
            attention_fd(k, AttentionKind::Sink, dropout, std, 1.0, 0.0, seed);
        }
    }
}

/// The plain variants through the fused kernel (the reference is covered in kernels.rs).
#[test]
fn fused_kernel_gradients_plain_variants() {
    for kind in [AttentionKind::Softmax, AttentionKind::Quiet, AttentionKind::Gated] {
        attention_fd(Kernel::Fused, kind, false, 1.5, 1.0, 0.0, 6);
        attention_fd(Kernel::Fused, kind, true, 1.5, 1.0, 0.0, 6);
    }
}

/// The reference and the fused kernel agree on every variant, with and without dropout, forward
/// (output) and backward (∂qkv, ∂σ), in f64 (to rounding) and f32; at T = 16 (one block of queries in
/// the fused kernel) and T = 150 (blocks of 64, 64 and 22).
#[test]
fn reference_and_fused_kernels_agree() {
    fn run<F: Real>(tol: f64) {
        for t in [16, 150] {
            run_t::<F>(tol, t);
        }
    }
    fn run_t<F: Real>(tol: f64, t: usize) {
        let (b, c, nh) = (2, 32, 4);
        let mut rng = Rng::new(8, 70);
        let qkv: Vec<F> = (0..b * t * 3 * c).map(|_| F::from_f64(rng.normal() * 1.5)).collect();
        let dout: Vec<F> = (0..b * t * c).map(|_| F::from_f64(rng.normal())).collect();
        let sinks: Vec<F> = [0.5, -1.0, 2.0, 0.0].iter().map(|&x| F::from_f64(x)).collect();
        let scale = |x: &[F]| x.iter().fold(1.0f64, |m, v| m.max(v.to_f64().abs()));
        let err = |x: &[F], y: &[F]| x.iter().zip(y).map(|(a, b)| (a.to_f64() - b.to_f64()).abs()).fold(0.0, f64::max);
        for kind in AttentionKind::ALL {
            for dropout in [false, true] {
                let v = Variant::new(kind).with_sink(&sinks).with_clip(F::from_f64(1.1), F::from_f64(-0.05));
                let (o_r, att) = forward(Kernel::Reference, &qkv, &v, dropout, b, t, c, nh);
                let (o_f, lse) = forward(Kernel::Fused, &qkv, &v, dropout, b, t, c, nh);
                let (d_r, s_r) = backward(Kernel::Reference, &dout, &qkv, &att, &v, dropout, b, t, c, nh);
                let (d_f, s_f) = backward(Kernel::Fused, &dout, &qkv, &lse, &v, dropout, b, t, c, nh);
                let (eo, ed, es) =
                    (err(&o_r, &o_f) / scale(&o_r), err(&d_r, &d_f) / scale(&d_r), err(&s_r, &s_f) / scale(&s_r));
                println!("reference vs fused T={t} {kind} dropout={dropout}: out {eo:.1e}, dqkv {ed:.1e}, dsink {es:.1e} (relative to max)");
                assert!(
                    eo < tol && ed < tol && es < tol,
                    "T={t} {kind} dropout={dropout}: out {eo:e}, dqkv {ed:e}, dsink {es:e}"
                );
                if kind == AttentionKind::Sink {
                    assert!(s_r.iter().all(|x| x.to_f64().abs() > 1e-6), "{kind}: a sink gradient is 0: {s_r:?}");
                }
            }
        }
    }
    run::<f64>(1e-12);
    run::<f32>(5e-6);
}

/// The fused kernel is causal on its own (a wrong mask under softmax1 gives zeros, not NaN, so agreement
/// with the reference is not enough): rows run over whole vectors of keys, the keys past the diagonal
/// masked, so at T = 40 (rows padded to 16 and 32 keys, and a last partial block of the 64-query blocks)
/// changing q, k, v at positions > i must leave the output at ≤ i bitwise unchanged, and an upstream
/// gradient at ≤ i must reach no qkv at > i.
#[test]
fn fused_kernel_is_causal() {
    let (b, t, c, nh) = (2, 40, 32, 4);
    let mut rng = Rng::new(9, 70);
    let qkv: Vec<f32> = (0..b * t * 3 * c).map(|_| rng.normal() as f32 * 2.0).collect();
    let sinks = [0.5f32, -1.0, 2.0, 0.0];
    for kind in AttentionKind::ALL {
        for dropout in [false, true] {
            let v = Variant::new(kind).with_sink(&sinks).with_clip(1.1, -0.05);
            let (out, lse) = forward(Kernel::Fused, &qkv, &v, dropout, b, t, c, nh);
            for i in [0, 5, 15, 16, 17, 31, 38] {
                let mut q2 = qkv.clone();
                for bi in 0..b {
                    q2[(bi * t + i + 1) * 3 * c..(bi + 1) * t * 3 * c]
                        .iter_mut()
                        .for_each(|x| *x = rng.normal() as f32 * 3.0);
                }
                let (out2, _) = forward(Kernel::Fused, &q2, &v, dropout, b, t, c, nh);
                for bi in 0..b {
                    let (past, future) = ((bi * t) * c..(bi * t + i + 1) * c, (bi * t + i + 1) * c..(bi + 1) * t * c);
                    assert!(
                        out[past.clone()].iter().zip(&out2[past]).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{kind} dropout={dropout}: output at ≤ {i} depends on the future"
                    );
                    assert!(out[future.clone()] != out2[future], "{kind}: the perturbation did nothing");
                }
                let mut dout: Vec<f32> = (0..b * t * c).map(|_| rng.normal() as f32).collect();
                for bi in 0..b {
                    dout[(bi * t + i + 1) * c..(bi + 1) * t * c].fill(0.0);
                }
                let (d, _) = backward(Kernel::Fused, &dout, &qkv, &lse, &v, dropout, b, t, c, nh);
                for bi in 0..b {
                    let future = &d[(bi * t + i + 1) * 3 * c..(bi + 1) * t * 3 * c];
                    assert!(
                        future.iter().all(|&x| x == 0.0),
                        "{kind} dropout={dropout}: gradient from ≤ {i} reached the future"
                    );
                }
            }
        }
    }
}

/// Sink with every σ_h = 0 is softmax1: the same bits forward and backward, in both kernels and both
/// precisions, and for the whole model.
#[test]
fn sink_at_zero_is_softmax1() {
    fn kernels<F: Real>() {
        let (b, t, c, nh) = (2, 9, 16, 2);
        let mut rng = Rng::new(9, 70);
        let qkv: Vec<F> = (0..b * t * 3 * c).map(|_| F::from_f64(rng.normal() * 2.0)).collect();
        let dout: Vec<F> = (0..b * t * c).map(|_| F::from_f64(rng.normal())).collect();
        let zeros = vec![F::ZERO; nh];
        let (q, s) = (Variant::new(AttentionKind::Quiet), Variant::new(AttentionKind::Sink).with_sink(&zeros));
        for k in [Kernel::Reference, Kernel::Fused] {
            for dropout in [false, true] {
                let (oq, aq) = forward(k, &qkv, &q, dropout, b, t, c, nh);
                let (os, as_) = forward(k, &qkv, &s, dropout, b, t, c, nh);
                let bits =
                    |x: &[F], y: &[F]| x.iter().zip(y).all(|(a, b)| a.to_f64().to_bits() == b.to_f64().to_bits());
                assert!(bits(&oq, &os) && bits(&aq, &as_), "{k:?} dropout={dropout}: forward differs");
                let (dq, _) = backward(k, &dout, &qkv, &aq, &q, dropout, b, t, c, nh);
                let (ds, _) = backward(k, &dout, &qkv, &as_, &s, dropout, b, t, c, nh);
                assert!(bits(&dq, &ds), "{k:?} dropout={dropout}: input gradients differ");
            }
        }
    }
    kernels::<f32>();
    kernels::<f64>();

    // the whole model, f32, both kernels: same loss and gradients of every shared tensor (bitwise)
    for reference in [false, true] {
        let cfg = |kind| ModelConfig::new(2, 2, 16, 8, 13, true, 0.1, kind);
        let mut quiet = Gpt::<f32>::new(cfg(AttentionKind::Quiet), 2).unwrap();
        quiet.init(&mut Rng::new(1, 1));
        let mut sink = Gpt::<f32>::new(cfg(AttentionKind::Sink), 2).unwrap();
        for t in quiet.layout.named() {
            let dst = sink.layout.find(&t.name).unwrap().clone();
            sink.params[dst.offset..dst.offset + dst.len].copy_from_slice(&quiet.params[t.offset..t.offset + t.len]);
        }
        quiet.set_store_attention(reference);
        sink.set_store_attention(reference);
        let mut rng = Rng::new(2, 2);
        let (idx, tg) = batch(&mut rng, 2, 8, 13);
        let drop = Dropout::new(0.1, 7, 3, 0);
        let lq = quiet.forward(&idx, Some(&tg), 2, 8, drop).unwrap().unwrap();
        let ls = sink.forward(&idx, Some(&tg), 2, 8, drop).unwrap().unwrap();
        assert_eq!(lq.to_bits(), ls.to_bits(), "reference={reference}: loss {lq} vs {ls}");
        quiet.backward(1.0).unwrap();
        sink.backward(1.0).unwrap();
        for t in quiet.layout.named() {
            let (a, b) = (quiet.grad(&t.name).unwrap(), sink.grad(&t.name).unwrap());
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "reference={reference}: grad {} differs",
                t.name
            );
        }
        let gs = sink.grad("transformer.h.1.attn.sink").unwrap();
        assert!(gs.iter().all(|g| g.abs() > 0.0), "the sink logits get no gradient: {gs:?}");
    }
}

// ------------------------------------------------------------------------------------------------ gates

fn gate_case(n: usize, c: usize, g: usize, seed: u64) {
    let mut rng = Rng::new(seed, 71);
    let y = randn(&mut rng, n * c, 1.0);
    let z = randn(&mut rng, n * g, 2.0);
    let up = randn(&mut rng, n * c, 1.0);
    let fwd = |y: &[f64], z: &[f64]| {
        let (mut out, mut s) = (vec![f64::NAN; n * c], z.to_vec());
        gate_forward(&mut out, &mut s, y, n, c, g);
        out
    };
    let (mut out, mut s) = (vec![0.0; n * c], z.clone());
    gate_forward(&mut out, &mut s, &y, n, c, g);
    for (r, row) in out.chunks(c).enumerate() {
        for (ch, &o) in row.iter().enumerate() {
            let want = y[r * c + ch] / (1.0 + (-z[r * g + ch / (c / g)]).exp());
            assert!((o - want).abs() < 1e-15, "gate value");
        }
    }
    let pre = randn(&mut rng, n * c, 1.0);
    let mut dy = pre.clone();
    let mut dz = vec![f64::NAN; n * g];
    gate_backward(&mut dy, &mut dz, &up, &y, &s, n, c, g);
    let tag = format!("gate {n}x{c} groups={g}");
    check(&format!("{tag} dy"), &added(&dy, &pre), &numeric(&y, &all(n * c), &up, |x| fwd(x, &z)), &all(n * c));
    check(&format!("{tag} dz"), &dz, &numeric(&z, &all(n * g), &up, |x| fwd(&y, x)), &all(n * g));
}

#[test]
fn gate_gradients() {
    gate_case(10, 8, 2, 1); // per head (hs = 4)
    gate_case(10, 8, 8, 2); // per channel
    gate_case(37, 12, 3, 3); // past ROW_CHUNK rows
}

// ----------------------------------------------------------------------------------------- whole model

/// The tiny f64 model of the FD tests with the clip active at block_size 6: γ = −α/6.
fn cfg(kind: AttentionKind, bias: bool) -> ModelConfig {
    let mut c = ModelConfig::new(2, 2, 8, 6, 11, bias, 0.0, kind);
    c.clip_alpha = 0.6; // γ = −0.1
    c.gate_init = 0.4;
    c
}

#[test]
fn gpt_gradient_clipped() {
    model_case_cfg(cfg(AttentionKind::Clipped, true), 0.0, 2, 5);
    let mut c = cfg(AttentionKind::Clipped, false);
    c.clip_zeta = 1.2;
    model_case_cfg(c, 0.2, 2, 6);
}

#[test]
fn gpt_gradient_gated() {
    model_case_cfg(cfg(AttentionKind::Gated, true), 0.0, 2, 5);
    model_case_cfg(cfg(AttentionKind::Gated, false), 0.2, 2, 6);
}

#[test]
fn gpt_gradient_outgate() {
    model_case_cfg(cfg(AttentionKind::Outgate, true), 0.2, 2, 5);
    model_case_cfg(cfg(AttentionKind::Outgate, false), 0.0, 1, 6);
}

#[test]
fn gpt_gradient_sink() {
    model_case_cfg(cfg(AttentionKind::Sink, true), 0.0, 2, 5);
    model_case_cfg(cfg(AttentionKind::Sink, false), 0.2, 2, 6);
}

/// Every element of the variants' own tensors (sink logits, gate weights and biases) against finite
/// differences of the whole model's loss, through both attention kernels.
#[test]
fn new_parameters_gradients_every_element() {
    for kind in [AttentionKind::Sink, AttentionKind::Gated, AttentionKind::Outgate] {
        for (bias, dropout, reference) in [(true, 0.0, false), (false, 0.2, true)] {
            let c = cfg(kind, bias);
            let mut m = random_model(c.clone(), 31);
            m.set_store_attention(reference);
            let mut rng = Rng::new(32, 1);
            let (idx, tg) = batch(&mut rng, 2, 6, c.vocab_size);
            let drop = Dropout::new(dropout, 99, 1, 0);
            m.zero_grad();
            m.forward(&idx, Some(&tg), 2, 6, drop).unwrap();
            m.backward(1.0).unwrap();
            let grads = m.grads.clone();
            let own: Vec<_> = m
                .layout
                .named()
                .iter()
                .filter(|t| matches!(t.kind, Kind::Sink | Kind::GateW | Kind::GateB | Kind::OutGateW | Kind::OutGateB))
                .cloned()
                .collect();
            assert!(!own.is_empty());
            let params = m.params.clone();
            for t in &own {
                let which: Vec<usize> = (t.offset..t.offset + t.len).collect();
                let num = numeric(&params, &which, &[1.0], |p| {
                    m.params.copy_from_slice(p);
                    vec![m.forward(&idx, Some(&tg), 2, 6, drop).unwrap().unwrap()]
                });
                m.params.copy_from_slice(&params);
                let g: Vec<f64> = grads.clone();
                check(
                    &format!("gpt {kind} bias={bias} dropout={dropout} reference={reference} {}", t.name),
                    &g,
                    &num,
                    &which,
                );
            }
        }
    }
}

// ----------------------------------------------------------------------------- layout, init and decay

/// nanoGPT's parameter count of the softmax model (lm_head tied).
fn base_count(c: &ModelConfig) -> usize {
    let (l, e, v, t) = (c.n_layer, c.n_embd, c.vocab_size, c.block_size);
    let b = c.bias as usize;
    v * e + t * e + l * (2 * e * (1 + b) + 12 * e * e + b * 9 * e) + e * (1 + b)
}

#[test]
fn layout_of_the_new_tensors() {
    for bias in [false, true] {
        let c = |k| ModelConfig::new(3, 4, 16, 8, 10, bias, 0.0, k);
        let base = base_count(&c(AttentionKind::Softmax));
        let names =
            |k| Gpt::<f32>::new(c(k), 1).unwrap().layout.named().iter().map(|t| t.name.clone()).collect::<Vec<_>>();
        let softmax = names(AttentionKind::Softmax);
        for k in [AttentionKind::Softmax, AttentionKind::Quiet, AttentionKind::Clipped] {
            let m = Gpt::<f32>::new(c(k), 1).unwrap();
            assert_eq!(m.num_params(), base, "{k} bias={bias}");
            assert_eq!(names(k), softmax, "{k}: softmax's tensors, no others");
        }
        let extra = |k, per_layer: usize| {
            let m = Gpt::<f32>::new(c(k), 1).unwrap();
            assert_eq!(m.num_params(), base + 3 * per_layer, "{k} bias={bias}");
            m
        };
        let m = extra(AttentionKind::Sink, 4);
        let t = m.layout.find("transformer.h.2.attn.sink").unwrap();
        assert_eq!((t.shape.clone(), t.decays()), (vec![4], false));
        let m = extra(AttentionKind::Gated, 4 * 16 + 4);
        let (w, b) = (
            m.layout.find("transformer.h.1.attn.c_gate.weight").unwrap(),
            m.layout.find("transformer.h.1.attn.c_gate.bias").unwrap(),
        );
        assert_eq!((w.shape.clone(), w.decays(), b.shape.clone(), b.decays()), (vec![4, 16], true, vec![4], false));
        let m = extra(AttentionKind::Outgate, 16 * 16 + 16 * bias as usize);
        let w = m.layout.find("transformer.h.0.attn.c_outgate.weight").unwrap();
        assert_eq!((w.shape.clone(), w.decays()), (vec![16, 16], true));
        assert_eq!(m.layout.find("transformer.h.0.attn.c_outgate.bias").is_some(), bias);
        // naming order: the attention's own tensors right after c_proj
        let n = names(AttentionKind::Gated);
        let at = |s: &str| n.iter().position(|x| x == s).unwrap();
        assert_eq!(
            at("transformer.h.0.attn.c_gate.weight"),
            at("transformer.h.0.attn.c_proj.weight") + 1 + bias as usize
        );
        assert_eq!(at("transformer.h.0.ln_2.weight"), at("transformer.h.0.attn.c_gate.bias") + 1);
    }
}

#[test]
fn init_of_the_new_tensors_and_their_weight_decay() {
    let mut c = ModelConfig::new(2, 4, 32, 8, 10, true, 0.0, AttentionKind::Gated);
    c.gate_init = 0.4;
    let mut m = Gpt::<f32>::new(c.clone(), 1).unwrap();
    m.init(&mut Rng::new(3, 1));
    let b = m.tensor("transformer.h.1.attn.c_gate.bias").unwrap();
    assert!(b.iter().all(|&x| (1.0 / (1.0 + (-x).exp()) - 0.4).abs() < 1e-6), "gate bias {b:?}");
    let w = m.tensor("transformer.h.1.attn.c_gate.weight").unwrap();
    let std = (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt();
    assert!((0.014..0.026).contains(&std), "c_gate.weight std {std}");

    c.attention = AttentionKind::Outgate;
    let mut m = Gpt::<f32>::new(c.clone(), 1).unwrap();
    m.init(&mut Rng::new(3, 1));
    assert!(m.tensor("transformer.h.0.attn.c_outgate.bias").unwrap().iter().all(|&x| x == 0.0));

    c.attention = AttentionKind::Sink;
    let mut m = Gpt::<f32>::new(c.clone(), 1).unwrap();
    m.init(&mut Rng::new(3, 1));
    assert!(m.tensor("transformer.h.0.attn.sink").unwrap().iter().all(|&x| x == 0.0), "sink starts as softmax1");

    // the tensors every variant has start as softmax's (same seed): variants compare from the same init
    let mut base = Gpt::<f32>::new(ModelConfig { attention: AttentionKind::Softmax, ..c.clone() }, 1).unwrap();
    base.init(&mut Rng::new(3, 1));
    for kind in AttentionKind::ALL {
        let mut m = Gpt::<f32>::new(ModelConfig { attention: kind, ..c.clone() }, 1).unwrap();
        m.init(&mut Rng::new(3, 1));
        for t in base.layout.named() {
            assert!(m.tensor(&t.name).unwrap() == base.tensor(&t.name).unwrap(), "{kind}: {} starts elsewhere", t.name);
        }
    }

    // AdamW with zero gradients: only the decayed tensors move (by the factor 1 − lr·wd)
    for kind in [AttentionKind::Sink, AttentionKind::Gated] {
        c.attention = kind;
        let mut m = Gpt::<f32>::new(c.clone(), 1).unwrap();
        m.init(&mut Rng::new(3, 1));
        m.params.iter_mut().for_each(|p| *p += 0.5); // sink and biases away from 0
        let before = m.params.clone();
        let mut opt = AdamW::new(&m.layout);
        let Gpt { params, grads, layout, .. } = &mut m;
        opt.update(params, grads, layout, 0.1, &AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.5 });
        for t in m.layout.named() {
            let same = m.params[t.offset..t.offset + t.len] == before[t.offset..t.offset + t.len];
            assert_eq!(same, !t.decays(), "{kind}: {} decayed = {}", t.name, !same);
        }
    }
}

// ----------------------------------------------------------------------------------- config, checkpoint

#[test]
fn config_keys_names_and_validation() {
    for k in AttentionKind::ALL {
        assert_eq!(k.name().parse::<AttentionKind>().unwrap(), k);
        assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.name()));
    }
    let e = "loud".parse::<AttentionKind>().unwrap_err().to_string();
    assert!(e.contains("clipped") && e.contains("outgate") && e.contains("sink"), "{e}");
    let c = Config::build(
        None,
        None,
        &["--attention=clipped".into(), "--clip_alpha=3".into(), "--clip_zeta=1.05".into(), "--gate_init=0.5".into()],
    )
    .unwrap();
    let m = c.model_config(10);
    assert_eq!((m.attention, m.clip_alpha, m.clip_zeta, m.gate_init), (AttentionKind::Clipped, 3.0, 1.05, 0.5));
    assert!((m.clip_gamma() + 3.0 / 1024.0).abs() < 1e-12);
    for bad in ["--clip_zeta=0.9", "--clip_alpha=-1", "--gate_init=1", "--gate_init=0"] {
        let key = bad.trim_start_matches("--").split('=').next().unwrap();
        let e = Config::build(None, None, &[bad.into()]).unwrap_err().to_string();
        assert!(e.contains(key), "{bad}: {e}");
    }
    // defaults (Bondarenko et al.): ζ = 1, α = 12, π_init = 0.25
    let d = Config::default();
    assert_eq!((d.clip_zeta, d.clip_alpha, d.gate_init), (1.0, 12.0, 0.25));
    // configs and model metadata written before these keys existed still load, with the defaults
    let old: String = d
        .to_toml()
        .lines()
        .filter(|l| !l.starts_with("clip_") && !l.starts_with("gate_init"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!old.contains("clip_"));
    assert_eq!(toml::from_str::<Config>(&old).unwrap(), d);
    let json = r#"{"n_layer":1,"n_head":1,"n_embd":4,"block_size":8,"vocab_size":5,"bias":false,"dropout":0.0,"attention":"quiet"}"#;
    let m: ModelConfig = serde_json::from_str(json).unwrap();
    assert_eq!(m, ModelConfig::new(1, 1, 4, 8, 5, false, 0.0, AttentionKind::Quiet));
}

fn small_config(kind: AttentionKind, out: &std::path::Path) -> Config {
    let o: Vec<String> = [
        "n_layer=2",
        "n_head=2",
        "n_embd=16",
        "block_size=8",
        "batch_size=2",
        "vocab_size=12",
        "bias=false",
        "clip_zeta=1.1",
        "clip_alpha=3",
        "gate_init=0.3",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("attention={}", kind.name()), format!("out_dir={:?}", out.display().to_string())])
    .collect();
    Config::build(None, None, &o).unwrap()
}

/// save → load gives the same parameters and moments, and the variant with its hyper-parameters.
#[test]
fn checkpoints_round_trip_every_variant() {
    let dir = temp_dir("variants-ckpt");
    let tok = Tokenizer::char_from_text("abcdefghijkl");
    for kind in AttentionKind::ALL {
        let cfg = small_config(kind, &dir);
        let mut m = Gpt::<f32>::new(cfg.model_config(12), 2).unwrap();
        m.init(&mut Rng::new(5, 1));
        let mut rng = Rng::new(6, 0);
        m.params.iter_mut().for_each(|p| *p += rng.normal() as f32 * 0.1);
        let mut opt = AdamW::new(&m.layout);
        opt.m.iter_mut().for_each(|x| *x = rng.normal() as f32);
        opt.step = 3;
        let state = TrainState { iter_num: 3, best_val_loss: 2.0, adam_step: 3, data_rng: Rng::new(1, 2) };
        let path = dir.join(format!("{kind}.safetensors"));
        checkpoint::save_host(&path, &cfg, &m.config, &m.params, &opt.m, &opt.v, &state, &tok).unwrap();
        let back = checkpoint::load(&path).unwrap();
        assert_eq!(back.config, cfg, "{kind}");
        assert_eq!(back.model, m.config, "{kind}");
        assert_eq!(
            (back.model.attention, back.model.clip_zeta, back.model.clip_alpha, back.model.gate_init),
            (kind, 1.1, 3.0, 0.3)
        );
        assert!(back.params == m.params && back.exp_avg == opt.m, "{kind}: tensors differ after the round trip");
        // and the loaded model computes what the saved one did
        let idx: Vec<u32> = (0..16).map(|i| (i * 5 % 12) as u32).collect();
        let (mut a, mut b) = (m, back.cpu_model(2).unwrap());
        let la = a.forward(&idx, Some(&idx), 2, 8, None).unwrap().unwrap();
        let lb = b.forward(&idx, Some(&idx), 2, 8, None).unwrap().unwrap();
        assert_eq!(la, lb, "{kind}");
    }
}

/// A checkpoint written before the variant keys existed (its metadata lacks them) still loads.
#[test]
fn old_checkpoints_load_with_default_variant_keys() {
    let dir = temp_dir("variants-old-ckpt");
    let cfg = small_config(AttentionKind::Quiet, &dir);
    let mut m = Gpt::<f32>::new(cfg.model_config(12), 1).unwrap();
    m.init(&mut Rng::new(5, 1));
    let state = TrainState { iter_num: 1, best_val_loss: 3.0, adam_step: 1, data_rng: Rng::new(1, 2) };
    let path = dir.join("new.safetensors");
    let zeros = vec![0.0f32; m.layout.total];
    let tok = Tokenizer::char_from_text("abcdefghijkl");
    checkpoint::save_host(&path, &cfg, &m.config, &m.params, &zeros, &zeros, &state, &tok).unwrap();
    // strip the keys from both metadata entries and rewrite the file
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta: HashMap<String, String> = header.metadata().clone().unwrap();
    let config: String = meta["config"]
        .lines()
        .filter(|l| !l.starts_with("clip_") && !l.starts_with("gate_init"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut model: serde_json::Value = serde_json::from_str(&meta["model"]).unwrap();
    for k in ["clip_zeta", "clip_alpha", "gate_init"] {
        model.as_object_mut().unwrap().remove(k);
    }
    meta.insert("config".into(), config);
    meta.insert("model".into(), model.to_string());
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, safetensors::tensor::TensorView)> = st.tensors();
    let old = dir.join("old.safetensors");
    std::fs::write(&old, safetensors::serialize(tensors, Some(meta)).unwrap()).unwrap();
    let back = checkpoint::load(&old).unwrap();
    assert_eq!(back.model.attention, AttentionKind::Quiet);
    assert_eq!((back.config.clip_zeta, back.config.clip_alpha, back.config.gate_init), (1.0, 12.0, 0.25));
    assert!(back.params == m.params);
}

// --------------------------------------------------------------------------------- analyze, quantize

/// With q = k = 0 every score is 0, so each row's null mass is known: e^σ/(e^σ + i + 1) for the sink,
/// 1/(i + 2) for quiet, 1 − (i+1)·clip(a/(i+1) + γ) for clipped, 1 for relu and softpick (all weights
/// 0), 1 − (i+1)/2 for sigmoid; and a gate with weight 0 and bias b has mean σ(b).
#[test]
fn analyze_reports_null_mass_and_gates() {
    let (b, t) = (2, 8);
    for kind in AttentionKind::ALL {
        let mut c = ModelConfig::new(2, 2, 16, t, 10, true, 0.0, kind);
        c.clip_alpha = 0.8; // γ = −0.1
        let mut m = Gpt::<f32>::new(c.clone(), b).unwrap();
        m.init(&mut Rng::new(4, 1));
        let sinks = [0.5f32, -1.0];
        let names: Vec<_> = m.layout.named().to_vec();
        for tn in &names {
            let p = &mut m.params[tn.offset..tn.offset + tn.len];
            if tn.name.ends_with("attn.c_attn.weight") || tn.name.ends_with("attn.c_attn.bias") {
                let qk = if tn.shape.len() == 2 { 2 * 16 * 16 } else { 2 * 16 };
                p[..qk].fill(0.0); // q and k
            } else if tn.name.ends_with("attn.sink") {
                p.copy_from_slice(&sinks);
            } else if tn.name.contains("gate.weight") {
                p.fill(0.0);
            } else if tn.name.contains("gate.bias") {
                p.fill((0.3f32 / 0.7).ln());
            }
        }
        let idx: Vec<u32> = (0..b * t).map(|i| (i * 7 % 10) as u32).collect();
        let opts = AnalyzeOptions { windows: b, batch: b, top_k_channels: 2 };
        let a = analyze_batch(&mut m, &idx, Some(&idx), b, t, &opts).unwrap();
        let gamma = c.clip_gamma();
        let expect = |h: usize| -> f64 {
            (0..t)
                .map(|i| {
                    let n = (i + 1) as f64;
                    match kind {
                        AttentionKind::Quiet => 1.0 / (n + 1.0),
                        AttentionKind::Sink => (sinks[h] as f64).exp() / ((sinks[h] as f64).exp() + n),
                        AttentionKind::Clipped => 1.0 - n * ((1.0 - gamma) / n + gamma).clamp(0.0, 1.0),
                        AttentionKind::Relu | AttentionKind::Softpick => 1.0,
                        AttentionKind::Sigmoid => 1.0 - n / 2.0,
                        AttentionKind::Softmax | AttentionKind::Gated | AttentionKind::Outgate => 0.0,
                    }
                })
                .sum::<f64>()
                / t as f64
        };
        for l in &a.layers {
            for h in &l.heads {
                let want = expect(h.head);
                assert!(
                    (h.null_mass_mean - want).abs() < 2e-6,
                    "{kind} L{} h{}: null mass {} vs {want}",
                    l.layer,
                    h.head,
                    h.null_mass_mean
                );
                match kind {
                    AttentionKind::Gated | AttentionKind::Outgate => {
                        let g = h.gate_mean.expect("a gate mean");
                        assert!((g - 0.3).abs() < 1e-6, "{kind}: gate mean {g}");
                    }
                    _ => assert!(h.gate_mean.is_none()),
                }
            }
        }
        assert_eq!(a.attention.gate_mean.is_some(), kind.gate_groups(2, 16).is_some());
        if kind == AttentionKind::Clipped {
            assert!(a.attention.null_mass_mean > 0.05, "the clip removes mass: {}", a.attention.null_mass_mean);
        }
        let table = a.table();
        assert!(table.contains(kind.name()));
        assert_eq!(table.contains("mean gate"), kind.gate_groups(2, 16).is_some());
    }
}

/// Fake quantization reaches the gate maps' weights (they are Linear layers), not their biases or the
/// sink logits, and restores everything afterwards.
#[test]
fn quantization_covers_the_gate_weights() {
    for kind in [AttentionKind::Gated, AttentionKind::Outgate, AttentionKind::Sink] {
        let mut m = Gpt::<f32>::new(ModelConfig::new(2, 2, 16, 8, 10, true, 0.0, kind), 1).unwrap();
        m.init(&mut Rng::new(4, 1));
        let mut rng = Rng::new(5, 0);
        m.params.iter_mut().for_each(|p| *p += rng.normal() as f32 * 0.01);
        let before = m.params.clone();
        quantize_weights(&mut m, &QuantScheme::weights_per_channel(4)).unwrap();
        for t in m.layout.named() {
            let (x, y) = (&m.params[t.offset..t.offset + t.len], &before[t.offset..t.offset + t.len]);
            let gate_w = matches!(t.kind, Kind::GateW | Kind::OutGateW);
            if gate_w {
                assert!(x != y, "{kind}: {} not quantized", t.name);
                for row in x.chunks(t.shape[1]) {
                    let levels: std::collections::BTreeSet<u32> = row.iter().map(|v| v.to_bits()).collect();
                    assert!(levels.len() <= 16, "{}: {} levels in a row", t.name, levels.len());
                }
            }
            if matches!(t.kind, Kind::Sink | Kind::GateB | Kind::OutGateB) {
                assert!(x == y, "{kind}: {} changed", t.name);
            }
        }
    }
}

// ------------------------------------------------------------------------------------------- training

/// A few dozen steps of each new variant on Tiny Shakespeare: the val loss falls, the checkpoint brings
/// back the trained parameters with the variant and its hyper-parameters, and analyze / quantize-eval
/// run on it.
#[test]
fn short_runs_learn_and_round_trip() {
    let dir = temp_dir("variants-e2e");
    let text = std::fs::read_to_string(shakespeare()).expect("assets/tinyshakespeare.txt");
    prepare(&text, &dir.join("data"), TokenizerKind::Char).unwrap();
    let data = Dataset::open(&dir.join("data")).unwrap();
    for &kind in NEW {
        let out = dir.join(format!("out-{kind}"));
        let o: Vec<String> = [
            "n_layer=2",
            "n_head=2",
            "n_embd=64",
            "block_size=32",
            "batch_size=8",
            "dropout=0.0",
            "bias=true",
            "learning_rate=3e-3",
            "min_lr=3e-4",
            "warmup_iters=5",
            "eval_iters=5",
            "log_interval=1000",
            "max_iters=40",
            "lr_decay_iters=40",
            "eval_interval=40",
            "always_save_checkpoint=true",
            "clip_alpha=4",
            "gate_init=0.5",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            format!("attention={}", kind.name()),
            format!("data_dir={:?}", dir.join("data").display().to_string()),
            format!("out_dir={:?}", out.display().to_string()),
        ])
        .collect();
        let cfg = Config::build(Some("shakespeare-char"), None, &o).unwrap();
        let (tr, evals) = train_collecting_val_losses(cfg.clone());
        let (first, last) = (evals[0], *evals.last().unwrap());
        println!("{kind}: val loss {first:.3} -> {last:.3}");
        assert!(last < first - 0.6, "{kind}: val loss only fell from {first:.3} to {last:.3}");
        let ck = checkpoint::load(&out.join("ckpt.safetensors")).unwrap();
        let trained = tr.engine.snapshot(Buffer::Params).unwrap();
        assert!(ck.params == trained, "{kind}: parameters differ after the round trip");
        let mut model = ck.cpu_model(4).unwrap();
        assert_eq!(ck.config, cfg);
        assert_eq!((ck.model.attention, ck.model.clip_alpha, ck.model.gate_init), (kind, 4.0, 0.5));
        let a = analyze(&mut model, &data, &AnalyzeOptions { windows: 4, batch: 4, top_k_channels: 2 }).unwrap();
        assert!(a.loss.is_some_and(|l| (l - last).abs() < 0.5), "{kind}: analysis loss {:?}", a.loss);
        let opts = QuantEvalOptions {
            max_windows: Some(4),
            calib_windows: 4,
            settings: vec![Setting {
                name: "W8A8".into(),
                weights: Some(QuantScheme::weights(8)),
                activations: Some(ActQuant { scheme: QuantScheme::activations(8), range: RangeMethod::MinMax }),
            }],
        };
        let r = quantize_eval(&mut model, &data, &opts).unwrap();
        assert_eq!(r.attention, kind);
        assert!(r.results[1].gap.abs() < 0.2, "{kind}: W8A8 gap {}", r.results[1].gap);
        assert!(model.params == trained, "{kind}: quantize-eval left the parameters changed");
    }
}
