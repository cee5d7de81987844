//! Attention-sink and massive-activation metrics (`analysis::analyze::sinks`): each on hand-made
//! activations with a known answer, then wired through the recorder on the golden models, where the
//! logit gap is checked against the attention probabilities the model computed.

// `!(err <= tol)`: a NaN error must fail a check, which `err > tol` would let pass.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

mod common;

use common::golden::{cases, model};
use quietgpt::analysis::analyze::sinks::{head_grams, median, push_heads, FirstNormAcc, HeadAcc, MassiveAcc};
use quietgpt::analysis::analyze::{analyze_batch, AnalyzeOptions};
use quietgpt::config::AttentionKind;
use quietgpt::engine::cpu::{Point, Probe};
use quietgpt::rng::Rng;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

fn randn(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32 * scale).collect()
}

#[test]
fn median_of_odd_and_even_counts() {
    assert_eq!(median(&mut []), None);
    assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(median(&mut [7.0]), Some(7.0));
}

#[test]
fn planted_massive_values_are_found_where_they_are() {
    // Two windows of T = 4, C = 8, pushed one window at a time: every |x| is 1 (signs alternate) except
    // three planted values. Median |x| = 1, so each ratio is the planted magnitude.
    let (t, c) = (4, 8);
    let mut windows = vec![vec![0f32; t * c]; 2];
    for (w, x) in windows.iter_mut().enumerate() {
        for (i, v) in x.iter_mut().enumerate() {
            *v = if (i + w) % 2 == 0 { 1.0 } else { -1.0 };
        }
    }
    windows[1][3 * c + 5] = -100.0; // window 1, position 3, channel 5
    windows[0][2] = 50.0; // window 0, position 0, channel 2
    windows[1][2 * c + 7] = 20.0; // window 1, position 2, channel 7
    windows[0][c + 1] = 20.0; // a tie with the one above: the earlier (window 0) comes first
    let mut acc = MassiveAcc::default();
    for x in &windows {
        acc.push(x, t, c);
    }
    let m = acc.finish();
    assert_eq!(m.median_abs, Some(1.0));
    let found: Vec<(f32, usize, usize, usize)> =
        m.top.iter().map(|v| (v.value, v.window, v.position, v.channel)).collect();
    assert_eq!(found, [(-100.0, 1, 3, 5), (50.0, 0, 0, 2), (20.0, 0, 1, 1)]);
    let ratios: Vec<f64> = m.top.iter().map(|v| v.ratio_to_median.unwrap()).collect();
    assert_eq!(ratios, [100.0, 50.0, 20.0]);

    // The same tensor as one batch of two windows: the same answer.
    let mut one = MassiveAcc::default();
    one.push(&windows.concat(), t, c);
    assert_eq!(one.finish(), m);
}

#[test]
fn a_planted_first_position_norm_gives_the_known_ratio() {
    // T = 4, C = 2, two windows. Position 0: (6, 8), norm 10. Others: norms 1, 2, 4 in window 0 and
    // 3, 3, 5 (as (3,4)) in window 1: mean 18/6 = 3, median of {1,2,3,3,4,5} = 3.
    // Window 1's first position: (0, -20), norm 20. Mean first norm = 15.
    let x: Vec<f32> = vec![
        6., 8., 1., 0., 0., 2., 0., -4., // window 0
        0., -20., 3., 0., 0., 3., 3., 4., // window 1
    ];
    let mut acc = FirstNormAcc::default();
    acc.push(&x, 4, 2);
    let f = acc.finish();
    assert_eq!(f.first, Some(15.0));
    assert_eq!((f.others_mean, f.others_median), (Some(3.0), Some(3.0)));
    assert_eq!((f.ratio_mean, f.ratio_median), (Some(5.0), Some(5.0)));
    assert_eq!((f.diff_mean, f.diff_median), (Some(12.0), Some(12.0)));

    // Mean and median apart: others 1, 1, 7 → mean 3, median 1.
    let y: Vec<f32> = vec![6., 8., 1., 0., 0., 1., 7., 0.];
    let mut acc = FirstNormAcc::default();
    acc.push(&y, 4, 2);
    let f = acc.finish();
    assert_eq!((f.first, f.others_mean, f.others_median), (Some(10.0), Some(3.0), Some(1.0)));
    assert_eq!(
        (f.ratio_mean, f.ratio_median, f.diff_mean, f.diff_median),
        (Some(10. / 3.), Some(10.), Some(7.), Some(9.))
    );

    // One position: nothing to compare with.
    let mut acc = FirstNormAcc::default();
    acc.push(&[3., 4.], 1, 2);
    let f = acc.finish();
    assert_eq!((f.first, f.others_mean, f.ratio_mean, f.diff_median), (Some(5.0), None, None, None));
}

