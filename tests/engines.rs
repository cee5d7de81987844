//! Every engine against the f64 CPU engine, for every attention variant, through the `Engine` trait only:
//! a small model with T < block_size, no biases, dropout on and gradient accumulation, three training
//! steps; and with the model options (ReLU, untied lm_head, PyTorch init) under SGD. The golden tests hold the engines to PyTorch on fixed cases; this holds them to the reference on
//! a shape and settings those cases lack (dropout masks are part of the engine contract: a pure function
//! of (seed, step, micro-step, site, element), so every engine must drop the same elements).
//!
//! Tolerances (f32 against f64): loss 1e-5 abs per micro-step, logits 1e-5, gradients 1e-5 + 1e-4·max|g|
//! per tensor, parameters after three steps 1e-4 (0.1·lr, the golden end-to-end tolerance).

// `!(err <= tol)`: a NaN error must fail a check, which `err > tol` would let pass.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

mod common;

use common::engines::{cpu_f64, MakeEngine};
use common::{max_abs, max_abs_diff};
use quietgpt::config::{ActivationKind, AttentionKind, InitKind, ModelConfig};
use quietgpt::engine::dropout::Dropout;
use quietgpt::engine::params::init_params;
use quietgpt::engine::{AdamWConfig, Batch, Buffer, Engine, OptimConfig, SgdConfig};
use quietgpt::rng::Rng;

const HP: OptimConfig = OptimConfig::AdamW(AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 });
const SGD: OptimConfig = OptimConfig::Sgd(SgdConfig { momentum: 0.9, weight_decay: 0.1 });

fn setup(make: MakeEngine, cfg: &ModelConfig, b: usize) -> Box<dyn Engine> {
    let mut e = make(cfg.clone(), b);
    let mut p = vec![0.0f32; e.layout().total];
    init_params(cfg, e.layout(), &mut Rng::new(7, 1), &mut p);
    // away from nanoGPT's init (LayerNorm weights 1, biases and sink logits 0, near-uniform attention)
    let mut rng = Rng::new(8, 0);
    p.iter_mut().for_each(|x| *x += 0.1 * rng.normal() as f32);
    e.write(Buffer::Params, &p).unwrap();
    e
}

fn matches_f64_engine(make: MakeEngine) {
    let (b, t, accum) = (3, 9, 2);
    let mut failures = vec![];
    let mut check = |what: String, err: f64, tol: f64| {
        if !(err <= tol) {
            failures.push(format!("{what}: error {err:.3e} > tolerance {tol:.1e}"));
        }
    };
    let opts = [(AttentionKind::Softmax, true), (AttentionKind::Sink, true)];
    for (kind, opts) in AttentionKind::ALL.map(|k| (k, false)).into_iter().chain(opts) {
        let mut cfg = ModelConfig::new(2, 2, 16, 12, 11, false, 0.1, kind);
        cfg.clip_alpha = 1.5;
        let hp = if opts {
            (cfg.activation, cfg.tie_weights, cfg.init) = (ActivationKind::Relu, false, InitKind::PyTorch);
            SGD
        } else {
            HP
        };
        let kind = format!("{kind}{}", if opts { " relu untied pytorch-init sgd" } else { "" });
        let (mut e, mut r) = (setup(make, &cfg, b), setup(cpu_f64, &cfg, b));
        let mut rng = Rng::new(9, 2);
        for step in 0..3u64 {
            e.zero_grad();
            r.zero_grad();
            for micro in 0..accum {
                let x: Vec<u32> = (0..b * t).map(|_| rng.below(11) as u32).collect();
                let y: Vec<u32> = (0..b * t).map(|_| rng.below(11) as u32).collect();
                let batch = Batch { idx: &x, targets: Some(&y), b, t };
                let drop = Dropout::new(cfg.dropout, 5, step, micro);
                let (le, lr) = (e.forward(batch, drop).unwrap().unwrap(), r.forward(batch, drop).unwrap().unwrap());
                check(format!("{kind} step {step}.{micro}: loss"), (le - lr).abs(), 1e-5);
                if step == 0 && micro == 0 {
                    let (mut a, mut c) = (vec![], vec![]);
                    e.read_logits(&mut a).unwrap();
                    r.read_logits(&mut c).unwrap();
                    check(format!("{kind}: logits"), max_abs_diff(&a, &c), 1e-5);
                }
                e.backward(1.0 / accum as f64).unwrap();
                r.backward(1.0 / accum as f64).unwrap();
            }
            if step == 0 {
                let (ge, gr) = (e.snapshot(Buffer::Grads).unwrap(), r.snapshot(Buffer::Grads).unwrap());
                assert!(max_abs(&gr) > 0.0, "{kind}: no gradient");
                for tn in e.layout().named() {
                    let rg = tn.offset..tn.offset + tn.len;
                    let tol = 1e-5 + 1e-4 * max_abs(&gr[rg.clone()]);
                    check(format!("{kind}: grad {}", tn.name), max_abs_diff(&ge[rg.clone()], &gr[rg]), tol);
                }
            }
            let (ne, nr) = (e.step(1e-3, &hp, 1.0).unwrap(), r.step(1e-3, &hp, 1.0).unwrap());
            check(format!("{kind} step {step}: grad norm (rel)"), (ne - nr).abs() / nr, 1e-4);
        }
        let (pe, pr) = (e.snapshot(Buffer::Params).unwrap(), r.snapshot(Buffer::Params).unwrap());
        check(format!("{kind}: parameters after 3 steps"), max_abs_diff(&pe, &pr), 1e-4);
        assert_eq!(e.adam_step(), 3);
    }
    assert!(failures.is_empty(), "engine vs f64 CPU engine:\n{}", failures.join("\n"));
}

test_engine!(matches_f64_engine, every_variant_matches_the_f64_engine);

/// The trait's host buffers are checked for size, and one place names the devices.
#[test]
fn host_buffers_and_devices() {
    let cfg = ModelConfig::new(1, 1, 8, 4, 5, true, 0.0, AttentionKind::Quiet);
    let mut e = quietgpt::engine::create("cpu", cfg.clone(), 1).unwrap();
    assert_eq!(e.device(), "cpu");
    let n = e.layout().total;
    assert!(e.write(Buffer::Params, &vec![0.0; n + 1]).is_err());
    assert!(e.read(Buffer::AdamV, &mut vec![0.0; n - 1]).is_err());
    let p: Vec<f32> = (0..n).map(|i| i as f32).collect();
    e.write(Buffer::AdamM, &p).unwrap();
    assert_eq!(e.snapshot(Buffer::AdamM).unwrap(), p);
    let err = quietgpt::engine::create("cuda", cfg.clone(), 1).err().unwrap().to_string();
    assert!(err.starts_with("device error: "), "{err}");
    let err = quietgpt::engine::create("tpu", cfg, 1).err().unwrap().to_string();
    assert!(err.contains("cpu, cuda"), "{err}");
}
