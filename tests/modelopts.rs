//! The model options beside nanoGPT's (Guo et al. 2024's Bigram-Backcopy model): the ReLU MLP
//! (`activation`), the untied lm_head (`tie_weights`) and PyTorch's default initialisation (`init`):
//! kernels and the whole model against finite differences in f64, the layout, the statistics of a
//! seeded initialisation under both schemes, and the config keys. Their training against PyTorch is
//! in tests/trajectory.rs (the `traj_opts_*` cases); SGD in tests/sgd.rs.

mod common;

use common::fd::{added, all, batch, check, model_case_cfg, numeric, randn, random_model};
use common::temp_dir;
use quietgpt::config::{ActivationKind, AttentionKind, Config, InitKind, ModelConfig, OptimizerKind};
use quietgpt::engine::cpu::gelu::gelu_backward_from_grad;
use quietgpt::engine::cpu::relu::{relu_forward, relu_remake_with_grad};
use quietgpt::engine::cpu::Gpt;
use quietgpt::engine::params::{init_params, ParamLayout};
use quietgpt::hf;
use quietgpt::rng::Rng;
use safetensors::SafeTensors;
use serde_json::Value;

// ------------------------------------------------------------------------------------------------ ReLU

fn relu_fwd(x: &[f64]) -> Vec<f64> {
    let mut out = vec![f64::NAN; x.len()];
    relu_forward(&mut out, x);
    out
}

