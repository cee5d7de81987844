//! Checkpoints: one safetensors file, written to a temporary file and renamed into place, so a crash
//! mid-save leaves the previous checkpoint intact.
//!
//! Tensors: the parameters under nanoGPT's names (lm_head tied to `transformer.wte.weight`, stored
//! once), and the AdamW moments as `optimizer.exp_avg.<name>` / `optimizer.exp_avg_sq.<name>`.
//! Metadata (strings): `format`, `config` (the whole run config as TOML), `model` (ModelConfig JSON),
//! `state` (TrainState JSON: step, best val loss, RNG state), `vocab` (the vocab.json text).

use super::adamw::AdamW;
use crate::config::{Config, ModelConfig};
use crate::data::{write_atomic, Tokenizer};
use crate::model::weights::{load_flat, parse, serialize, views};
use crate::model::Gpt;
use crate::rng::Rng;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const FORMAT: &str = "quietgpt-checkpoint-1";
pub const CKPT_FILE: &str = "ckpt.safetensors";

/// Everything besides tensors that a bitwise-exact resume needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The next optimizer step to run (nanoGPT's iter_num).
    pub iter_num: usize,
    /// +∞ until the first evaluation; JSON has no infinity, so it is stored as null.
    #[serde(with = "infinite_as_null")]
    pub best_val_loss: f64,
    /// AdamW's step count (bias correction).
    pub adam_step: u64,
    /// The data-sampling stream, as it stands before step `iter_num`.
    pub data_rng: Rng,
}

pub struct Checkpoint {
    pub config: Config,
    pub model: Gpt<f32>,
    pub opt: AdamW,
    pub state: TrainState,
    pub tokenizer: Tokenizer,
}

pub fn save(
    path: &Path,
    config: &Config,
    model: &Gpt<f32>,
    opt: &AdamW,
    state: &TrainState,
    tok: &Tokenizer,
) -> Result<()> {
    let mut tensors = views(&model.params, &model.layout, "");
    tensors.extend(views(&opt.m, &model.layout, "optimizer.exp_avg."));
    tensors.extend(views(&opt.v, &model.layout, "optimizer.exp_avg_sq."));
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("config".to_string(), config.to_toml()),
        ("model".to_string(), to_json(&model.config)),
        ("state".to_string(), to_json(state)),
        ("vocab".to_string(), tok.to_json()),
    ]);
    let bytes = serialize(tensors, meta)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    write_atomic(path, &bytes)
}

/// Load a checkpoint for inference or resumption; the model can run batches of up to `max_batch`.
pub fn load(path: &Path, max_batch: usize) -> Result<Checkpoint> {
    let what = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = parse(&bytes, &what)?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::Checkpoint(format!("{what}: unreadable header ({e})")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let field = |k: &str| {
        meta.get(k).ok_or_else(|| {
            Error::Checkpoint(format!("{what}: metadata has no '{k}': not a quietgpt checkpoint (format {FORMAT})"))
        })
    };
    if field("format")? != FORMAT {
        return Err(Error::Checkpoint(format!("{what}: format '{}' is not {FORMAT}", field("format")?)));
    }
    let bad = |k: &str, e: String| Error::Checkpoint(format!("{what}: metadata '{k}' is invalid: {e}"));
    let config: Config = toml::from_str(field("config")?).map_err(|e| bad("config", e.to_string()))?;
    config.validate().map_err(|e| bad("config", e.to_string()))?;
    let model_config: ModelConfig = serde_json::from_str(field("model")?).map_err(|e| bad("model", e.to_string()))?;
    let state: TrainState = serde_json::from_str(field("state")?).map_err(|e| bad("state", e.to_string()))?;
    let tokenizer = Tokenizer::from_json(field("vocab")?).map_err(|e| bad("vocab", e.to_string()))?;
    if model_config != config.model_config(model_config.vocab_size) {
        return Err(bad("model", "disagrees with the run config".into()));
    }
    if tokenizer.vocab_size() > model_config.vocab_size {
        return Err(bad(
            "vocab",
            format!("{} tokens do not fit vocab_size {}", tokenizer.vocab_size(), model_config.vocab_size),
        ));
    }
    let mut model = Gpt::<f32>::new(model_config, max_batch)?;
    model.load_params(&st).map_err(|e| Error::Checkpoint(format!("{what}: {e}")))?;
    let mut opt = AdamW::new(&model.layout);
    let has_opt = st.names().iter().any(|n| n.starts_with("optimizer."));
    if has_opt {
        load_flat(&mut opt.m, &model.layout, &st, "optimizer.exp_avg.")
            .map_err(|e| Error::Checkpoint(format!("{what}: {e}")))?;
        load_flat(&mut opt.v, &model.layout, &st, "optimizer.exp_avg_sq.")
            .map_err(|e| Error::Checkpoint(format!("{what}: {e}")))?;
    }
    opt.step = state.adam_step;
    Ok(Checkpoint { config, model, opt, state, tokenizer })
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data always serialises")
}

/// f64 ↔ JSON number, with +∞ (and NaN) written as null and null read back as +∞.
mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_some(v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_with_infinite_best_loss() {
        let s = TrainState { iter_num: 3, best_val_loss: f64::INFINITY, adam_step: 3, data_rng: Rng::new(1, 2) };
        let back: TrainState = serde_json::from_str(&to_json(&s)).unwrap();
        assert_eq!(back, s);
        let s = TrainState { best_val_loss: 1.25, ..s };
        assert_eq!(serde_json::from_str::<TrainState>(&to_json(&s)).unwrap(), s);
    }
}
