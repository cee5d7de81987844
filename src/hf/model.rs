//! Using a loaded GPT-2: its run config, its weights moved into a quietgpt model, the inference
//! commands' model and text data, and a fine-tuning run (`init_from`).

use super::*;

impl Pretrained {
    /// Copy the parameters into a model of `target`'s layout (`dst`): every tensor of this model by
    /// name, the position embedding cut to `target.block_size` rows (nanoGPT's `crop_block_size`). The
    /// target's own tensors (an attention variant's sink or gates) are left as they are, so a `dst`
    /// made by `init_params` keeps the variant's initialisation.
    pub fn transplant(&self, target: &ModelConfig, dst: &mut [f32]) -> Result<()> {
        let m = &self.model;
        let kinds = |c: &ModelConfig| (c.bias, c.gelu, c.activation, c.tie_weights);
        if (target.n_layer, target.n_head, target.n_embd, target.vocab_size, kinds(target))
            != (m.n_layer, m.n_head, m.n_embd, m.vocab_size, kinds(m))
            || target.block_size > m.block_size
        {
            return Err(Error::Config(format!(
                "the model {target:?} does not take the weights of {} ({m:?})",
                self.source.display()
            )));
        }
        let (src, to) = (ParamLayout::new(m), ParamLayout::new(target));
        for t in src.named() {
            let d = to.find(&t.name).expect("same shape, same names");
            dst[d.offset..d.offset + d.len].copy_from_slice(&self.params[t.offset..t.offset + d.len]);
        }
        Ok(())
    }

    /// The run config of a fine-tuning run from these weights (nanoGPT's `init_from`): the model's
    /// shape follows the file (block_size cut to the config's when that is smaller), everything else
    /// (attention, dropout, optimizer, data, ...) the config.
    pub fn train_config(&self, config: &Config) -> Config {
        let m = &self.model;
        Config {
            n_layer: m.n_layer,
            n_head: m.n_head,
            n_embd: m.n_embd,
            block_size: config.block_size.min(m.block_size),
            vocab_size: m.vocab_size,
            bias: true,
            gelu: m.gelu,
            activation: m.activation,
            tie_weights: m.tie_weights,
            ..config.clone()
        }
    }

    /// As a quietgpt checkpoint in memory, for sample, analyze and quantize-eval: the GPT-2 tokenizer,
    /// no optimizer state (empty moments), the block size cut to `block_size` if given.
    pub fn into_checkpoint(self, block_size: Option<usize>) -> Result<Checkpoint> {
        let mut model = self.model.clone();
        if let Some(b) = block_size {
            if b == 0 || b > model.block_size {
                return Err(Error::Config(format!(
                    "block_size {b} must be between 1 and the model's n_positions {}",
                    model.block_size
                )));
            }
            model.block_size = b;
        }
        let mut params = vec![0.0f32; ParamLayout::new(&model).total];
        self.transplant(&model, &mut params)?;
        let config = Config {
            n_layer: model.n_layer,
            n_head: model.n_head,
            n_embd: model.n_embd,
            block_size: model.block_size,
            vocab_size: model.vocab_size,
            bias: true,
            gelu: model.gelu,
            activation: model.activation,
            tie_weights: model.tie_weights,
            data_dir: String::new(),
            ..Config::default()
        };
        let state = TrainState {
            iter_num: 0,
            best_val_loss: f64::INFINITY,
            adam_step: 0,
            data_rng: Rng::new(config.seed, STREAM_DATA),
        };
        Ok(Checkpoint {
            config,
            model,
            params,
            exp_avg: vec![],
            exp_avg_sq: vec![],
            state,
            tokenizer: Tokenizer::gpt2(),
        })
    }
}

/// A model for the inference commands from a quietgpt checkpoint (a file or an out_dir) or a Hugging
/// Face GPT-2 (a directory or a weights file), its block size cut to `block_size` if given.
pub fn open_model(path: &Path, block_size: Option<usize>) -> Result<Checkpoint> {
    if is_hf(path) {
        return load(path, None)?.into_checkpoint(block_size);
    }
    let file = if path.is_dir() { path.join(CKPT_FILE) } else { path.to_path_buf() };
    let mut ck = checkpoint::load(&file)?;
    if let Some(b) = block_size.filter(|&b| b != ck.model.block_size) {
        if b == 0 || b > ck.model.block_size {
            return Err(Error::Config(format!(
                "block_size {b} must be between 1 and the checkpoint's {}",
                ck.model.block_size
            )));
        }
        let p = Pretrained { model: ck.model.clone(), params: std::mem::take(&mut ck.params), source: file };
        let mut model = ck.model.clone();
        model.block_size = b;
        let mut params = vec![0.0f32; ParamLayout::new(&model).total];
        p.transplant(&model, &mut params)?;
        ck.config.block_size = b;
        (ck.model, ck.params, ck.exp_avg, ck.exp_avg_sq) = (model, params, vec![], vec![]);
    }
    Ok(ck)
}

/// A text file as evaluation data, tokenized with `tokenizer`: with `train_fraction` None both splits
/// hold all of it (analyze reads val); with Some(f) train holds the first f of the tokens (calibration)
/// and val the rest (quantize-eval). Token ids must fit `vocab_size`.
pub fn text_dataset(
    path: &Path,
    tokenizer: &Tokenizer,
    vocab_size: usize,
    train_fraction: Option<f64>,
) -> Result<Dataset> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let tokens = tokenizer.encode(&text)?;
    if let Some(&big) = tokens.iter().find(|&&t| t as usize >= vocab_size) {
        return Err(Error::Data(format!(
            "{}: its {} tokens include id {big}, outside the model's vocabulary of {vocab_size}",
            path.display(),
            tokenizer.name()
        )));
    }
    let (train, val) = match train_fraction {
        None => (tokens.clone(), tokens),
        Some(f) => {
            let cut = (tokens.len() as f64 * f) as usize;
            (tokens[..cut].to_vec(), tokens[cut..].to_vec())
        }
    };
    Ok(Dataset::from_tokens(train, val, tokenizer.clone(), path))
}

/// A fresh training run from these weights (nanoGPT's `init_from`): the run config is
/// `pretrained.train_config(config)`; every tensor starts from the file except the attention
/// variant's own (sink logits, gates), which get the variant's initialisation (`init_params`). The data
/// must fit the vocabulary, and a GPT-2-sized vocabulary needs GPT-2 BPE data.
pub fn init_trainer(pretrained: &Pretrained, config: &Config) -> Result<crate::train::trainer::Trainer> {
    use crate::engine::Buffer;
    let config = pretrained.train_config(config);
    let mut trainer = crate::train::trainer::Trainer::new(config)?;
    let tok = &trainer.data.tokenizer;
    if pretrained.model.vocab_size >= crate::data::GPT2_VOCAB_SIZE && *tok != Tokenizer::gpt2() {
        return Err(Error::Data(format!(
            "{} is {} data, but {} is a GPT-2 model, which reads GPT-2 BPE tokens: prepare the data with \
             `quietgpt prepare --tokenizer gpt2`",
            trainer.data.dir.display(),
            tok.name(),
            pretrained.source.display()
        )));
    }
    let mut params = trainer.engine.snapshot(Buffer::Params)?;
    pretrained.transplant(trainer.engine.config(), &mut params)?;
    trainer.engine.write(Buffer::Params, &params)?;
    Ok(trainer)
}
