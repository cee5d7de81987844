//! The attention variants without a softmax, relu, sigmoid and softpick (`engine::cpu::attention_rows`):
//! each row rule against its definition and its backward against f64 finite differences
//! (`normalize` / `normalize_backward`), softpick's stable form at its edges (scores far beyond exp's
//! range, rows of one sign, all-zero scores, the subgradient at s = 0), both attention kernels' backward
//! against finite differences with and without dropout, and the whole model. (Both kernels against
//! each other, the causal mask of each, f32 against f64 and the engines walk `AttentionKind::ALL`, in
//! variants.rs, kernels.rs and engines.rs.)

mod common;

use common::attn::{backward, forward, Kernel};
use common::fd::*;
use common::VariantExt;
use quietgpt::config::{AttentionKind, ModelConfig};
use quietgpt::engine::cpu::attention::{from_scores, normalize, normalize_backward, Variant};
use quietgpt::engine::cpu::attention_rows::SOFTPICK_EPS;
use quietgpt::engine::cpu::Real;
use quietgpt::rng::Rng;

const KINDS: [AttentionKind; 3] = [AttentionKind::Relu, AttentionKind::Sigmoid, AttentionKind::Softpick];

/// One row through the reference row rule: the weights.
fn weights<F: Real>(kind: AttentionKind, s: &[F]) -> Vec<F> {
    let mut p = s.to_vec();
    normalize(&Variant::new(kind), 0, &mut p);
    p
}

/// One row's ∂L/∂s from g = ∂L/∂p, as the reference kernel's backward computes it.
fn row_grad<F: Real>(kind: AttentionKind, s: &[F], g: &[F]) -> Vec<F> {
    let v = Variant::new(kind);
    let (p, mut u, mut d) = (weights(kind, s), s.to_vec(), g.to_vec());
    let rule = v.rule(0);
    let u: &[F] = if rule.needs_scores() {
        from_scores(&rule, &mut u);
        &u
    } else {
        &p
    };
    let dnull = normalize_backward(&v, 0, &p, u, &mut d);
    assert_eq!(dnull.to_f64(), 0.0, "{kind}: no null logit, no null gradient");
    d
}

/// The definitions, in f64, written out directly.
fn definition(kind: AttentionKind, s: &[f64]) -> Vec<f64> {
    let n = s.len() as f64;
    match kind {
        AttentionKind::Relu => s.iter().map(|&x| x.max(0.0) / n).collect(),
        AttentionKind::Sigmoid => s.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect(),
        AttentionKind::Softpick => {
            let z: f64 = s.iter().map(|x| (x.exp() - 1.0).abs()).sum::<f64>() + SOFTPICK_EPS;
            s.iter().map(|x| (x.exp() - 1.0).max(0.0) / z).collect()
        }
        _ => unreachable!(),
    }
}

/// Rows of 1 to 9 keys, scores N(0, std²) kept at least 1e-3 from 0 (the kinks of relu and softpick).
fn rows(rng: &mut Rng, std: f64) -> Vec<Vec<f64>> {
    (1..=9)
        .map(|n| {
            (0..n)
                .map(|_| {
                    let x = rng.normal() * std;
                    if x.abs() < 1e-3 {
                        x + 0.01
                    } else {
                        x
                    }
                })
                .collect()
        })
        .collect()
}

#[test]
fn row_rules_match_their_definitions_and_finite_differences() {
    let mut rng = Rng::new(1, 80);
    for kind in KINDS {
        for std in [0.5, 2.0] {
            for s in rows(&mut rng, std) {
                let n = s.len();
                let p = weights(kind, &s);
                let want = definition(kind, &s);
                let err = p.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                assert!(err < 1e-14, "{kind} {s:?}: weights {p:?}, definition {want:?}");
                let g = randn(&mut rng, n, 1.0);
                let tag = format!("{kind} row of {n}, std {std}");
                let (a, num) = (row_grad(kind, &s, &g), numeric(&s, &all(n), &g, |x| weights(kind, x)));
                if s.iter().all(|&x| x < 0.0) && kind != AttentionKind::Sigmoid {
                    // a row of negative scores: all weights 0 around it, so no gradient
                    assert!(a.iter().chain(&num).all(|&x| x == 0.0), "{tag}: {a:?}, numeric {num:?}");
                } else if num.iter().all(|x| x.abs() < 1e-4) {
                    // softpick's one-key row: p = d/(d + ε), d = e^s − 1 > 0, is 1 up to ε/d, and so flat
                    let err = a.iter().zip(&num).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
                    assert!(kind == AttentionKind::Softpick && n == 1 && err < 1e-9, "{tag}: {a:?}, numeric {num:?}");
                } else {
                    check(&tag, &a, &num, &all(n));
                }
            }
        }
    }
}