#[test]
fn relu_values_and_remake() {
    let x = [-2.0f32, -0.0, 0.0, 1e-30, 3.5, -1e-30, f32::NAN];
    let mut out = vec![0.0f32; x.len()];
    relu_forward(&mut out, &x);
    assert_eq!(&out[..6], &[0.0, -0.0, 0.0, 1e-30, 3.5, 0.0]);
    assert!(out[6].is_nan(), "NaN passes through, as torch.relu");
    // the remake is bitwise the forward, and the derivative is 1 for x > 0, else 0 (0 at x = 0, as torch)
    let (mut again, mut grad) = (vec![0.0f32; x.len()], x.to_vec());
    relu_remake_with_grad(&mut again, &mut grad);
    assert!(out.iter().zip(&again).all(|(a, b)| a.to_bits() == b.to_bits()));
    assert_eq!(grad, [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
}

/// dinp (N) += relu'(inp) · dout through the pair the training backward uses.
fn relu_backward(dinp: &mut [f64], inp: &[f64], dout: &[f64]) {
    let (mut remade, mut grad) = (vec![0.0; inp.len()], inp.to_vec());
    relu_remake_with_grad(&mut remade, &mut grad);
    let mut d = dout.to_vec();
    gelu_backward_from_grad(&mut d, &grad);
    dinp.iter_mut().zip(&d).for_each(|(a, &b)| *a += b);
}

#[test]
fn relu_gradient() {
    // 9000 elements: past the kernels' 8192-element chunks. Kept 1e-3 away from the kink at 0, where the
    // central difference (h = 1e-6) would straddle it.
    let n = 9000;
    let mut rng = Rng::new(3, 20);
    let x: Vec<f64> = randn(&mut rng, n, 2.0).into_iter().map(|v| v + 1e-3f64.copysign(v)).collect();
    let g = randn(&mut rng, n, 1.0);
    let pre = randn(&mut rng, n, 1.0);
    let mut d = pre.clone();
    relu_backward(&mut d, &x, &g);
    let which: Vec<usize> = (0..n).step_by(97).collect();
    check("relu dinp", &added(&d, &pre), &numeric(&x, &which, &g, relu_fwd), &which);
    // elementwise: every diagonal derivative from one perturbation of all elements at once
    let h = common::fd::H;
    let (xp, xm): (Vec<f64>, Vec<f64>) = (x.iter().map(|v| v + h).collect(), x.iter().map(|v| v - h).collect());
    let (fp, fm) = (relu_fwd(&xp), relu_fwd(&xm));
    let num: Vec<f64> = (0..n).map(|i| g[i] * (fp[i] - fm[i]) / (2.0 * h)).collect();
    let mut d = vec![0.0; n];
    relu_backward(&mut d, &x, &g);
    check("relu dinp (9000, elementwise)", &d, &num, &all(n));
}

// ---------------------------------------------------------------------------------- the whole model

fn opts(attention: AttentionKind, bias: bool, activation: ActivationKind, tie_weights: bool) -> ModelConfig {
    let mut c = ModelConfig::new(2, 2, 8, 6, 11, bias, 0.0, attention);
    (c.activation, c.tie_weights) = (activation, tie_weights);
    c
}

#[test]
fn gpt_gradient_relu_untied() {
    model_case_cfg(opts(AttentionKind::Softmax, true, ActivationKind::Relu, false), 0.0, 2, 5);
    model_case_cfg(opts(AttentionKind::Quiet, false, ActivationKind::Relu, false), 0.2, 2, 6);
}

#[test]
fn gpt_gradient_relu_tied_and_gelu_untied() {
    model_case_cfg(opts(AttentionKind::Softmax, false, ActivationKind::Relu, true), 0.0, 2, 5);
    model_case_cfg(opts(AttentionKind::Gated, true, ActivationKind::Gelu, false), 0.0, 2, 5);
}

/// An untied model whose lm_head equals wte computes what the tied model does, and the tied wte's
/// gradient is the untied wte's (the embedding's part) plus lm_head's (the classifier's).
#[test]
fn untied_splits_the_tied_gradient() {
    let tied = opts(AttentionKind::Softmax, true, ActivationKind::Gelu, true);
    let untied = ModelConfig { tie_weights: false, ..tied.clone() };
    let mut a = random_model(tied, 5);
    let mut b = Gpt::<f64>::new(untied, 2).unwrap();
    let (la, lb) = (a.layout.clone(), b.layout.clone());
    assert_eq!(lb.total, la.total + 11 * 8);
    let head = lb.find("lm_head.weight").unwrap();
    assert_eq!((head.shape.as_slice(), lb.named().last().unwrap().name.as_str()), (&[11, 8][..], "lm_head.weight"));
    assert!(head.decays() && la.find("lm_head.weight").is_none());
    for t in la.named() {
        // every other tensor keeps its place: tied checkpoints and layouts are unchanged
        let u = lb.find(&t.name).unwrap();
        assert_eq!((u.offset, u.len), (t.offset, t.len), "{}", t.name);
    }
    b.params[..la.total].copy_from_slice(&a.params);
    let wte = la.find("transformer.wte.weight").unwrap().clone();
    b.params[head.offset..head.offset + head.len].copy_from_slice(&a.params[wte.offset..wte.offset + wte.len]);
    let (idx, tg) = batch(&mut Rng::new(6, 1), 2, 5, 11);
    let loss_a = a.forward(&idx, Some(&tg), 2, 5, None).unwrap().unwrap();
    let loss_b = b.forward(&idx, Some(&tg), 2, 5, None).unwrap().unwrap();
    assert_eq!(loss_a, loss_b);
    a.backward(1.0).unwrap();
    b.backward(1.0).unwrap();
    let (ga, gb) = (a.grad("transformer.wte.weight").unwrap(), b.grad("transformer.wte.weight").unwrap());
    let gh = b.grad("lm_head.weight").unwrap();
    let err = ga.iter().zip(gb.iter().zip(gh)).map(|(t, (e, h))| (t - (e + h)).abs()).fold(0.0, f64::max);
    assert!(err < 1e-14, "tied wte grad − (untied wte grad + lm_head grad) = {err}");
    assert!(gh.iter().any(|&g| g != 0.0) && gb.iter().zip(ga).any(|(e, t)| e != t));
}

// ------------------------------------------------------------------------------------ initialisation

/// What a tensor's values must look like, from the scheme's definition (written here, not taken from
/// the library's `init_of`).
enum Want {
    Const(f64),
    Normal(f64),
    Uniform(f64),
}

fn want(name: &str, init: InitKind, c: usize, n_layer: usize, gate_init: f64) -> Want {
    let pytorch = init == InitKind::PyTorch;
    let fan_in = if name.ends_with("mlp.c_proj.weight") || name.ends_with("mlp.c_proj.bias") { 4 * c } else { c };
    let uniform = Want::Uniform(1.0 / (fan_in as f64).sqrt());
    if name.contains(".ln_") {
        Want::Const(if name.ends_with("weight") { 1.0 } else { 0.0 })
    } else if name.ends_with("attn.sink") {
        Want::Const(0.0)
    } else if name.ends_with("c_gate.bias") {
        Want::Const((gate_init / (1.0 - gate_init)).ln())
    } else if name.ends_with("wte.weight") || name.ends_with("wpe.weight") {
        Want::Normal(if pytorch { 1.0 } else { 0.02 })
    } else if pytorch {
        uniform // every Linear's weight and bias (lm_head, the gates included)
    } else if name.ends_with(".bias") {
        Want::Const(0.0)
    } else if name.ends_with("c_proj.weight") {
        Want::Normal(0.02 / (2.0 * n_layer as f64).sqrt())
    } else {
        Want::Normal(0.02)
    }
}

#[test]
fn init_schemes_have_their_statistics() {
    for init in [InitKind::NanoGpt, InitKind::PyTorch] {
        for attention in [AttentionKind::Softmax, AttentionKind::Gated, AttentionKind::Outgate, AttentionKind::Sink] {
            let mut cfg = ModelConfig::new(2, 2, 64, 32, 100, true, 0.0, attention);
            (cfg.init, cfg.tie_weights) = (init, false);
            let layout = ParamLayout::new(&cfg);
            let mut p = vec![0.0f32; layout.total];
            init_params(&cfg, &layout, &mut Rng::new(7, 1), &mut p);
            for t in layout.named() {
                let x: Vec<f64> = p[t.offset..t.offset + t.len].iter().map(|&v| v as f64).collect();
                let n = x.len() as f64;
                let mean = x.iter().sum::<f64>() / n;
                let std = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
                let max = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let tag = format!("{init} {attention} {}: mean {mean:.3e} std {std:.3e} max|x| {max:.3e}", t.name);
                match want(&t.name, init, 64, 2, cfg.gate_init as f64) {
                    Want::Const(v) => assert!(x.iter().all(|&y| y == v as f32 as f64), "{tag}: want all {v}"),
                    Want::Normal(s) => {
                        assert!(mean.abs() <= 5.0 * s / n.sqrt(), "{tag}: want N(0, {s}²)");
                        assert!((std / s - 1.0).abs() <= 4.0 / n.sqrt(), "{tag}: want N(0, {s}²)");
                        assert!(max > 2.0 * s, "{tag}: want N(0, {s}²)");
                    }
                    Want::Uniform(b) => {
                        let s = b / 3f64.sqrt();
                        assert!(max <= b * (1.0 + 1e-6) && max >= 0.9 * b, "{tag}: want U(±{b})");
                        assert!(mean.abs() <= 5.0 * s / n.sqrt(), "{tag}: want U(±{b})");
                        assert!((std / s - 1.0).abs() <= 4.0 / n.sqrt(), "{tag}: want U(±{b})");
                    }
                }
            }
        }
    }
}

/// Under either scheme, every variant starts from the same shared tensors for a seed (the variants'
/// own are drawn after them), and the schemes differ.
#[test]
fn init_keeps_shared_tensors_across_variants() {
    let params = |attention, init| {
        let mut cfg = ModelConfig::new(2, 2, 16, 8, 20, true, 0.0, attention);
        (cfg.init, cfg.tie_weights) = (init, false);
        let mut m = Gpt::<f32>::new(cfg, 1).unwrap();
        m.init(&mut Rng::new(9, 1));
        m
    };
    for init in [InitKind::NanoGpt, InitKind::PyTorch] {
        let base = params(AttentionKind::Softmax, init);
        for kind in [AttentionKind::Gated, AttentionKind::Outgate, AttentionKind::Sink] {
            let m = params(kind, init);
            for t in base.layout.named() {
                assert_eq!(base.tensor(&t.name), m.tensor(&t.name), "{init} {kind}: {}", t.name);
            }
        }
    }
    let (a, b) = (params(AttentionKind::Softmax, InitKind::NanoGpt), params(AttentionKind::Softmax, InitKind::PyTorch));
    assert!(a.params != b.params);
}

// ------------------------------------------------------------------------------------- Hugging Face

/// A ReLU model with an untied lm_head is GPT-2 with `activation_function: "relu"` and
/// `tie_word_embeddings: false`: transformers' own such model (tests/hf/tiny-gpt2-relu-untied, whose
/// logits tests/hf.rs checks) exports back with every tensor as transformers wrote it, lm_head.weight
/// included, and imports again bit for bit. A tied config with a differing lm_head is refused.
#[test]
fn relu_untied_exports_to_hugging_face_and_back() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hf/tiny-gpt2-relu-untied");
    let pre = hf::load(&src, None).unwrap();
    assert_eq!((pre.model.activation, pre.model.tie_weights), (ActivationKind::Relu, false));
    let dir = temp_dir("opts-hf");
    hf::export(&dir, &pre.model, &pre.params).unwrap();
    let back = hf::load(&dir, None).unwrap();
    assert_eq!(back.model, pre.model);
    assert!(back.params.iter().zip(&pre.params).all(|(a, b)| a.to_bits() == b.to_bits()));
    let (orig, ours) =
        (std::fs::read(src.join("model.safetensors")).unwrap(), std::fs::read(dir.join("model.safetensors")).unwrap());
    let (orig, ours) = (SafeTensors::deserialize(&orig).unwrap(), SafeTensors::deserialize(&ours).unwrap());
    let (mut a, mut b) = (orig.names(), ours.names());
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert!(b.contains(&"lm_head.weight"));
    for n in b {
        assert_eq!(orig.tensor(n).unwrap().data(), ours.tensor(n).unwrap().data(), "{n}");
    }
    let config: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        (config["activation_function"].as_str(), config["tie_word_embeddings"].as_bool()),
        (Some("relu"), Some(false))
    );
    let mut tied = config.clone();
    tied["tie_word_embeddings"] = true.into();
    std::fs::write(dir.join("config.json"), tied.to_string()).unwrap();
    let e = hf::load(&dir, None).unwrap_err().to_string();
    assert!(e.contains("lm_head.weight differs") && e.contains("tie_word_embeddings"), "{e}");
    // a tied GELU model still exports without lm_head.weight
    let gelu = hf::load(&src.with_file_name("tiny-gpt2-erf"), None).unwrap();
    hf::export(&dir.join("erf"), &gelu.model, &gelu.params).unwrap();
    let st = std::fs::read(dir.join("erf/model.safetensors")).unwrap();
    assert!(SafeTensors::deserialize(&st).unwrap().tensor("lm_head.weight").is_err());
}

