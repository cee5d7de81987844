//! The training loop of nanoGPT's `train.py`, in one visible function (`Trainer::run`):
//! eval and checkpoint → accumulate gradients → clip → step → log.

use super::checkpoint::{self, TrainState, CKPT_FILE};
use super::schedule::learning_rate;
use crate::config::{Config, ModelConfig, OptimizerKind};
use crate::data::{check_same_vocab, Dataset, Split, TaskLoss};
use crate::engine::cpu::flops::flops_per_token;
use crate::engine::cpu::{CpuEngine, Gpt};
use crate::engine::dropout::Dropout;
use crate::engine::params::init_params;
use crate::engine::{self, AdamWConfig, Batch, Buffer, Engine, OptimConfig, SgdConfig};
use crate::fs::{tmp_path, write_atomic, DirLock};
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
    Eval {
        iter: usize,
        train_loss: f64,
        val_loss: f64,
        lr: f64,
        saved: bool,
        /// Backcopy task: the val loss on copy positions and on bigram positions (`data::TaskLoss`).
        #[serde(skip_serializing_if = "Option::is_none")]
        copy_loss: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        bigram_loss: Option<f64>,
    },
    Step {
        iter: usize,
        loss: f64,
        lr: f64,
        ms: f64,
        tokens_per_s: f64,
        mfu: f64,
    },
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
    /// The lock on `out_dir`, taken by the first `run` and held until the trainer is dropped.
    lock: Option<DirLock>,
    /// The step of the last checkpoint this trainer saved or resumed from (named when training diverges).
    last_saved: Option<usize>,
}

