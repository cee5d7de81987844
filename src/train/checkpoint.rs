//! Checkpoints: one safetensors file, written to a temporary file and renamed into place, so a crash
//! mid-save leaves the previous checkpoint intact.
//!
//! Tensors: the parameters under nanoGPT's names (a tied lm_head is `transformer.wte.weight`, stored
//! once; an untied one is `lm_head.weight`), and the optimizer's state under torch's names for it: the
//! AdamW moments as `optimizer.exp_avg.<name>` / `optimizer.exp_avg_sq.<name>`, SGD's momentum buffer as
//! `optimizer.momentum_buffer.<name>`. Which optimizer wrote them is the config's `optimizer` (older
//! checkpoints: adamw), and the names say it too; a state of another optimizer is refused on load.
//! Metadata (strings): `format`, `config` (the whole run config as TOML), `model` (ModelConfig JSON),
//! `state` (TrainState JSON: step, best val loss, RNG state), `vocab` (the vocab.json text).

use crate::config::{Config, ModelConfig, OptimizerKind};
use crate::data::Tokenizer;
use crate::engine::cpu::weights::{load_flat, parse, serialize, views};
use crate::engine::cpu::{CpuEngine, Gpt};
use crate::engine::params::{param_count, ParamLayout};
use crate::engine::{Buffer, Engine};
use crate::fs::write_atomic;
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
    /// The optimizer's step count (AdamW's bias correction, SGD's first step); named when AdamW was the
    /// only optimizer.
    pub adam_step: u64,
    /// The data-sampling stream, as it stands before step `iter_num`.
    pub data_rng: Rng,
}

/// A checkpoint on the host: the run config, the model shape, the parameters and optimizer state as
/// flat f32 buffers laid out by `ParamLayout::new(&model)`, the training state and the vocabulary.
pub struct Checkpoint {
    pub config: Config,
    pub model: ModelConfig,
    pub params: Vec<f32>,
    /// The optimizer state of `config.optimizer` (zero when the file has none, e.g. an exported model):
    /// AdamW's moments, or SGD's momentum buffer in `exp_avg` (and `exp_avg_sq` zero). They are
    /// `Buffer::AdamM` and `Buffer::AdamV` of an engine.
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
    pub state: TrainState,
    pub tokenizer: Tokenizer,
}

/// The name prefixes of an optimizer's state tensors in a checkpoint, for `Buffer::AdamM` and (AdamW
/// only) `Buffer::AdamV`: torch's names of that optimizer's state.
pub fn state_prefixes(optimizer: OptimizerKind) -> &'static [&'static str] {
    match optimizer {
        OptimizerKind::AdamW => &["optimizer.exp_avg.", "optimizer.exp_avg_sq."],
        OptimizerKind::Sgd => &["optimizer.momentum_buffer."],
    }
}

/// Save an engine's parameters and optimizer state with the run's config and state.
pub fn save(path: &Path, config: &Config, engine: &dyn Engine, state: &TrainState, tok: &Tokenizer) -> Result<()> {
    let (params, m, v) =
        (engine.snapshot(Buffer::Params)?, engine.snapshot(Buffer::AdamM)?, engine.snapshot(Buffer::AdamV)?);
    save_host(path, config, engine.config(), &params, &m, &v, state, tok)
}

/// The safetensors format caps its JSON header at 100 MB (`safetensors::tensor::MAX_HEADER_SIZE`).
const MAX_HEADER_BYTES: usize = 100_000_000;

/// Refuses a model whose checkpoint could not be written: three entries (parameters and at most two
/// optimizer buffers) of about 80 bytes plus the name per tensor must fit the safetensors header. Checked before
/// training, so that a model of 10⁵ thin layers fails at once and not at its first save.
pub fn check_writable(model: &ModelConfig) -> Result<()> {
    let layout = ParamLayout::new(model);
    let bytes: usize = layout.named().iter().map(|t| 3 * (t.name.len() + 30 + 80)).sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(Error::Config(format!(
            "a checkpoint of this model ({} layers, {} tensors) needs a header of about {} MB, over the safetensors \
             limit of {} MB: use fewer layers",
            model.n_layer,
            layout.named().len(),
            bytes / 1_000_000,
            MAX_HEADER_BYTES / 1_000_000
        )));
    }
    Ok(())
}

/// Save host buffers (laid out by `ParamLayout::new(model)`).
#[allow(clippy::too_many_arguments)]
pub fn save_host(
    path: &Path,
    config: &Config,
    model: &ModelConfig,
    params: &[f32],
    exp_avg: &[f32],
    exp_avg_sq: &[f32],
    state: &TrainState,
    tok: &Tokenizer,
) -> Result<()> {
    let layout = ParamLayout::new(model);
    let buffers: Vec<(&[f32], &str)> = [params, exp_avg, exp_avg_sq]
        .into_iter()
        .zip([""].iter().chain(state_prefixes(config.optimizer)))
        .map(|(b, p)| (b, *p))
        .collect();
    // Never write a model that cannot be used (a diverged run): the last good checkpoint stays.
    for &(buf, prefix) in &buffers {
        if let Some(bad) = first_non_finite(buf, &layout, prefix) {
            return Err(Error::Diverged(format!(
                "refusing to save {}: {bad}; the file on disk is left as it was",
                path.display()
            )));
        }
    }
    let tensors = buffers.iter().flat_map(|&(buf, prefix)| views(buf, &layout, prefix)).collect();
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("config".to_string(), config.to_toml()),
        ("model".to_string(), to_json(model)),
        ("state".to_string(), to_json(state)),
        ("vocab".to_string(), tok.to_json()),
    ]);
    let bytes = serialize(tensors, meta)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    write_atomic(path, &bytes)
}

