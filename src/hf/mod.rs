//! Hugging Face GPT-2 checkpoints: load one (nanoGPT's `init_from='gpt2'`, from a local file), and export
//! a quietgpt model as one that `transformers.GPT2LMHeadModel.from_pretrained` loads.
//!
//! The format, as `GPT2LMHeadModel.save_pretrained` writes it: a directory with `config.json` and
//! `model.safetensors`. Tensor names are nanoGPT's with or without the `transformer.` prefix
//! (`transformer.h.0.attn.c_attn.weight`, or `h.0.attn.c_attn.weight` in the hub's original `gpt2`
//! files). GPT-2's linear layers are `Conv1D`s whose weights are stored (in, out), transposed relative
//! to `nn.Linear` and to quietgpt's [out, in]: c_attn, attn.c_proj, c_fc and mlp.c_proj are transposed
//! on the way in and out. `attn.bias` / `attn.masked_bias` are the causal-mask buffers (skipped);
//! `lm_head.weight`, when present, must equal wte (GPT-2 ties them), unless config.json says
//! `tie_word_embeddings: false`: then it is the model's own (`tie_weights = false`). The model: biases
//! everywhere, LayerNorm eps 1e-5, the MLP activation from `activation_function` (`gelu_new` → tanh GELU,
//! `gelu` → erf GELU, `relu` → ReLU), n_positions → block_size. Only `model_type = "gpt2"` is read: GPT-2 small/medium/large/xl and
//! models of the same architecture (distilgpt2, nanoGPT exports).

use crate::config::{ActivationKind, AttentionKind, Config, GeluKind, ModelConfig};
use crate::data::{Dataset, Tokenizer};
use crate::engine::cpu::layernorm::EPS;
use crate::engine::cpu::weights::{parse, serialize};
use crate::engine::params::{Kind, ParamLayout};
use crate::rng::Rng;
use crate::train::checkpoint::{self, Checkpoint, TrainState, CKPT_FILE};
use crate::train::trainer::STREAM_DATA;
use crate::{Error, Result};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

pub const CONFIG_JSON: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// What the loader reads.
pub const SUPPORTED: &str = "GPT-2 checkpoints only (model_type \"gpt2\": gpt2, gpt2-medium, gpt2-large, gpt2-xl, \
distilgpt2 and other GPT2LMHeadModel files)";

/// A pretrained GPT-2: its shape (softmax attention, biases, dropout 0) and its parameters laid out by
/// `ParamLayout::new(&model)`.
#[derive(Clone, Debug)]
pub struct Pretrained {
    pub model: ModelConfig,
    pub params: Vec<f32>,
    /// The weights file it came from.
    pub source: PathBuf,
}

/// The GPT-2 shape of a config.json (or of a bare weights file, from its tensors).
#[derive(Clone, Debug)]
struct Shape {
    n_layer: usize,
    n_head: usize,
    n_embd: usize,
    n_positions: usize,
    vocab_size: usize,
    gelu: GeluKind,
    activation: ActivationKind,
    /// `tie_word_embeddings` (GPT-2's default true: lm_head is wte).
    tied: bool,
}

/// Whether `path` is a Hugging Face checkpoint (a directory with config.json or model.safetensors and
/// no ckpt.safetensors, or a safetensors file that is not a quietgpt checkpoint), as opposed to a
/// quietgpt checkpoint.
pub fn is_hf(path: &Path) -> bool {
    if path.is_dir() {
        return !path.join(CKPT_FILE).is_file()
            && (path.join(CONFIG_JSON).is_file() || path.join(WEIGHTS_FILE).is_file());
    }
    path.is_file()
        && header_metadata(path).is_ok_and(|m| m.get("format").map(String::as_str) != Some(checkpoint::FORMAT))
}

/// The `__metadata__` of a safetensors file, from its header alone.
fn header_metadata(path: &Path) -> Result<HashMap<String, String>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|e| Error::io(path, e))?;
    let n = u64::from_le_bytes(n);
    if n > 100_000_000 {
        return Err(Error::Checkpoint(format!("{}: not a safetensors file", path.display())));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
    let v: Value = serde_json::from_slice(&header)
        .map_err(|_| Error::Checkpoint(format!("{}: not a safetensors file", path.display())))?;
    Ok(v.get("__metadata__")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default())
}