impl Trainer {
    /// A fresh run: data from `config.data_dir`, weights from the initialisation of `config.init`.
    pub fn new(config: Config) -> Result<Trainer> {
        engine::probe(&config.device)?; // a missing GPU is named before the data is read
        let data = open_data(&config)?;
        let data_vocab = data.vocab_size();
        if config.vocab_size != 0 && config.vocab_size < data_vocab {
            return Err(Error::Config(format!(
                "vocab_size = {} is smaller than the data's vocabulary of {data_vocab} ({})",
                config.vocab_size,
                data.dir.display()
            )));
        }
        let model = config.model_config(data_vocab);
        let engine = fresh_engine(&config.device, &config.dtype, model, config.batch_size, config.seed)?;
        checkpoint::check_writable(engine.config())?;
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
                "overrides change the model (its shape, activation, tie_weights or init), which a resume cannot: \
                 the checkpoint has {:?}",
                ckpt.model
            )));
        }
        if config.optimizer != ckpt.config.optimizer {
            return Err(Error::Config(format!(
                "optimizer = \"{}\" cannot resume {}: its optimizer state was written by {} (it would be taken \
                 for the other's); resume with --optimizer={}, or start a new run",
                config.optimizer,
                path.display(),
                ckpt.config.optimizer,
                ckpt.config.optimizer
            )));
        }
        engine::probe(&config.device)?;
        let data = open_data(&config)?;
        check_same_vocab(&data, &path, &ckpt.tokenizer)?;
        let mut engine = engine::create_with(&config.device, &config.dtype, ckpt.model.clone(), config.batch_size)?;
        ckpt.load_into(engine.as_mut())?;
        let mut t = Trainer::assemble(config, engine, data, ckpt.state);
        t.last_saved = Some(t.state.iter_num);
        Ok(t)
    }

    fn assemble(config: Config, engine: Box<dyn Engine>, data: Dataset, state: TrainState) -> Trainer {
        let n = config.batch_size * config.block_size;
        let out_dir = PathBuf::from(&config.out_dir);
        Trainer {
            out_dir,
            config,
            engine,
            data,
            state,
            x: vec![0; n],
            y: vec![0; n],
            peak_flops: 0.0,
            lock: None,
            last_saved: None,
        }
    }

    /// The model as it stands, on the CPU reference engine (analysis and fake quantization run there),
    /// able to run batches of up to `max_batch` sequences.
    pub fn cpu_model(&self, max_batch: usize) -> Result<Gpt<f32>> {
        CpuEngine::model_with(self.engine.config().clone(), max_batch, &self.engine.snapshot(Buffer::Params)?)
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.out_dir.join(CKPT_FILE)
    }

    /// Mean loss over `eval_iters` random batches of each split, without dropout. The batches come from
    /// their own stream keyed by the step, so evaluating never moves the training data order. For the
    /// backcopy task also the val loss split into copy and bigram positions.
    pub fn estimate_loss(&mut self) -> Result<(f64, f64, Option<TaskLoss>)> {
        let (b, t) = (self.config.batch_size, self.config.block_size);
        let mut out = [0.0; 2];
        let mut task = self.data.task.as_ref().map(|_| TaskLoss::default());
        let mut logits = Vec::new();
        for (k, split) in [Split::Train, Split::Val].into_iter().enumerate() {
            let mut rng = Rng::new(self.config.seed ^ (self.state.iter_num as u64) << 20, STREAM_EVAL + k as u64);
            let mut sum = 0.0;
            for _ in 0..self.config.eval_iters {
                self.data.get_batch(split, b, t, &mut rng, &mut self.x, &mut self.y);
                let batch = Batch { idx: &self.x, targets: Some(&self.y), b, t };
                sum += self.engine.forward(batch, None)?.expect("targets given");
                if let (Split::Val, Some(acc), Some(bb)) = (split, task.as_mut(), self.data.task.as_ref()) {
                    self.engine.read_logits(&mut logits)?;
                    acc.add(bb, &self.x, &self.y, &logits);
                }
            }
            out[k] = sum / self.config.eval_iters as f64;
        }
        Ok((out[0], out[1], task))
    }

    fn save(&mut self) -> Result<()> {
        checkpoint::save(
            &self.checkpoint_path(),
            &self.config,
            self.engine.as_ref(),
            &self.state,
            &self.data.tokenizer,
        )?;
        self.last_saved = Some(self.state.iter_num);
        Ok(())
    }

    /// The error for a non-finite loss or gradient norm at `iter`: what, with which learning rate, and
    /// where the last good checkpoint is.
    fn diverged(&self, iter: usize, what: &str, lr: f64) -> Error {
        let ckpt = self.checkpoint_path();
        let last = match self.last_saved {
            Some(i) => format!(
                "the last good checkpoint is {} (iter {i}); resume from it with a lower learning rate \
                 (quietgpt train --resume --out_dir={} --learning_rate=...)",
                ckpt.display(),
                self.out_dir.display()
            ),
            None => "no checkpoint was saved by this run; train again with a lower learning rate".to_string(),
        };
        Error::Diverged(format!("at iter {iter}, {what} (learning rate {}); stopped without saving; {last}", lr as f32))
    }

    /// Before the first step of this trainer: lock `out_dir` (one process at a time), remove a temporary
    /// checkpoint left by a killed save, and cut metrics.jsonl back to the iterations before `iter_num`
    /// (a resume repeats those after the checkpoint; a fresh run starts an empty log).
    fn start(&mut self) -> Result<()> {
        if self.lock.is_some() {
            return Ok(());
        }
        let what = format!("train, iter {} of {}", self.state.iter_num, self.config.max_iters);
        self.lock = Some(DirLock::acquire(&self.out_dir, &what)?);
        let tmp = tmp_path(&self.checkpoint_path());
        match std::fs::remove_file(&tmp) {
            Ok(()) => eprintln!("note: removed {}, left by an interrupted save", tmp.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&tmp, e)),
        }
        truncate_metrics(&self.out_dir.join(METRICS_FILE), self.state.iter_num)?;
        Ok(())
    }

    /// Train until `max_iters`, calling `report` with every event. Stops with `Error::Diverged` at the
    /// first non-finite loss (a training micro-step's or an evaluation's) or gradient norm, before saving.
    pub fn run(&mut self, report: &mut dyn FnMut(&Event)) -> Result<()> {
        self.start()?;
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
        let opt = optim_config(&cfg);
        let flops_per_iter = flops_per_token(self.engine.config(), t) * cfg.tokens_per_iter() as f64;
        let dropout_seed = Rng::new(cfg.seed, STREAM_DROPOUT).next_u64();
        loop {
            let iter = self.state.iter_num;
            let lr = learning_rate(&cfg, iter);

            // eval and checkpoint
            if iter.is_multiple_of(cfg.eval_interval) || iter == cfg.max_iters {
                let (train_loss, val_loss, task) = self.estimate_loss()?;
                if !train_loss.is_finite() || !val_loss.is_finite() {
                    let what = format!("the eval loss is {train_loss} (train) / {val_loss} (val)");
                    return Err(self.diverged(iter, &what, lr));
                }
                let improved = val_loss < self.state.best_val_loss;
                let mut saved = false;
                if improved || cfg.always_save_checkpoint {
                    self.state.best_val_loss = self.state.best_val_loss.min(val_loss);
                    if iter > 0 && !cfg.eval_only {
                        self.save()?;
                        saved = true;
                    }
                }
                let (copy_loss, bigram_loss) = (task.map(|l| l.copy()), task.map(|l| l.bigram()));
                emit(Event::Eval { iter, train_loss, val_loss, lr, saved, copy_loss, bigram_loss })?;
            }
            if cfg.eval_only || iter >= cfg.max_iters {
                return Ok(());
            }

            // accumulate gradients over micro-batches (mean loss: each is scaled by 1/accum)
            // (the whole step on one pool worker, so that its kernels never wait for the pool to wake)
            let t0 = Instant::now();
            let Trainer { engine, data, state, x, y, .. } = self;
            let mut bad: Option<String> = None;
            let loss = engine.run(&mut |e: &mut dyn Engine| {
                e.zero_grad();
                let mut loss = 0.0;
                for micro in 0..accum {
                    data.get_batch(Split::Train, b, t, &mut state.data_rng, x, y);
                    let dropout = Dropout::new(cfg.dropout as f32, dropout_seed, iter as u64, micro as u64);
                    loss = e.forward(Batch { idx: x, targets: Some(y), b, t }, dropout)?.expect("targets given");
                    if !loss.is_finite() {
                        bad = Some(format!("the training loss is {loss} (micro-step {micro} of {accum})"));
                        return Ok(loss);
                    }
                    e.backward(1.0 / accum as f64)?;
                }
                // clip → step (the norm is the one before clipping)
                let norm = e.step(lr, &opt, cfg.grad_clip)?;
                if !norm.is_finite() {
                    bad = Some(format!("the gradient norm is {norm} (loss {loss})"));
                }
                Ok(loss)
            })?;
            if let Some(what) = bad {
                return Err(self.diverged(iter, &what, lr));
            }
            self.state.adam_step = self.engine.adam_step();
            self.state.iter_num += 1;

            // log (the loss of the last micro-batch, as nanoGPT)
            if iter.is_multiple_of(cfg.log_interval) {
                let secs = t0.elapsed().as_secs_f64();
                let mfu = if self.peak_flops > 0.0 { flops_per_iter / secs / self.peak_flops } else { 0.0 };
                let tokens_per_s = cfg.tokens_per_iter() as f64 / secs;
                emit(Event::Step { iter, loss, lr, ms: secs * 1e3, tokens_per_s, mfu })?;
            }
        }
    }
}

