//! The training loop of nanoGPT's `train.py`, in one visible function (`Trainer::run`):
//! eval and checkpoint → accumulate gradients → clip → step → log.

use super::checkpoint::{self, TrainState, CKPT_FILE};
use super::schedule::learning_rate;
use crate::config::Config;
use crate::data::{check_same_vocab, Dataset, Split};
use crate::engine::cpu::flops::flops_per_token;
use crate::engine::cpu::{CpuEngine, Gpt};
use crate::engine::dropout::Dropout;
use crate::engine::params::init_params;
use crate::engine::{self, AdamWConfig, Batch, Buffer, Engine};
use crate::rng::Rng;
use crate::{Error, Result};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// RNG streams of one seed: separate, so that e.g. the attention variant never changes the data order.
pub const STREAM_INIT: u64 = 1;
pub const STREAM_DATA: u64 = 2;
pub const STREAM_DROPOUT: u64 = 3;
pub const STREAM_EVAL: u64 = 4;

pub const METRICS_FILE: &str = "metrics.jsonl";

/// What the loop reports; the CLI prints it, the library also appends it to metrics.jsonl.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    Eval { iter: usize, train_loss: f64, val_loss: f64, lr: f64, saved: bool },
    Step { iter: usize, loss: f64, lr: f64, ms: f64, tokens_per_s: f64, mfu: f64 },
}

pub struct Trainer {
    pub config: Config,
    /// The engine that runs the steps (chosen by `engine::create` from the config's device).
    pub engine: Box<dyn Engine>,
    pub data: Dataset,
    pub state: TrainState,
    out_dir: PathBuf,
    x: Vec<u32>,
    y: Vec<u32>,
    /// Machine peak in FLOP/s for MFU (0 = unknown, MFU reported as 0).
    pub peak_flops: f64,
}

impl Trainer {
    /// A fresh run: data from `config.data_dir`, weights from nanoGPT's initialisation.
    pub fn new(config: Config) -> Result<Trainer> {
        let data = open_data(&config)?;
        let data_vocab = data.tokenizer.vocab_size();
        if config.vocab_size != 0 && config.vocab_size < data_vocab {
            return Err(Error::Config(format!(
                "vocab_size = {} is smaller than the data's vocabulary of {data_vocab} ({})",
                config.vocab_size,
                data.dir.display()
            )));
        }
        let mut engine = engine::create(&config.device, config.model_config(data_vocab), config.batch_size)?;
        // nanoGPT's initialisation, made on the host and written into the engine
        let mut params = vec![0.0f32; engine.layout().total];
        init_params(engine.config(), engine.layout(), &mut Rng::new(config.seed, STREAM_INIT), &mut params);
        engine.write(Buffer::Params, &params)?;
        let state = TrainState {
            iter_num: 0,
            best_val_loss: f64::INFINITY,
            adam_step: 0,
            data_rng: Rng::new(config.seed, STREAM_DATA),
        };
        Ok(Trainer::assemble(config, engine, data, state))
    }

    /// Continue the run whose checkpoint is in `out_dir`, with its whole config; `overrides` may change
    /// anything but the model's shape (e.g. `max_iters` to train longer).
    pub fn resume(out_dir: &Path, overrides: &[String]) -> Result<Trainer> {
        let path = out_dir.join(CKPT_FILE);
        let ckpt = checkpoint::load(&path)?;
        let mut config = ckpt.config.with_overrides(overrides)?;
        config.out_dir = out_dir.display().to_string();
        if config.model_config(ckpt.model.vocab_size) != ckpt.model {
            return Err(Error::Config(format!(
                "overrides change the model's shape, which a resume cannot: the checkpoint has {:?}",
                ckpt.model
            )));
        }
        let data = open_data(&config)?;
        check_same_vocab(&data, &path, &ckpt.tokenizer)?;
        let mut engine = engine::create(&config.device, ckpt.model.clone(), config.batch_size)?;
        ckpt.load_into(engine.as_mut())?;
        Ok(Trainer::assemble(config, engine, data, ckpt.state))
    }

    fn assemble(config: Config, engine: Box<dyn Engine>, data: Dataset, state: TrainState) -> Trainer {
        let n = config.batch_size * config.block_size;
        let out_dir = PathBuf::from(&config.out_dir);
        Trainer { out_dir, config, engine, data, state, x: vec![0; n], y: vec![0; n], peak_flops: 0.0 }
    }

    /// The model as it stands, on the CPU reference engine (analysis and fake quantization run there),
    /// able to run batches of up to `max_batch` sequences.
    pub fn cpu_model(&self, max_batch: usize) -> Result<Gpt<f32>> {
        let mut cpu = CpuEngine::<f32>::new(self.engine.config().clone(), max_batch)?;
        cpu.write(Buffer::Params, &self.engine.snapshot(Buffer::Params)?)?;
        Ok(cpu.into_model())
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.out_dir.join(CKPT_FILE)
    }