/// Conv1D weights: stored (in, out) by GPT-2, [out, in] here.
fn transposed(kind: Kind) -> bool {
    matches!(kind, Kind::QkvW | Kind::AttProjW | Kind::FcW | Kind::FcProjW)
}

/// GPT-2's number of heads for its widths (gpt2, -medium, -large, -xl), for a weights file without
/// config.json.
fn gpt2_heads(n_embd: usize) -> Option<usize> {
    match n_embd {
        768 => Some(12),
        1024 => Some(16),
        1280 => Some(20),
        1600 => Some(25),
        _ => None,
    }
}

/// Load a GPT-2 checkpoint: a directory (`config.json` + `model.safetensors`) or a weights file (its
/// directory's config.json if there is one, else the shape from the tensors, with `n_head` from
/// `n_head_hint` or GPT-2's for the width).
pub fn load(path: &Path, n_head_hint: Option<usize>) -> Result<Pretrained> {
    let (weights, config_json) = if path.is_dir() {
        let (w, c) = (path.join(WEIGHTS_FILE), path.join(CONFIG_JSON));
        if !c.is_file() {
            return Err(Error::Checkpoint(format!(
                "{} has no {CONFIG_JSON}: a Hugging Face checkpoint directory holds {CONFIG_JSON} and {WEIGHTS_FILE} \
                 (as save_pretrained writes them)",
                path.display()
            )));
        }
        if !w.is_file() {
            return Err(Error::Checkpoint(format!(
                "{} has no {WEIGHTS_FILE} (only safetensors weights are read; convert pytorch_model.bin with \
                 transformers' save_pretrained(..., safe_serialization=True))",
                path.display()
            )));
        }
        (w, Some(c))
    } else if path.is_file() {
        let c = path.parent().map(|d| d.join(CONFIG_JSON)).filter(|c| c.is_file());
        (path.to_path_buf(), c)
    } else {
        return Err(Error::Checkpoint(format!("no checkpoint at {}", path.display())));
    };
    let shape_from_config = match &config_json {
        Some(c) => Some(read_config(c)?),
        None => None,
    };
    let what = weights.display().to_string();
    let bytes = std::fs::read(&weights).map_err(|e| Error::io(&weights, e))?;
    let st = parse(&bytes, &what)?;
    // names without the `transformer.` prefix
    let mut names: HashMap<String, String> = HashMap::new();
    for n in st.names() {
        names.insert(n.strip_prefix("transformer.").unwrap_or(n).to_string(), n.to_string());
    }
    if let Some(why) = foreign_architecture(&names) {
        return Err(Error::Checkpoint(format!("{what}: {why}")));
    }
    let dims = |n: &str| -> Option<Vec<usize>> { Some(st.tensor(names.get(n)?).ok()?.shape().to_vec()) };
    let shape = match shape_from_config {
        Some(s) => s,
        None => {
            let wte = dims("wte.weight").unwrap_or_default();
            let wpe = dims("wpe.weight").ok_or_else(|| missing(&what, "wpe.weight"))?;
            let (Some(&vocab_size), Some(&n_embd), Some(&n_positions)) = (wte.first(), wte.get(1), wpe.first()) else {
                return Err(Error::Checkpoint(format!("{what}: wte.weight or wpe.weight is not a matrix")));
            };
            let n_layer = (0..).take_while(|l| names.contains_key(&format!("h.{l}.ln_1.weight"))).count();
            let n_head = n_head_hint.or_else(|| gpt2_heads(n_embd)).ok_or_else(|| {
                Error::Checkpoint(format!(
                    "{what}: no {CONFIG_JSON} beside it, and n_embd {n_embd} is no GPT-2 size: give --n_head=N \
                     (or put the model's {CONFIG_JSON} beside the file)"
                ))
            })?;
            let (gelu, activation, tied) = (GeluKind::Tanh, ActivationKind::Gelu, true);
            Shape { n_layer, n_head, n_embd, n_positions, vocab_size, gelu, activation, tied }
        }
    };
    let mut model = ModelConfig::new(
        shape.n_layer,
        shape.n_head,
        shape.n_embd,
        shape.n_positions,
        shape.vocab_size,
        true,
        0.0,
        AttentionKind::Softmax,
    );
    (model.gelu, model.activation, model.tie_weights) = (shape.gelu, shape.activation, shape.tied);
    model.validate().map_err(|e| Error::Checkpoint(format!("{what}: {e}")))?;
    let layout = ParamLayout::new(&model);
    let mut params = vec![0.0f32; layout.total];
    let mut used = HashSet::new();
    for t in layout.named() {
        let short = t.name.strip_prefix("transformer.").unwrap_or(&t.name);
        let key = names.get(short).ok_or_else(|| missing(&what, short))?;
        let view = st.tensor(key).map_err(|_| missing(&what, short))?;
        let want: Vec<usize> =
            if transposed(t.kind) { t.shape.iter().rev().cloned().collect() } else { t.shape.clone() };
        if view.shape() != want.as_slice() {
            return Err(Error::Checkpoint(format!(
                "{what}: tensor '{key}' has shape {:?}, but a GPT-2 of n_layer {}, n_head {}, n_embd {}, n_positions {}, \
                 vocab_size {} needs {want:?}{}",
                view.shape(),
                model.n_layer,
                model.n_head,
                model.n_embd,
                model.block_size,
                model.vocab_size,
                if config_json.is_some() { " (config.json and the weights disagree)" } else { "" }
            )));
        }
        let values = to_f32(&view, key, &what)?;
        let dst = &mut params[t.offset..t.offset + t.len];
        if transposed(t.kind) {
            let (rows, cols) = (t.shape[0], t.shape[1]); // ours [out, in]; the file's (in, out) = (cols, rows)
            for (i, &v) in values.iter().enumerate() {
                let (r_in, c_out) = (i / rows, i % rows);
                dst[c_out * cols + r_in] = v;
            }
        } else {
            dst.copy_from_slice(&values);
        }
        used.insert(key.clone());
    }
    for name in st.names() {
        if used.contains(name) {
            continue;
        }
        let short = name.strip_prefix("transformer.").unwrap_or(name);
        if short.ends_with(".attn.bias") || short.ends_with(".attn.masked_bias") {
            continue;
        }
        if short == "lm_head.weight" {
            let view = st.tensor(name).map_err(|_| missing(&what, short))?;
            let wte = &params[layout.range(Kind::Wte)];
            if view.shape() != [model.vocab_size, model.n_embd] || to_f32(&view, name, &what)? != wte {
                return Err(Error::Checkpoint(format!(
                    "{what}: lm_head.weight differs from wte.weight, but the model ties them (GPT-2's default; \
                     transformers would replace lm_head by wte): an untied model's config.json says \
                     \"tie_word_embeddings\": false{}",
                    if config_json.is_none() { " (put it beside the weights file)" } else { "" }
                )));
            }
            continue;
        }
        return Err(Error::Checkpoint(format!(
            "{what}: tensor '{name}' is not part of a GPT-2 model (n_layer {}); {SUPPORTED} are read",
            model.n_layer
        )));
    }
    Ok(Pretrained { model, params, source: weights })
}