// -------------------------------------------------------------------------------------------- config

fn build(o: &[&str]) -> quietgpt::Result<Config> {
    Config::build(None, None, &o.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

#[test]
fn keys_default_to_nanogpt_and_parse() {
    let d = Config::default();
    assert_eq!(
        (d.activation, d.tie_weights, d.init, d.optimizer, d.momentum),
        (ActivationKind::Gelu, true, InitKind::NanoGpt, OptimizerKind::AdamW, 0.9)
    );
    let c = build(&["--activation=relu", "--tie_weights=false", "--init=pytorch", "--optimizer=sgd", "--momentum=0.5"])
        .unwrap();
    assert_eq!(
        (c.activation, c.tie_weights, c.init, c.optimizer, c.momentum),
        (ActivationKind::Relu, false, InitKind::PyTorch, OptimizerKind::Sgd, 0.5)
    );
    let m = c.model_config(7);
    assert_eq!((m.activation, m.tie_weights, m.init), (ActivationKind::Relu, false, InitKind::PyTorch));
    for (o, needle) in [
        ("--activation=swish", "activation"),
        ("--init=xavier", "init"),
        ("--optimizer=adam", "optimizer"),
        ("--tie_weights=maybe", "tie_weights"),
        ("--momentum=1", "momentum"),
        ("--momentum=-0.1", "momentum"),
    ] {
        let e = build(&[o]).unwrap_err().to_string();
        assert!(e.contains(needle), "{o}: {e}");
    }
    // configs and models written before the keys existed read as today's behaviour
    let keys = ["activation", "tie_weights", "init", "optimizer", "momentum"];
    let old: String =
        d.to_toml().lines().filter(|l| !keys.iter().any(|k| l.starts_with(k))).map(|l| format!("{l}\n")).collect();
    assert_eq!(toml::from_str::<Config>(&old).unwrap(), d);
    let mut json: serde_json::Value = serde_json::to_value(d.model_config(5)).unwrap();
    for k in keys {
        json.as_object_mut().unwrap().remove(k);
    }
    assert_eq!(serde_json::from_value::<ModelConfig>(json).unwrap(), d.model_config(5));
}

#[test]
fn bb_guo_preset_states_the_published_model() {
    let c = Config::preset("bb-guo").unwrap();
    assert_eq!((c.n_layer, c.n_head, c.n_embd, c.block_size, c.batch_size), (3, 1, 256, 256, 512));
    assert_eq!((c.activation, c.tie_weights, c.init, c.bias), (ActivationKind::Relu, false, InitKind::PyTorch, false));
    assert_eq!(
        (c.optimizer, c.learning_rate, c.weight_decay, c.beta1, c.beta2, c.eps),
        (OptimizerKind::AdamW, 3e-4, 1e-4, 0.9, 0.99, 1e-8)
    );
    assert_eq!((c.decay_lr, c.warmup_iters, c.grad_clip, c.max_iters, c.dropout), (false, 0, 0.0, 10000, 0.0));
    assert_eq!(c.gradient_accumulation_steps, 1);
}