/// qkv (B, T, 3C) from per-position q, k, v rows of width C.
fn pack(q: &[f32], k: &[f32], v: &[f32], n: usize, c: usize) -> Vec<f32> {
    (0..n).flat_map(|i| [&q[i * c..(i + 1) * c], &k[i * c..(i + 1) * c], &v[i * c..(i + 1) * c]].concat()).collect()
}

#[test]
fn a_known_logit_gap() {
    // One head, hs = 4, T = 5: q_i = a·e0, k_0 = b·e0, k_j = 0 for j ≥ 1 → s_i0 = ab/2, s_ij = 0: gap ab/2.
    let (t, c, a, b) = (5, 4, 3.0f32, 1.5f32);
    let mut q = vec![0f32; t * c];
    let mut k = vec![0f32; t * c];
    for i in 0..t {
        q[i * c] = a;
    }
    k[0] = b;
    let v = vec![0f32; t * c];
    let qkv = pack(&q, &k, &v, t, c);
    let mut heads = vec![HeadAcc::default()];
    push_heads(&mut heads, &qkv, &head_grams(&vec![0f32; c * c], c, 1), t, c);
    assert_eq!(heads[0].finish().logit_gap, Some((a * b) as f64 / 2.0));

    // Random q, k, two heads, three windows: the running-sum form against the definition, score by score.
    let (nb, t, c, nh) = (3, 7, 8, 2);
    let hs = c / nh;
    let mut rng = Rng::new(7, 0);
    let (q, k, v) =
        (randn(&mut rng, nb * t * c, 1.0), randn(&mut rng, nb * t * c, 1.0), randn(&mut rng, nb * t * c, 1.0));
    let qkv = pack(&q, &k, &v, nb * t, c);
    let mut heads = vec![HeadAcc::default(); nh];
    push_heads(&mut heads, &qkv, &head_grams(&vec![0f32; c * c], c, nh), t, c);
    for (h, acc) in heads.iter().enumerate() {
        let s = |w: usize, i: usize, j: usize| -> f64 {
            let (qi, kj) = ((w * t + i) * c + h * hs, (w * t + j) * c + h * hs);
            (0..hs).map(|d| q[qi + d] as f64 * k[kj + d] as f64).sum::<f64>() / (hs as f64).sqrt()
        };
        let mut gaps = vec![];
        for w in 0..nb {
            for i in 1..t {
                let rest = (1..=i).map(|j| s(w, i, j)).sum::<f64>() / i as f64;
                gaps.push(s(w, i, 0) - rest);
            }
        }
        let want = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let got = acc.finish().logit_gap.unwrap();
        assert!(close(got, want, 1e-12), "head {h}: {got} vs {want}");
    }
}