/// An engine for `model` on `device` in `dtype` with the initialisation of `model.init` from `seed` (made
/// on the host and written into the engine).
pub fn fresh_engine(
    device: &str,
    dtype: &str,
    model: ModelConfig,
    max_batch: usize,
    seed: u64,
) -> Result<Box<dyn Engine>> {
    let mut engine = engine::create_with(device, dtype, model, max_batch)?;
    let mut params = vec![0.0f32; engine.layout().total];
    init_params(engine.config(), engine.layout(), &mut Rng::new(seed, STREAM_INIT), &mut params);
    engine.write(Buffer::Params, &params)?;
    Ok(engine)
}

/// The optimizer and its hyper-parameters from the run config (`optimizer`, `weight_decay`, AdamW's
/// `beta1`, `beta2`, `eps`, SGD's `momentum`).
pub fn optim_config(cfg: &Config) -> OptimConfig {
    match cfg.optimizer {
        OptimizerKind::AdamW => OptimConfig::AdamW(AdamWConfig {
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
        }),
        OptimizerKind::Sgd => OptimConfig::Sgd(SgdConfig { momentum: cfg.momentum, weight_decay: cfg.weight_decay }),
    }
}

/// Cut the trainer's log back to the events of iterations before `iter_num`, dropping a torn last line
/// (a write cut short by a kill or a full disk) and any line that is not an event, so that the file reads
/// as one run. Rewritten atomically, and only if something is dropped. Returns how many lines were dropped.
pub fn truncate_metrics(path: &Path, iter_num: usize) -> Result<usize> {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(path, e)),
    };
    let (mut keep, mut dropped) = (String::new(), 0);
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    if lines.last().is_some_and(|l| !l.ends_with('\n')) {
        lines.pop(); // torn
        dropped += 1;
    }
    for line in lines {
        let iter = serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v["iter"].as_u64());
        match iter {
            Some(i) if (i as usize) < iter_num => keep.push_str(line),
            _ => dropped += 1,
        }
    }
    if dropped > 0 {
        write_atomic(path, keep.as_bytes())?;
    }
    Ok(dropped)
}

fn open_data(config: &Config) -> Result<Dataset> {
    let data = Dataset::for_config(config, Path::new(&config.data_dir))?;
    data.check_block_size(config.block_size)?;
    Ok(data)
}
