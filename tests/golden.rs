//! The whole model against PyTorch nanoGPT: for every case folder under the golden directory, logits,
//! loss, every gradient, the clipped AdamW step and the optimizer moments, with the tolerances of
//! golden/README.md. The same model in f64 is checked against the float64 reference much more tightly.

mod common;

use common::golden::{cases, model, read, tensor};
use common::{max_abs, max_abs_diff};
use quietgpt::config::AttentionKind;
use quietgpt::engine::AdamWConfig;
use quietgpt::model::adamw::{clip_grad_norm, AdamW};
use quietgpt::model::Gpt;

/// Collects every failed comparison of a case, so that one run reports them all.
struct Checker {
    failures: Vec<String>,
}

impl Checker {
    fn check(&mut self, case: &str, what: &str, err: f64, tol: f64) {
        if !(err <= tol) {
            self.failures.push(format!("{case}: {what}: error {err:.3e} > tolerance {tol:.1e}"));
        }
    }
}

const HP: AdamWConfig = AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };

#[test]
fn every_variant_has_a_case() {
    // the walkers below run whatever folders they find; this keeps the set from shrinking unnoticed
    let cs = cases();
    for kind in AttentionKind::ALL {
        assert!(cs.iter().any(|c| c.config.attention == kind), "no golden case for attention '{kind}'");
    }
}

#[test]
fn forward_backward_and_adamw_match_pytorch_f32() {
    let mut ck = Checker { failures: vec![] };
    let mut ran = 0;
    // Both attention kernels: the fused one used in training and the reference one that keeps probabilities.
    for (case, reference) in cases().into_iter().flat_map(|c| [(c.clone(), false), (c, true)]) {
        let name = format!("{}{}", case.name, if reference { " (reference attention)" } else { "" });
        let n = &name;
        ran += 1;
        let mut m = model::<f32>(&case);
        m.set_store_attention(reference);
        let loss = m.forward(&case.idx, Some(&case.targets), case.b, case.t, None).unwrap().unwrap();
        let batch = read(&case, "batch.safetensors");
        let ref_logits: Vec<f32> = tensor(&batch, "logits");
        let ref_loss: Vec<f64> = tensor(&batch, "loss");
        ck.check(n, "logits", max_abs_diff(m.logits(), &ref_logits), 1e-5);
        ck.check(n, "loss", (loss - ref_loss[0]).abs(), 1e-5);

        m.zero_grad();
        m.backward(1.0).unwrap();
        let grads = read(&case, "grads.safetensors");
        for t in m.layout.named().to_vec() {
            let g: Vec<f32> = tensor(&grads, &t.name);
            let tol = f64::max(1e-5, 1e-4 * max_abs(&g));
            ck.check(n, &format!("grad {}", t.name), max_abs_diff(m.grad(&t.name).unwrap(), &g), tol);
        }

        // End to end: our own gradients → clip(1.0) → AdamW, within 0.1·lr.
        let after = read(&case, "after_adamw.safetensors");
        let norm = clip_grad_norm(&mut m.grads, 1.0);
        let ref_norm = case.stats["grad_clip"]["total_norm_preclip"].as_f64().unwrap();
        ck.check(n, "grad norm (rel)", (norm - ref_norm).abs() / ref_norm, 1e-5);
        let mut opt = AdamW::new(&m.layout);
        let Gpt { params, grads: g, layout, .. } = &mut m;
        opt.update(params, g, layout, 1e-3, &HP);
        for t in m.layout.named().to_vec() {
            let p: Vec<f32> = tensor(&after, &t.name);
            ck.check(
                n,
                &format!("after_adamw (own grads) {}", t.name),
                max_abs_diff(m.tensor(&t.name).unwrap(), &p),
                1e-4,
            );
        }

        // Optimizer unit test: PyTorch's exact gradients through our clip + AdamW.
        let mut m = model::<f32>(&case);
        for t in m.layout.named().to_vec() {
            let g: Vec<f32> = tensor(&grads, &t.name);
            m.grads[t.offset..t.offset + t.len].copy_from_slice(&g);
        }
        clip_grad_norm(&mut m.grads, 1.0);
        let mut opt = AdamW::new(&m.layout);
        let Gpt { params, grads: g, layout, .. } = &mut m;
        opt.update(params, g, layout, 1e-3, &HP);
        let state = read(&case, "adamw_state.safetensors");
        for t in m.layout.named().to_vec() {
            let p: Vec<f32> = tensor(&after, &t.name);
            ck.check(
                n,
                &format!("after_adamw (exact grads) {}", t.name),
                max_abs_diff(m.tensor(&t.name).unwrap(), &p),
                1e-6,
            );
            for (key, ours) in [("exp_avg", &opt.m), ("exp_avg_sq", &opt.v)] {
                let r: Vec<f32> = tensor(&state, &format!("{key}.{}", t.name));
                let rel = ours[t.offset..t.offset + t.len]
                    .iter()
                    .zip(&r)
                    .map(|(&a, &b)| ((a - b).abs() as f64) / (b.abs() as f64).max(1e-30))
                    .fold(0.0, f64::max);
                ck.check(n, &format!("{key} (rel) {}", t.name), rel, 1e-4);
            }
        }
    }
    assert!(ran >= 2, "no golden case ran");
    assert!(ck.failures.is_empty(), "golden mismatches:\n{}", ck.failures.join("\n"));
}

