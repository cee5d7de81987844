//! The golden cases (PyTorch nanoGPT reference tensors, `tests/golden` or `$QUIETGPT_GOLDEN`): every
//! folder with a `stats.json` and a `model.safetensors` is a one-step case, every folder with a
//! `trajectory.json` a multi-step one, so that new cases are picked up automatically.

use super::engines::MakeEngine;
use super::golden_dir;
use quietgpt::config::{AttentionKind, ModelConfig};
use quietgpt::engine::cpu::weights::{load_flat, parse, to_vec};
use quietgpt::engine::cpu::{Gpt, Real};
use quietgpt::engine::params::ParamLayout;
use quietgpt::engine::{Buffer, Engine};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct Case {
    pub dir: PathBuf,
    pub name: String,
    pub stats: Value,
    pub config: ModelConfig,
    pub b: usize,
    pub t: usize,
    pub idx: Vec<u32>,
    pub targets: Vec<u32>,
}

pub fn cases() -> Vec<Case> {
    let root = golden_dir();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("golden directory {}: {e} (set QUIETGPT_GOLDEN)", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("stats.json").exists() && p.join("model.safetensors").exists())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no golden case folders under {}", root.display());
    dirs.into_iter().map(|d| load_case(&d)).collect()
}

/// The model config of a case's `config` object: the attention kind from `attention` (the first cases
/// have only `quiet`: true/false), the variant hyper-parameters and the model options (`activation`,
/// `tie_weights`, `init`) where given, else quietgpt's defaults.
pub fn model_config(c: &Value) -> ModelConfig {
    let u = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("config.{k}")) as usize;
    let f =
        |k: &str, default: f32| c.get(k).map_or(default, |v| v.as_f64().unwrap_or_else(|| panic!("config.{k}")) as f32);
    let attention = match c.get("attention") {
        Some(a) => a.as_str().expect("config.attention").parse().unwrap(),
        None if c["quiet"].as_bool().unwrap_or(false) => AttentionKind::Quiet,
        None => AttentionKind::Softmax,
    };
    ModelConfig {
        n_layer: u("n_layer"),
        n_head: u("n_head"),
        n_embd: u("n_embd"),
        block_size: u("block_size"),
        vocab_size: u("vocab_size"),
        bias: c["bias"].as_bool().unwrap(),
        dropout: c["dropout"].as_f64().unwrap() as f32,
        attention,
        clip_zeta: f("clip_zeta", quietgpt::config::DEFAULT_CLIP_ZETA),
        clip_alpha: f("clip_alpha", quietgpt::config::DEFAULT_CLIP_ALPHA),
        gate_init: f("gate_init", quietgpt::config::DEFAULT_GATE_INIT),
        gelu: Default::default(),
        activation: c.get("activation").map_or(Default::default(), |v| from_str(v, "activation")),
        tie_weights: c.get("tie_weights").is_none_or(|v| v.as_bool().expect("config.tie_weights")),
        init: c.get("init").map_or(Default::default(), |v| from_str(v, "init")),
    }
}

/// A JSON string as a config enum (`"relu"`, `"pytorch"`), by its serde name.
fn from_str<T: serde::de::DeserializeOwned>(v: &Value, key: &str) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("config.{key} = {v}: {e}"))
}

/// The multi-step cases: every folder with a `trajectory.json` (at least one).
pub fn traj_dirs() -> Vec<PathBuf> {
    let root = golden_dir();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("golden directory {}: {e} (set QUIETGPT_GOLDEN)", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("trajectory.json").exists() && p.join("model.safetensors").exists())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no trajectory (traj_*) folders under {}", root.display());
    dirs
}

fn load_case(dir: &Path) -> Case {
    let stats: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap()).unwrap();
    let config = model_config(&stats["config"]);
    let c = &stats["config"];
    // a config that says one thing in two places must say it consistently
    if let (Some(a), Some(q)) = (c.get("attention"), c.get("quiet")) {
        assert_eq!(
            a.as_str() == Some("quiet"),
            q.as_bool().unwrap(),
            "{}: config.attention vs config.quiet",
            dir.display()
        );
    }
    let bytes = std::fs::read(dir.join("batch.safetensors")).unwrap();
    let st = parse(&bytes, "batch").unwrap();
    let shape = st.tensor("idx").unwrap().shape().to_vec();
    let ids = |k: &str| to_vec::<f64>(&st.tensor(k).unwrap()).unwrap().into_iter().map(|x| x as u32).collect();
    Case {
        name: dir.file_name().unwrap().to_string_lossy().into(),
        dir: dir.to_path_buf(),
        config,
        b: shape[0],
        t: shape[1],
        idx: ids("idx"),
        targets: ids("targets"),
        stats,
    }
}

pub fn read(case: &Case, file: &str) -> Vec<u8> {
    std::fs::read(case.dir.join(file)).unwrap_or_else(|e| panic!("{}/{file}: {e}", case.name))
}

pub fn tensor<F: Real>(bytes: &[u8], key: &str) -> Vec<F> {
    to_vec(&parse(bytes, key).unwrap().tensor(key).unwrap_or_else(|_| panic!("key {key}"))).unwrap()
}

/// A folder's tensors (`file`, nanoGPT names, with `prefix`) as a host buffer laid out by `layout`.
pub fn host(dir: &Path, file: &str, layout: &ParamLayout, prefix: &str) -> Vec<f32> {
    let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()));
    let mut out = vec![0.0f32; layout.total];
    load_flat(&mut out, layout, &parse(&bytes, file).unwrap(), prefix).unwrap();
    out
}

/// An engine made by `make` for the case's model, with the case's parameters written in.
pub fn engine(make: MakeEngine, case: &Case) -> Box<dyn Engine> {
    let mut e = make(case.config.clone(), case.b);
    let params = host(&case.dir, "model.safetensors", e.layout(), "");
    e.write(Buffer::Params, &params).unwrap();
    e
}

pub fn model<F: Real>(case: &Case) -> Gpt<F> {
    let mut m = Gpt::<F>::new(case.config.clone(), case.b).unwrap();
    let bytes = read(case, "model.safetensors");
    m.load_params(&parse(&bytes, "model.safetensors").unwrap()).unwrap();
    m
}