fn missing(what: &str, name: &str) -> Error {
    Error::Checkpoint(format!(
        "{what}: tensor '{name}' (or 'transformer.{name}') is missing: not a complete GPT-2 checkpoint"
    ))
}

/// Why a weights file is not GPT-2 (another architecture's names, or no wte), for the error; None if
/// it may be.
fn foreign_architecture(names: &HashMap<String, String>) -> Option<String> {
    let any = |s: &str| names.keys().any(|n| n.contains(s));
    let arch = if any("gpt_neox.") {
        Some("GPT-NeoX (gpt_neox.*)")
    } else if any("self_attn.") || any("model.layers.") {
        Some("a LLaMA-style model (model.layers.*.self_attn.*)")
    } else if any("decoder.layers.") {
        Some("an OPT-style model (decoder.layers.*)")
    } else {
        None
    };
    match arch {
        Some(a) => Some(format!("this is {a}, not GPT-2: quietgpt reads {SUPPORTED}")),
        None if !names.contains_key("wte.weight") => {
            Some(format!("no wte.weight or transformer.wte.weight: not a GPT-2 checkpoint; quietgpt reads {SUPPORTED}"))
        }
        None => None,
    }
}

/// A tensor as f32, from F32, F16, BF16 or F64.
fn to_f32(view: &TensorView, name: &str, what: &str) -> Result<Vec<f32>> {
    let d = view.data();
    let f16 = |b: u16| -> f32 {
        let (sign, exp, frac) = ((b >> 15) as u32, ((b >> 10) & 0x1f) as i32, (b & 0x3ff) as u32);
        let mag = match exp {
            0 => frac as f32 * 2f32.powi(-24),
            31 if frac == 0 => f32::INFINITY,
            31 => f32::NAN,
            e => f32::from_bits((((e - 15 + 127) as u32) << 23) | (frac << 13)),
        };
        if sign == 1 {
            -mag
        } else {
            mag
        }
    };
    Ok(match view.dtype() {
        Dtype::F32 => d.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
        Dtype::F64 => d.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
        Dtype::F16 => d.chunks_exact(2).map(|b| f16(u16::from_le_bytes([b[0], b[1]]))).collect(),
        Dtype::BF16 => {
            d.chunks_exact(2).map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)).collect()
        }
        dt => {
            return Err(Error::Checkpoint(format!(
                "{what}: tensor '{name}' has dtype {dt:?}; F32, F16, BF16 and F64 are read"
            )))
        }
    })
}