/// Read a checkpoint into host buffers.
pub fn load(path: &Path) -> Result<Checkpoint> {
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
    let model: ModelConfig = serde_json::from_str(field("model")?).map_err(|e| bad("model", e.to_string()))?;
    let state: TrainState = serde_json::from_str(field("state")?).map_err(|e| bad("state", e.to_string()))?;
    let tokenizer = Tokenizer::from_json(field("vocab")?).map_err(|e| bad("vocab", e.to_string()))?;
    if model != config.model_config(model.vocab_size) {
        return Err(bad("model", "disagrees with the run config".into()));
    }
    model.validate().map_err(|e| bad("model", e.to_string()))?;
    if tokenizer.vocab_size() > model.vocab_size {
        return Err(bad(
            "vocab",
            format!("{} tokens do not fit vocab_size {}", tokenizer.vocab_size(), model.vocab_size),
        ));
    }
    // The tensors must add up to the model the metadata describes before anything is built for it.
    let held: u64 = st
        .iter()
        .filter(|(n, _)| !n.starts_with("optimizer."))
        .map(|(_, t)| t.shape().iter().product::<usize>() as u64)
        .sum();
    if param_count(&model) != Some(held) {
        return Err(bad("model", format!("it describes {} layers, n_embd {}, vocab_size {}, but the file's tensors do not fit that shape ({held} parameters)", model.n_layer, model.n_embd, model.vocab_size)));
    }
    let layout = ParamLayout::new(&model);
    let in_file = |e: Error| match e {
        Error::Checkpoint(m) => Error::Checkpoint(format!("{what}: {m}")),
        e => Error::Checkpoint(format!("{what}: {e}")),
    };
    let mut params = vec![0.0f32; layout.total];
    load_flat(&mut params, &layout, &st, "").map_err(in_file)?;
    let (mut exp_avg, mut exp_avg_sq) = (vec![0.0f32; layout.total], vec![0.0f32; layout.total]);
    let prefixes = state_prefixes(config.optimizer);
    if let Some(other) =
        st.names().into_iter().find(|n| n.starts_with("optimizer.") && !prefixes.iter().any(|p| n.starts_with(p)))
    {
        return Err(Error::Checkpoint(format!(
            "{what}: tensor '{other}' is state of another optimizer than the one its config names (optimizer = \
             \"{}\", whose state is {}*)",
            config.optimizer,
            prefixes.join("*, ")
        )));
    }
    if st.names().iter().any(|n| n.starts_with("optimizer.")) {
        for (buf, prefix) in [&mut exp_avg, &mut exp_avg_sq].into_iter().zip(prefixes) {
            load_flat(buf, &layout, &st, prefix).map_err(in_file)?;
        }
    }
    let ck = Checkpoint { config, model, params, exp_avg, exp_avg_sq, state, tokenizer };
    ck.check_finite(path)?;
    Ok(ck)
}

/// "tensor transformer.h.0.attn.c_attn.weight holds NaN (element 17)" for the first non-finite value of a
/// flat buffer laid out by `layout`, names prefixed by `prefix`; None if every value is finite.
pub fn first_non_finite(buf: &[f32], layout: &ParamLayout, prefix: &str) -> Option<String> {
    let i = buf.iter().position(|x| !x.is_finite())?;
    let t = layout.named().iter().find(|t| (t.offset..t.offset + t.len).contains(&i));
    let name = t.map_or("?".to_string(), |t| format!("{prefix}{}", t.name));
    let at = t.map_or(i, |t| i - t.offset);
    Some(format!("tensor {name} holds {} (element {at})", buf[i]))
}

impl Checkpoint {
    /// An error naming `path` and the first tensor with a NaN or infinite value (a model saved by a run
    /// that diverged cannot sample, be analysed or train on).
    pub fn check_finite(&self, path: &Path) -> Result<()> {
        let layout = ParamLayout::new(&self.model);
        let prefixes = [""].iter().chain(state_prefixes(self.config.optimizer));
        for (buf, prefix) in [&self.params, &self.exp_avg, &self.exp_avg_sq].into_iter().zip(prefixes) {
            if let Some(bad) = first_non_finite(buf, &layout, prefix) {
                return Err(Error::Checkpoint(format!(
                    "{}: {bad}: the model is unusable (saved from a run that diverged?); use an earlier checkpoint or \
                     train again",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    /// Load parameters, optimizer state and step count into an engine made for this model.
    pub fn load_into(&self, engine: &mut dyn Engine) -> Result<()> {
        if engine.config() != &self.model {
            return Err(Error::Checkpoint(format!(
                "the engine runs {:?}, the checkpoint holds {:?}",
                engine.config(),
                self.model
            )));
        }
        engine.write(Buffer::Params, &self.params)?;
        engine.write(Buffer::AdamM, &self.exp_avg)?;
        engine.write(Buffer::AdamV, &self.exp_avg_sq)?;
        engine.set_adam_step(self.state.adam_step);
        Ok(())
    }

    /// The model on the CPU reference engine, for inference (sampling, analysis, quantization), able to
    /// run batches of up to `max_batch` sequences.
    pub fn cpu_model(&self, max_batch: usize) -> Result<Gpt<f32>> {
        CpuEngine::model_with(self.model.clone(), max_batch, &self.params)
    }
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