    /// Mean loss over `eval_iters` random batches of each split, without dropout. The batches come from
    /// their own stream keyed by the step, so evaluating never moves the training data order.
    pub fn estimate_loss(&mut self) -> Result<(f64, f64)> {
        let (b, t) = (self.config.batch_size, self.config.block_size);
        let mut out = [0.0; 2];
        for (k, split) in [Split::Train, Split::Val].into_iter().enumerate() {
            let mut rng = Rng::new(self.config.seed ^ (self.state.iter_num as u64) << 20, STREAM_EVAL + k as u64);
            let mut sum = 0.0;
            for _ in 0..self.config.eval_iters {
                self.data.get_batch(split, b, t, &mut rng, &mut self.x, &mut self.y);
                let batch = Batch { idx: &self.x, targets: Some(&self.y), b, t };
                sum += self.engine.forward(batch, None)?.expect("targets given");
            }
            out[k] = sum / self.config.eval_iters as f64;
        }
        Ok((out[0], out[1]))
    }

    fn save(&self) -> Result<()> {
        checkpoint::save(&self.checkpoint_path(), &self.config, self.engine.as_ref(), &self.state, &self.data.tokenizer)
    }

    /// Train until `max_iters`, calling `report` with every event.
    pub fn run(&mut self, report: &mut dyn FnMut(&Event)) -> Result<()> {
        std::fs::create_dir_all(&self.out_dir).map_err(|e| Error::io(&self.out_dir, e))?;
        let metrics_path = self.out_dir.join(METRICS_FILE);
        let mut metrics = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .map_err(|e| Error::io(&metrics_path, e))?;
        let mut emit = |e: Event| -> Result<()> {
            let line = serde_json::to_string(&e).expect("events serialise");
            writeln!(metrics, "{line}").map_err(|err| Error::io(&metrics_path, err))?;
            report(&e);
            Ok(())
        };
        let cfg = self.config.clone();
        let (b, t, accum) = (cfg.batch_size, cfg.block_size, cfg.gradient_accumulation_steps);
        let hp = adamw_config(&cfg);
        let flops_per_iter = flops_per_token(self.engine.config(), t) * cfg.tokens_per_iter() as f64;
        let dropout_seed = Rng::new(cfg.seed, STREAM_DROPOUT).next_u64();
        loop {
            let iter = self.state.iter_num;
            let lr = learning_rate(&cfg, iter);

            // eval and checkpoint
            if iter % cfg.eval_interval == 0 || iter == cfg.max_iters {
                let (train_loss, val_loss) = self.estimate_loss()?;
                let improved = val_loss < self.state.best_val_loss;
                let mut saved = false;
                if improved || cfg.always_save_checkpoint {
                    self.state.best_val_loss = self.state.best_val_loss.min(val_loss);
                    if iter > 0 && !cfg.eval_only {
                        self.save()?;
                        saved = true;
                    }
                }
                emit(Event::Eval { iter, train_loss, val_loss, lr, saved })?;
            }
            if cfg.eval_only || iter >= cfg.max_iters {
                return Ok(());
            }

            // accumulate gradients over micro-batches (mean loss: each is scaled by 1/accum)
            // (the whole step on one pool worker, so that its kernels never wait for the pool to wake)
            let t0 = Instant::now();
            let Trainer { engine, data, state, x, y, .. } = self;
            let loss = engine.run(&mut |e: &mut dyn Engine| {
                e.zero_grad();
                let mut loss = 0.0;
                for micro in 0..accum {
                    data.get_batch(Split::Train, b, t, &mut state.data_rng, x, y);
                    let dropout = Dropout::new(cfg.dropout as f32, dropout_seed, iter as u64, micro as u64);
                    loss = e.forward(Batch { idx: x, targets: Some(y), b, t }, dropout)?.expect("targets given");
                    e.backward(1.0 / accum as f64)?;
                }
                // clip → step
                e.step(lr, &hp, cfg.grad_clip)?;
                Ok(loss)
            })?;
            self.state.adam_step = self.engine.adam_step();
            self.state.iter_num += 1;

            // log (the loss of the last micro-batch, as nanoGPT)
            if iter % cfg.log_interval == 0 {
                let secs = t0.elapsed().as_secs_f64();
                let mfu = if self.peak_flops > 0.0 { flops_per_iter / secs / self.peak_flops } else { 0.0 };
                let tokens_per_s = cfg.tokens_per_iter() as f64 / secs;
                emit(Event::Step { iter, loss, lr, ms: secs * 1e3, tokens_per_s, mfu })?;
            }
        }
    }
}

/// AdamW's hyper-parameters from the run config.
pub fn adamw_config(cfg: &Config) -> AdamWConfig {
    AdamWConfig { beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weight_decay: cfg.weight_decay }
}

fn open_data(config: &Config) -> Result<Dataset> {
    let data = Dataset::open(Path::new(&config.data_dir))?;
    data.check_block_size(config.block_size)?;
    Ok(data)
}
