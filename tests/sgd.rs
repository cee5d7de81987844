//! `optimizer = "sgd"`: the engine's step against an independent f64 implementation of torch.optim.SGD
//! (momentum, dampening 0, no Nesterov, L2 weight decay on nanoGPT's groups) after clip_grad_norm_, over
//! several steps; the engine's refusal to mix optimizers; and training, checkpoints and resume with SGD.
//! Against PyTorch itself: tests/trajectory.rs (`traj_opts_relu_untied_sgd`).

mod common;

use common::cli::fails_one_line;
use common::{shakespeare, temp_dir};
use quietgpt::config::{AttentionKind, Config, ModelConfig, OptimizerKind};
use quietgpt::data::{prepare, TokenizerKind};
use quietgpt::engine::cpu::adamw::clip_grad_norm;
use quietgpt::engine::cpu::sgd::sgd_update;
use quietgpt::engine::cpu::CpuEngine;
use quietgpt::engine::params::ParamLayout;
use quietgpt::engine::{AdamWConfig, Buffer, Engine, OptimConfig, SgdConfig};
use quietgpt::rng::Rng;
use quietgpt::train::checkpoint;
use quietgpt::train::trainer::Trainer;
use std::path::Path;

/// torch.optim.SGD's step (single-tensor, dampening 0, nesterov False) after
/// torch.nn.utils.clip_grad_norm_, in f64, written from their documentation: total = ‖g‖₂ over all
/// tensors, g ← g·min(1, clip/(total + 1e-6)); per tensor, g ← g + wd·p if it has 2+ dimensions (nanoGPT's
/// groups); buf ← g at the first step, else momentum·buf + g; p ← p − lr·buf. Returns the norm.
struct Reference {
    params: Vec<f64>,
    bufs: Option<Vec<f64>>,
}

impl Reference {
    fn step(&mut self, grads: &[f64], layout: &ParamLayout, lr: f64, hp: SgdConfig, clip: f64) -> f64 {
        let total = grads.iter().map(|g| g * g).sum::<f64>().sqrt();
        let coef = if clip > 0.0 { (clip / (total + 1e-6)).min(1.0) } else { 1.0 };
        let mut g: Vec<f64> = grads.iter().map(|x| x * coef).collect();
        for t in layout.named() {
            if t.shape.len() >= 2 {
                let r = t.offset..t.offset + t.len;
                g[r.clone()].iter_mut().zip(&self.params[r]).for_each(|(g, p)| *g += hp.weight_decay * p);
            }
        }
        let bufs = match self.bufs.take() {
            None => g,
            Some(b) => b.iter().zip(&g).map(|(b, g)| hp.momentum * b + g).collect(),
        };
        self.params.iter_mut().zip(&bufs).for_each(|(p, b)| *p -= lr * b);
        self.bufs = Some(bufs);
        total
    }
}

fn model() -> ModelConfig {
    let mut c = ModelConfig::new(2, 2, 8, 6, 11, true, 0.0, AttentionKind::Sink);
    c.tie_weights = false;
    c
}

/// `steps` steps on the engine and the reference from the same parameters and gradients (new random
/// gradients each step, some large enough to be clipped); returns the worst parameter, buffer and norm
/// differences relative to the largest value.
fn compare(mut e: Box<dyn Engine>, hp: SgdConfig, clip: f64, steps: usize) -> (f64, f64, f64) {
    let layout = e.layout().clone();
    let mut rng = Rng::new(21, 3);
    let p0: Vec<f32> = (0..layout.total).map(|_| rng.normal() as f32 * 0.5).collect();
    e.write(Buffer::Params, &p0).unwrap();
    let mut r = Reference { params: p0.iter().map(|&x| x as f64).collect(), bufs: None };
    let (mut dp, mut db, mut dn) = (0.0f64, 0.0f64, 0.0f64);
    for s in 0..steps {
        let scale = [0.01, 3.0, 0.05, 10.0][s % 4]; // clipped at steps 1 and 3 (norms ≫ clip)
        let g: Vec<f32> = (0..layout.total).map(|_| (rng.normal() * scale / 20.0) as f32).collect();
        e.write(Buffer::Grads, &g).unwrap();
        let lr = [0.1, 0.03, 0.5, 0.2][s % 4];
        let norm = e.step(lr, &OptimConfig::Sgd(hp), clip).unwrap();
        let want = r.step(&g.iter().map(|&x| x as f64).collect::<Vec<_>>(), &layout, lr, hp, clip);
        dn = dn.max((norm - want).abs() / want);
        let rel = |ours: &[f32], theirs: &[f64]| {
            let big = theirs.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            ours.iter().zip(theirs).map(|(&a, b)| (a as f64 - b).abs()).fold(0.0, f64::max) / big
        };
        dp = dp.max(rel(&e.snapshot(Buffer::Params).unwrap(), &r.params));
        db = db.max(rel(&e.snapshot(Buffer::AdamM).unwrap(), r.bufs.as_ref().unwrap()));
        assert!(e.snapshot(Buffer::AdamV).unwrap().iter().all(|&v| v == 0.0), "SGD leaves the second slot alone");
    }
    assert_eq!(e.adam_step(), steps as u64);
    (dp, db, dn)
}