#[test]
fn f64_model_matches_pytorch_float64_reference() {
    let mut ck = Checker { failures: vec![] };
    let mut ran = 0;
    // Both attention kernels, as in f32.
    for (case, reference) in cases().into_iter().flat_map(|c| [(c.clone(), false), (c, true)]) {
        if !case.dir.join("reference_f64.safetensors").exists() {
            continue;
        }
        let name = format!("{}{}", case.name, if reference { " (reference attention)" } else { "" });
        let n = &name;
        ran += 1;
        let mut m = model::<f64>(&case);
        m.set_store_attention(reference);
        let loss = m.forward(&case.idx, Some(&case.targets), case.b, case.t, None).unwrap().unwrap();
        let r = read(&case, "reference_f64.safetensors");
        ck.check(n, "f64 logits", max_abs_diff(m.logits(), &tensor::<f64>(&r, "logits")), 1e-10);
        m.backward(1.0).unwrap();
        ck.check(n, "f64 loss", (loss - tensor::<f64>(&r, "loss")[0]).abs(), 1e-10);
        for t in m.layout.named().to_vec() {
            let g: Vec<f64> = tensor(&r, &format!("grad.{}", t.name));
            ck.check(n, &format!("f64 grad {}", t.name), max_abs_diff(m.grad(&t.name).unwrap(), &g), 1e-10);
        }
    }
    assert!(ran > 0, "no golden case has a reference_f64.safetensors");
    assert!(ck.failures.is_empty(), "f64 mismatches:\n{}", ck.failures.join("\n"));
}

/// 1 − Σ_j p_ij per layer (mean/min/max over all rows) against `stats.json`: `quiet_null_attention_mass`
/// of the quiet cases, and `null_attention_mass` of every variant whose rows need not sum to 1 (quiet, sink,
/// clipped; for clipped it can be negative, a row's clipped weights may sum to more than 1).
#[test]
fn quiet_null_attention_mass_matches() {
    let mut ck = Checker { failures: vec![] };
    let mut quiet = 0;
    for case in cases().into_iter().filter(|c| c.config.attention.has_null_mass()) {
        let want = match (case.stats.get("quiet_null_attention_mass"), case.stats.get("null_attention_mass")) {
            (Some(q), _) if !q.is_null() => q.clone(),
            (_, Some(n)) if !n.is_null() => n.clone(),
            _ => panic!("{}: {} case without null attention mass in stats.json", case.name, case.config.attention),
        };
        quiet += (case.config.attention == AttentionKind::Quiet) as usize;
        let mut m = model::<f32>(&case);
        m.set_store_attention(true);
        m.forward(&case.idx, None, case.b, case.t, None).unwrap();
        let (t, nh) = (case.t, case.config.n_head);
        let want = want.as_array().unwrap();
        assert_eq!(want.len(), case.config.n_layer, "{}: null mass layers", case.name);
        for (l, want) in want.iter().enumerate() {
            let att = m.attention_probs(l);
            let null: Vec<f64> =
                att.chunks_exact(t).map(|row| 1.0 - row.iter().map(|&p| p as f64).sum::<f64>()).collect();
            assert_eq!(null.len(), case.b * nh * t);
            let mean = null.iter().sum::<f64>() / null.len() as f64;
            let min = null.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = null.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            for (what, ours) in [("mean", mean), ("min", min), ("max", max)] {
                let r = want[what].as_f64().unwrap();
                ck.check(&case.name, &format!("null mass layer {l} {what}"), (ours - r).abs(), 1e-5);
            }
        }
    }
    assert!(quiet > 0, "no quiet golden case: the quiet null attention mass was not checked");
    assert!(ck.failures.is_empty(), "{}", ck.failures.join("\n"));
}