/// relu divides by the number of visible keys, i.e. the query's position + 1, not by the row's sum: the
/// same scores weigh less in a later row, and rows need not sum to 1.
#[test]
fn relu_divides_by_the_position() {
    for n in 1..=6 {
        let p = weights(AttentionKind::Relu, &vec![3.0; n][..]);
        assert!(p.iter().all(|&x| x == 3.0 / n as f64), "row of {n}: {p:?}");
    }
    assert_eq!(weights(AttentionKind::Relu, &[-1.0, 0.0, 2.0, 6.0][..]), vec![0.0, 0.0, 0.5, 1.5]);
}

/// The subgradient at s = 0 exactly is 0 for relu and for both of softpick's kinks (max and |·|);
/// sigmoid is smooth there (σ' = 1/4).
#[test]
fn subgradient_at_zero() {
    let (s, g): (&[f64], &[f64]) = (&[0.0, 1.0, -0.5], &[1.0, -2.0, 0.5]);
    assert_eq!(row_grad(AttentionKind::Relu, s, g)[0], 0.0);
    assert_eq!(row_grad(AttentionKind::Softpick, s, g)[0], 0.0);
    assert_eq!(row_grad(AttentionKind::Sigmoid, s, g)[0], 0.25);
    // all scores 0: relu and softpick give zeros (softpick: 0/ε, not NaN) and pass no gradient
    for kind in [AttentionKind::Relu, AttentionKind::Softpick] {
        let z = [0.0f32; 4];
        assert_eq!(weights(kind, &z[..]), vec![0.0; 4], "{kind}");
        assert_eq!(row_grad(kind, &z[..], &[1.0; 4]), vec![0.0; 4], "{kind}");
    }
}

/// A softpick row whose scores are all ≤ 0 attends to nothing: every weight exactly 0, and (p ≡ 0 around
/// it) no gradient; in f32 too where e^{−max s} of a stable form without the max(0, ·) would overflow.
#[test]
fn softpick_negative_rows_are_zero() {
    let rows: [&[f64]; 4] = [&[-0.5, -2.0, -0.1], &[-100.0, -95.0], &[-1000.0], &[0.0, -3.0]];
    for s in rows {
        let p = weights(AttentionKind::Softpick, s);
        assert!(p.iter().all(|&x| x == 0.0), "{s:?}: {p:?}");
        let d = row_grad(AttentionKind::Softpick, s, &vec![1.5; s.len()][..]);
        assert!(d.iter().all(|&x| x == 0.0), "{s:?}: gradient {d:?}");
        let s32: Vec<f32> = s.iter().map(|&x| x as f32).collect();
        let p32 = weights(AttentionKind::Softpick, &s32[..]);
        let d32 = row_grad(AttentionKind::Softpick, &s32[..], &vec![1.5f32; s.len()][..]);
        assert!(p32.iter().chain(&d32).all(|&x| x == 0.0), "f32 {s:?}: {p32:?}, {d32:?}");
    }
}

/// Scores far beyond exp's range: the stable form (m = max(0, max s)) stays finite and equals the
/// definition computed with the scores shifted by m, in f64 (e^750 overflows) and f32 (e^100 does).
#[test]
fn softpick_large_scores_stay_finite() {
    for (s, shift) in [(vec![750.0, 749.5, 0.3, -2.0], 749.0), (vec![100.0, 99.0, 98.5], 98.0)] {
        // e^{s−m} − e^{−m} over Σ|·|: the same weights, the terms in e^{−m} far below rounding
        let e: Vec<f64> = s.iter().map(|x| (x - shift).exp()).collect();
        let z: f64 = e.iter().sum();
        let want: Vec<f64> = e.iter().map(|x| x / z).collect();
        let g = [1.0, -1.0, 0.5, 2.0];
        let p = weights(AttentionKind::Softpick, &s[..]);
        let d = row_grad(AttentionKind::Softpick, &s[..], &g[..s.len()]);
        assert!(p.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-14), "{s:?}: {p:?} vs {want:?}");
        assert!(d.iter().all(|x| x.is_finite()), "{s:?}: {d:?}");
        let s32: Vec<f32> = s.iter().map(|&x| x as f32).collect();
        let p32 = weights(AttentionKind::Softpick, &s32[..]);
        let d32 = row_grad(AttentionKind::Softpick, &s32, &[1.0f32, -1.0, 0.5, 2.0][..s.len()]);
        assert!(d32.iter().all(|x| x.is_finite()), "f32 {s:?}: {d32:?}");
        if s[0] < 200.0 {
            assert!(p32.iter().zip(&want).all(|(&a, b)| (a as f64 - b).abs() < 1e-6), "f32 {s:?}: {p32:?}");
        }
    }
}