const CASES: [(SgdConfig, f64); 3] = [
    (SgdConfig { momentum: 0.9, weight_decay: 0.1 }, 1.0),
    (SgdConfig { momentum: 0.9, weight_decay: 0.0 }, 0.0),
    (SgdConfig { momentum: 0.0, weight_decay: 0.5 }, 2.0), // plain SGD
];

/// The engine (f32, through the `Engine` trait) against the f64 reference: f32 rounding only.
#[test]
fn sgd_engine_matches_torch_formula() {
    for (hp, clip) in CASES {
        let (dp, db, dn) = compare(Box::new(CpuEngine::<f32>::new(model(), 1).unwrap()), hp, clip, 6);
        eprintln!("f32 engine {hp:?} clip {clip}: params {dp:.1e}, momentum buffer {db:.1e}, norm {dn:.1e}");
        assert!(dp < 1e-6 && db < 1e-6 && dn < 1e-6, "f32 engine {hp:?} clip {clip}: {dp} {db} {dn}");
    }
}

/// The engine's kernels in f64 (clip, then the SGD step; the `Engine` trait reads and writes f32) against
/// the reference: the same maths to the last bits.
#[test]
fn sgd_kernels_match_torch_formula_in_f64() {
    let layout = ParamLayout::new(&model());
    for (hp, clip) in CASES {
        let mut rng = Rng::new(22, 3);
        let mut p: Vec<f64> = (0..layout.total).map(|_| rng.normal() * 0.5).collect();
        let mut r = Reference { params: p.clone(), bufs: None };
        let mut buf = vec![f64::NAN; layout.total]; // the first step must not read it
        let (mut dp, mut db, mut dn) = (0.0f64, 0.0f64, 0.0f64);
        for s in 0..6 {
            let scale = [0.01, 3.0, 0.05, 10.0][s % 4];
            let g: Vec<f64> = (0..layout.total).map(|_| rng.normal() * scale / 20.0).collect();
            let lr = [0.1, 0.03, 0.5, 0.2][s % 4];
            let want = r.step(&g, &layout, lr, hp, clip);
            let mut g = g;
            let norm = clip_grad_norm(&mut g, clip);
            sgd_update(&mut p, &g, &mut buf, s == 0, &layout, lr, &hp);
            let rel = |a: &[f64], b: &[f64]| {
                let big = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / big
            };
            (dp, db, dn) = (
                dp.max(rel(&p, &r.params)),
                db.max(rel(&buf, r.bufs.as_ref().unwrap())),
                dn.max((norm - want).abs() / want),
            );
        }
        eprintln!("f64 kernels {hp:?} clip {clip}: params {dp:.1e}, momentum buffer {db:.1e}, norm {dn:.1e}");
        assert!(dp < 1e-14 && db < 1e-14 && dn < 1e-14, "f64 kernels {hp:?} clip {clip}: {dp} {db} {dn}");
    }
}

/// Weight decay reaches exactly the tensors of 2+ dimensions, lm_head included.
#[test]
fn sgd_decays_nanogpt_groups() {
    let mut e = CpuEngine::<f64>::new(model(), 1).unwrap();
    let layout = e.layout().clone();
    e.write(Buffer::Params, &vec![1.0; layout.total]).unwrap();
    e.write(Buffer::Grads, &vec![0.0; layout.total]).unwrap();
    e.step(0.5, &OptimConfig::Sgd(SgdConfig { momentum: 0.9, weight_decay: 0.25 }), 0.0).unwrap();
    let p = e.snapshot(Buffer::Params).unwrap();
    for t in layout.named() {
        let want = if t.shape.len() >= 2 { 1.0 - 0.5 * 0.25 } else { 1.0 };
        assert!(p[t.offset..t.offset + t.len].iter().all(|&x| x == want), "{}", t.name);
    }
    assert!(layout.find("lm_head.weight").unwrap().decays());
}

#[test]
fn an_engine_keeps_its_optimizer() {
    let mut e = CpuEngine::<f32>::new(model(), 1).unwrap();
    let adamw = OptimConfig::AdamW(AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 });
    let sgd = OptimConfig::Sgd(SgdConfig { momentum: 0.9, weight_decay: 0.1 });
    e.write(Buffer::Grads, &vec![0.5; e.layout().total]).unwrap();
    e.step(1e-3, &adamw, 1.0).unwrap();
    let before = (e.snapshot(Buffer::Params).unwrap(), e.snapshot(Buffer::AdamM).unwrap(), e.adam_step());
    let err = e.step(1e-3, &sgd, 1.0).unwrap_err().to_string();
    assert!(err.contains("adamw") && err.contains("sgd"), "{err}");
    let after = (e.snapshot(Buffer::Params).unwrap(), e.snapshot(Buffer::AdamM).unwrap(), e.adam_step());
    assert!(before == after, "a refused step changes nothing");
}

