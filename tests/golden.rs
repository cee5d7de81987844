//! The whole model against PyTorch nanoGPT: for every case folder under the golden directory, logits,
//! loss, every gradient, the clipped AdamW step and the optimizer moments, with the tolerances of
//! golden/README.md. The same model in f64 is checked against the float64 reference much more tightly.

// `!(err <= tol)`: a NaN error must fail a check, which `err > tol` would let pass.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

mod common;

use common::engines::MakeEngine;
use common::golden::{cases, engine, host, model, read, tensor};
use common::{max_abs, max_abs_diff};
use quietgpt::config::AttentionKind;
use quietgpt::engine::{AdamWConfig, Batch, Buffer, OptimConfig};

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

const HP: OptimConfig = OptimConfig::AdamW(AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 });

#[test]
fn every_variant_has_a_case() {
    // the walkers below run whatever folders they find; this keeps the set from shrinking unnoticed
    let cs = cases();
    for kind in AttentionKind::ALL {
        assert!(cs.iter().any(|c| c.config.attention == kind), "no golden case for attention '{kind}'");
    }
}

/// Every case through an engine (f32): logits, loss, every gradient, the grad norm, clip + AdamW from its
/// own gradients (end to end, within 0.1·lr) and from PyTorch's exact gradients (the optimizer alone,
/// within 1e-6), and the AdamW moments.
fn one_step_matches_pytorch(make: MakeEngine) {
    let mut ck = Checker { failures: vec![] };
    let cs = cases();
    for case in &cs {
        let n = &case.name;
        let mut e = engine(make, case);
        let batch = Batch { idx: &case.idx, targets: Some(&case.targets), b: case.b, t: case.t };
        let loss = e.forward(batch, None).unwrap().unwrap();
        let mut logits = vec![];
        e.read_logits(&mut logits).unwrap();
        let reference = read(case, "batch.safetensors");
        ck.check(n, "logits", max_abs_diff(&logits, &tensor::<f32>(&reference, "logits")), 1e-5);
        ck.check(n, "loss", (loss - tensor::<f64>(&reference, "loss")[0]).abs(), 1e-5);

        e.zero_grad();
        e.backward(1.0).unwrap();
        let layout = e.layout().clone();
        let grads = e.snapshot(Buffer::Grads).unwrap();
        let ref_grads = host(&case.dir, "grads.safetensors", &layout, "");
        for t in layout.named() {
            let (ours, theirs) = (&grads[t.offset..t.offset + t.len], &ref_grads[t.offset..t.offset + t.len]);
            let tol = f64::max(1e-5, 1e-4 * max_abs(theirs));
            ck.check(n, &format!("grad {}", t.name), max_abs_diff(ours, theirs), tol);
        }

        // End to end: our own gradients → clip(1.0) → AdamW, within 0.1·lr.
        let after = host(&case.dir, "after_adamw.safetensors", &layout, "");
        let norm = e.step(1e-3, &HP, 1.0).unwrap();
        let ref_norm = case.stats["grad_clip"]["total_norm_preclip"].as_f64().unwrap();
        ck.check(n, "grad norm (rel)", (norm - ref_norm).abs() / ref_norm, 1e-5);
        let params = e.snapshot(Buffer::Params).unwrap();
        for t in layout.named() {
            let r = t.offset..t.offset + t.len;
            let err = max_abs_diff(&params[r.clone()], &after[r]);
            ck.check(n, &format!("after_adamw (own grads) {}", t.name), err, 1e-4);
        }

        // Optimizer alone: PyTorch's exact gradients through our clip + AdamW.
        let mut e = engine(make, case);
        e.write(Buffer::Grads, &ref_grads).unwrap();
        e.step(1e-3, &HP, 1.0).unwrap();
        let params = e.snapshot(Buffer::Params).unwrap();
        let (m, v) = (e.snapshot(Buffer::AdamM).unwrap(), e.snapshot(Buffer::AdamV).unwrap());
        let (ref_m, ref_v) = (
            host(&case.dir, "adamw_state.safetensors", &layout, "exp_avg."),
            host(&case.dir, "adamw_state.safetensors", &layout, "exp_avg_sq."),
        );
        for t in layout.named() {
            let r = t.offset..t.offset + t.len;
            let err = max_abs_diff(&params[r.clone()], &after[r.clone()]);
            ck.check(n, &format!("after_adamw (exact grads) {}", t.name), err, 1e-6);
            for (key, ours, theirs) in [("exp_avg", &m, &ref_m), ("exp_avg_sq", &v, &ref_v)] {
                let rel = ours[r.clone()]
                    .iter()
                    .zip(&theirs[r.clone()])
                    .map(|(&a, &b)| ((a - b).abs() as f64) / (b.abs() as f64).max(1e-30))
                    .fold(0.0, f64::max);
                ck.check(n, &format!("{key} (rel) {}", t.name), rel, 1e-4);
            }
        }
    }
    assert!(!cs.is_empty(), "no golden case ran");
    assert!(ck.failures.is_empty(), "golden mismatches:\n{}", ck.failures.join("\n"));
}

test_engine!(one_step_matches_pytorch, forward_backward_and_adamw_match_pytorch_f32);

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