#[test]
fn rows_need_not_sum_to_one() {
    for kind in KINDS {
        assert!(kind.has_null_mass(), "{kind}: its null mass 1 − Σ p is reported");
    }
    let s = [2.0, 1.5, 3.0];
    let sum = |k| weights(k, &s[..]).iter().sum::<f64>();
    assert!(sum(AttentionKind::Relu) > 1.0 && sum(AttentionKind::Sigmoid) > 1.0);
    assert!(sum(AttentionKind::Softpick) < 1.0);
}

// ---------------------------------------------------------------------------------- attention kernels

/// ∂qkv of one kernel against finite differences; every score at least 1e-4 from 0, and softpick's w =
/// e^s/N below 100 (its weight is a step of width ε where a row's Σ|e^s − 1| → 0).
fn kernel_fd(k: Kernel, kind: AttentionKind, dropout: bool, std: f64, seed: u64) {
    let (b, t, c, nh) = (2, 5, 8, 2);
    let hs = c / nh;
    let mut rng = Rng::new(seed, 81);
    let qkv = randn(&mut rng, b * t * 3 * c, std);
    let g = randn(&mut rng, b * t * c, 1.0);
    let tag = format!("{k:?} {kind} dropout={dropout} std={std}");
    let (mut near, mut wmax, mut pos) = (f64::INFINITY, 0.0f64, 0);
    for bi in 0..b {
        for h in 0..nh {
            for i in 0..t {
                let q = &qkv[(bi * t + i) * 3 * c + h * hs..][..hs];
                let s: Vec<f64> = (0..=i)
                    .map(|j| dot(q, &qkv[(bi * t + j) * 3 * c + c + h * hs..][..hs]) / (hs as f64).sqrt())
                    .collect();
                let n: f64 = s.iter().map(|x| (x.exp() - 1.0).abs()).sum();
                near = s.iter().fold(near, |m, x| m.min(x.abs()));
                wmax = s.iter().fold(wmax, |m, x| m.max(x.exp() / n));
                pos += s.iter().filter(|&&x| x > 0.0).count();
            }
        }
    }
    assert!(near > 1e-4 && wmax < 100.0, "{tag}: a score {near:e} from 0, w up to {wmax}");
    assert!(pos > 5 && pos < b * nh * t * (t + 1) / 2 - 5, "{tag}: {pos} positive scores: both signs wanted");
    let v = Variant::new(kind);
    let (_, saved) = forward(k, &qkv, &v, dropout, b, t, c, nh);
    let (d, _) = backward(k, &g, &qkv, &saved, &v, dropout, b, t, c, nh);
    let num = numeric(&qkv, &all(qkv.len()), &g, |x| forward(k, x, &v, dropout, b, t, c, nh).0);
    check(&format!("attention {tag} dqkv"), &d, &num, &all(qkv.len()));
    assert_qkv_parts_nonzero(&tag, &d, b * t, c);
}

#[test]
fn attention_gradients_both_kernels() {
    for k in [Kernel::Reference, Kernel::Fused] {
        for kind in KINDS {
            for (dropout, std, seed) in [(false, 1.0, 1), (true, 1.0, 2), (false, 2.0, 3)] {
                kernel_fd(k, kind, dropout, std, seed);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------- whole model

#[test]
fn gpt_gradients() {
    for kind in KINDS {
        model_case_cfg(ModelConfig::new(2, 2, 8, 6, 11, true, 0.0, kind), 0.0, 2, 5);
        model_case_cfg(ModelConfig::new(2, 2, 8, 6, 11, false, 0.0, kind), 0.2, 2, 6);
    }
}