#[test]
fn a_known_value_drain() {
    // C = 4, two heads of hs = 2, c_proj = 3·I: head h's slice maps v^h to 3·v^h in channels 2h..2h+2,
    // so ‖W_h v‖ = 3‖v^h‖. Position 0's values have norm 5 (head 0) and 0 (head 1); others 1 and 2.
    let (t, c, nh) = (3, 4, 2);
    let mut w = vec![0f32; c * c];
    for i in 0..c {
        w[i * c + i] = 3.0;
    }
    let v: Vec<f32> = vec![3., 4., 0., 0., /**/ 1., 0., 0., 2., /**/ 0., -1., 2., 0.];
    let zeros = vec![0f32; t * c];
    let qkv = pack(&zeros, &zeros, &v, t, c);
    let mut heads = vec![HeadAcc::default(); nh];
    push_heads(&mut heads, &qkv, &head_grams(&w, c, nh), t, c);
    let (h0, h1) = (heads[0].finish(), heads[1].finish());
    assert_eq!((h0.drain_first, h0.drain_others, h0.drain_ratio), (Some(15.0), Some(3.0), Some(5.0)));
    assert_eq!((h1.drain_first, h1.drain_others, h1.drain_ratio), (Some(0.0), Some(6.0), Some(0.0)));

    // A random c_proj: the Gram form against ‖W_h v‖ computed directly.
    let (nb, t, c, nh) = (2, 5, 8, 4);
    let hs = c / nh;
    let mut rng = Rng::new(11, 0);
    let w = randn(&mut rng, c * c, 0.5);
    let v = randn(&mut rng, nb * t * c, 1.0);
    let zeros = vec![0f32; nb * t * c];
    let qkv = pack(&zeros, &zeros, &v, nb * t, c);
    let mut heads = vec![HeadAcc::default(); nh];
    push_heads(&mut heads, &qkv, &head_grams(&w, c, nh), t, c);
    for (h, acc) in heads.iter().enumerate() {
        let norm = |n: usize| -> f64 {
            let vh = &v[n * c + h * hs..n * c + (h + 1) * hs];
            (0..c)
                .map(|o| (0..hs).map(|d| w[o * c + h * hs + d] as f64 * vh[d] as f64).sum::<f64>().powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let first = (0..nb).map(|b| norm(b * t)).sum::<f64>() / nb as f64;
        let others =
            (0..nb).flat_map(|b| (1..t).map(move |i| b * t + i)).map(norm).sum::<f64>() / (nb * (t - 1)) as f64;
        let s = acc.finish();
        assert!(
            close(s.drain_first.unwrap(), first, 1e-12) && close(s.drain_others.unwrap(), others, 1e-12),
            "head {h}"
        );
        assert!(close(s.drain_ratio.unwrap(), first / others, 1e-12));
    }
}

/// The residual stream after each block, as the probe sees it.
struct Residuals(Vec<Vec<f32>>);

impl Probe<f32> for Residuals {
    fn observe(&mut self, layer: usize, point: Point, x: &[f32]) {
        if point == Point::Residual {
            self.0[layer] = x.to_vec();
        }
    }
}

#[test]
fn the_recorder_measures_the_model_it_runs() {
    // On the golden models: the first-position norms and the massive values are those of the residual
    // stream the probe sees, and the logit gap equals mean_i (ln p_i0 − mean_{1≤j≤i} ln p_ij) for every
    // variant whose weights are proportional to e^{s_ij} in a row (the normaliser cancels), and the same
    // with logit(p) for sigmoid.
    let mut checked = 0;
    for case in cases() {
        let kind = case.config.attention;
        let mut m = model::<f32>(&case);
        let (b, t, c) = (case.b, case.t, case.config.n_embd);
        let a = analyze_batch(&mut m, &case.idx, None, b, t, &AnalyzeOptions::default()).unwrap();
        // The same (reference) attention kernel as the recorder's, so that the values are bitwise its.
        m.set_store_attention(true);
        let mut res = Residuals(vec![vec![]; case.config.n_layer]);
        m.forward_probe(&case.idx, None, b, t, None, Some(&mut res as &mut dyn Probe<f32>)).unwrap();
        for (l, layer) in a.layers.iter().enumerate() {
            let mut f = FirstNormAcc::default();
            f.push(&res.0[l], t, c);
            assert_eq!(layer.first_norm, f.finish(), "{} layer {l}", case.name);
            let mut mm = MassiveAcc::default();
            mm.push(&res.0[l], t, c);
            assert_eq!(layer.massive, mm.finish(), "{} layer {l}", case.name);
            let top = &layer.massive.top[0];
            assert_eq!(top.value.abs() as f64, layer.residual.max_abs, "{} layer {l}", case.name);
            assert!(layer.heads.iter().all(|h| h.drain_ratio.is_some_and(|r| r > 0.0)));
        }
        // The scores up to a per-row constant, read back from the weights: ln p where p ∝ e^s (the softmax
        // family), logit(p) for sigmoid (p = σ(s)). The clip, ReLU and softpick lose the scores where the
        // weight is 0, so there is nothing to read back.
        let score: fn(f64) -> f64 = match kind {
            AttentionKind::Softmax
            | AttentionKind::Quiet
            | AttentionKind::Sink
            | AttentionKind::Gated
            | AttentionKind::Outgate => |p| p.ln(),
            AttentionKind::Sigmoid => |p| p.ln() - (1.0 - p).ln(),
            AttentionKind::Clipped | AttentionKind::Relu | AttentionKind::Softpick => continue,
        };
        m.forward(&case.idx, None, b, t, None).unwrap();
        let nh = case.config.n_head;
        for (l, layer) in a.layers.iter().enumerate() {
            let probs = m.attention_probs(l);
            for (h, head) in layer.heads.iter().enumerate() {
                let mut gaps = vec![];
                for w in 0..b {
                    let plane = &probs[(w * nh + h) * t * t..][..t * t];
                    for i in 1..t {
                        let lp = |j: usize| score(plane[i * t + j] as f64);
                        gaps.push(lp(0) - (1..=i).map(lp).sum::<f64>() / i as f64);
                    }
                }
                let want = gaps.iter().sum::<f64>() / gaps.len() as f64;
                let got = head.logit_gap.unwrap();
                assert!(want.is_finite(), "{} L{l} h{h}: the gap read back from the weights is {want}", case.name);
                assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{} L{l} h{h}: {got} vs {want}", case.name);
            }
        }
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} golden cases checked");
}