/// The GPT-2 shape of a config.json, checking what quietgpt cannot run.
fn read_config(path: &Path) -> Result<Shape> {
    let what = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| Error::Checkpoint(format!("{what}: not valid JSON ({e})")))?;
    let bad = |m: String| Error::Checkpoint(format!("{what}: {m}"));
    match v.get("model_type").and_then(Value::as_str) {
        Some("gpt2") => {}
        Some(other) => {
            return Err(bad(format!("model_type \"{other}\" is not supported: quietgpt reads {SUPPORTED}")));
        }
        None => return Err(bad(format!("the key \"model_type\" is missing; quietgpt reads {SUPPORTED}"))),
    }
    let int = |k: &str| -> Result<usize> {
        match v.get(k) {
            None => Err(bad(format!(
                "the key \"{k}\" is missing (a GPT-2 config.json has n_layer, n_head, n_embd, n_positions, vocab_size)"
            ))),
            Some(x) => x
                .as_u64()
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| bad(format!("\"{k}\" = {x} is not a positive integer"))),
        }
    };
    let n_embd = int("n_embd")?;
    let (activation, gelu) = match v.get("activation_function").and_then(Value::as_str).unwrap_or("gelu_new") {
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => (ActivationKind::Gelu, GeluKind::Tanh),
        "gelu" => (ActivationKind::Gelu, GeluKind::Erf),
        "relu" => (ActivationKind::Relu, GeluKind::Erf),
        other => {
            return Err(bad(format!(
                "activation_function \"{other}\" is not supported (gelu_new, gelu_pytorch_tanh, gelu_fast: tanh \
                 GELU; gelu: exact erf GELU; relu)"
            )))
        }
    };
    let shape = Shape {
        n_layer: int("n_layer")?,
        n_head: int("n_head")?,
        n_embd,
        n_positions: int("n_positions")?,
        vocab_size: int("vocab_size")?,
        gelu,
        activation,
        tied: match v.get("tie_word_embeddings") {
            None => true,
            Some(x) => x.as_bool().ok_or_else(|| bad(format!("\"tie_word_embeddings\" = {x} is not true or false")))?,
        },
    };
    if let Some(eps) = v.get("layer_norm_epsilon").and_then(Value::as_f64) {
        if (eps - EPS).abs() > 1e-12 {
            return Err(bad(format!("layer_norm_epsilon = {eps}; quietgpt's LayerNorm uses {EPS} (GPT-2's)")));
        }
    }
    if let Some(inner) = v.get("n_inner").filter(|x| !x.is_null()) {
        if inner.as_u64() != Some(4 * n_embd as u64) {
            return Err(bad(format!("n_inner = {inner}; quietgpt's MLP is 4·n_embd = {}", 4 * n_embd)));
        }
    }
    if v.get("scale_attn_by_inverse_layer_idx").and_then(Value::as_bool) == Some(true) {
        return Err(bad("scale_attn_by_inverse_layer_idx = true is not supported".into()));
    }
    if v.get("scale_attn_weights").and_then(Value::as_bool) == Some(false) {
        return Err(bad("scale_attn_weights = false is not supported (attention scores are scaled by 1/√d)".into()));
    }
    Ok(shape)
}

mod export;
mod model;

pub use export::export;
pub use model::{init_trainer, open_model, text_dataset};