fn prepared(name: &str) -> std::path::PathBuf {
    let dir = temp_dir(name);
    let text = std::fs::read_to_string(shakespeare()).unwrap();
    prepare(&text, &dir.join("data"), TokenizerKind::Char).unwrap();
    dir
}

fn small(dir: &Path, extra: &[&str]) -> Config {
    let mut o: Vec<String> = ["n_layer=1", "n_head=2", "n_embd=32", "block_size=16", "batch_size=4", "eval_iters=2"]
        .iter()
        .chain(["optimizer=sgd", "learning_rate=0.1", "momentum=0.8", "tie_weights=false", "activation=relu"].iter())
        .chain(["init=pytorch", "eval_interval=3", "lr_decay_iters=8", "warmup_iters=2", "dropout=0.1"].iter())
        .chain(extra.iter())
        .map(|s| s.to_string())
        .collect();
    o.push(format!("data_dir={:?}", dir.join("data").display().to_string()));
    o.push(format!("out_dir={:?}", dir.join("out").display().to_string()));
    Config::build(Some("shakespeare-char"), None, &o).unwrap()
}

/// SGD trains, its checkpoint names the momentum buffer, a stop + resume is bitwise an uninterrupted run,
/// and resuming with another optimizer is refused.
#[test]
fn sgd_checkpoints_and_resumes() {
    let a = prepared("sgd-a");
    let mut whole = Trainer::new(small(&a, &["max_iters=8"])).unwrap();
    whole.run(&mut |_| {}).unwrap();
    let b = prepared("sgd-b");
    let mut first = Trainer::new(small(&b, &["max_iters=6"])).unwrap();
    first.run(&mut |_| {}).unwrap();
    drop(first);

    let ckpt = b.join("out/ckpt.safetensors");
    let bytes = std::fs::read(&ckpt).unwrap();
    let names: Vec<String> =
        quietgpt::engine::cpu::weights::parse(&bytes, "ckpt").unwrap().names().into_iter().map(String::from).collect();
    assert!(names.iter().any(|n| n == "optimizer.momentum_buffer.lm_head.weight"), "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with("optimizer.exp_avg")), "{names:?}");
    let ck = checkpoint::load(&ckpt).unwrap();
    assert_eq!((ck.config.optimizer, ck.state.adam_step), (OptimizerKind::Sgd, 6));
    assert!(ck.exp_avg.iter().any(|&x| x != 0.0) && ck.exp_avg_sq.iter().all(|&x| x == 0.0));

    let e = Trainer::resume(&b.join("out"), &["--optimizer=adamw".into()]).err().unwrap().to_string();
    assert!(e.contains("optimizer") && e.contains("sgd") && e.contains("adamw"), "{e}");
    fails_one_line(&b, &["train", "--resume", "--out_dir=out", "--optimizer=adamw"], &["--optimizer=sgd"]);
    let e = Trainer::resume(&b.join("out"), &["--tie_weights=true".into()]).err().unwrap().to_string();
    assert!(e.contains("tie_weights"), "{e}");

    let mut second = Trainer::resume(&b.join("out"), &["--max_iters=8".into(), "--momentum=0.8".into()]).unwrap();
    second.run(&mut |_| {}).unwrap();
    for buf in [Buffer::Params, Buffer::AdamM, Buffer::AdamV] {
        assert!(whole.engine.snapshot(buf).unwrap() == second.engine.snapshot(buf).unwrap(), "{buf:?} differ");
    }
    assert_eq!(whole.engine.adam_step(), 8);
}

/// A checkpoint whose state tensors are another optimizer's than its config names is refused.
#[test]
fn foreign_optimizer_state_is_refused() {
    let dir = prepared("sgd-foreign");
    let mut t = Trainer::new(small(&dir, &["max_iters=3", "eval_interval=3"])).unwrap();
    t.run(&mut |_| {}).unwrap();
    let path = dir.join("out/ckpt.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    let config = meta["config"].replace("optimizer = \"sgd\"", "optimizer = \"adamw\"");
    meta.insert("config".into(), config);
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let forged = dir.join("forged.safetensors");
    std::fs::write(&forged, safetensors::serialize(st.tensors(), Some(meta)).unwrap()).unwrap();
    let e = checkpoint::load(&forged).err().unwrap().to_string();
    assert!(e.contains("momentum_buffer") && e.contains("another optimizer"), "{e}");
}
