//! Argument pieces shared by the subcommands: the checkpoint argument, `--threads`, and the open-ended
//! `--key=value` config overrides of `train`, `config` and `experiment`.

use anyhow::{bail, Context, Result};
use clap::Args;
use quietgpt::config::DataKind;
use quietgpt::data::{check_same_vocab, Dataset};
use quietgpt::hf::text_dataset;
use quietgpt::train::checkpoint::{Checkpoint, CKPT_FILE};
use std::path::{Path, PathBuf};

/// A checkpoint, in the same forms for every command that reads one: a file, or a directory (a training
/// `out_dir`) holding `ckpt.safetensors`; positional, or as `--checkpoint PATH` / `--out_dir DIR`.
#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
pub struct CheckpointArgs {
    /// A checkpoint file, or a directory holding ckpt.safetensors (a training out_dir)
    #[arg(value_name = "CHECKPOINT", conflicts_with_all = ["checkpoint", "out_dir"])]
    path: Option<PathBuf>,
    /// The same as CHECKPOINT
    #[arg(long, value_name = "PATH", conflicts_with = "out_dir")]
    checkpoint: Option<PathBuf>,
    /// The same as CHECKPOINT (nanoGPT's sample.py spelling)
    #[arg(long, value_name = "DIR", conflicts_with = "init_from")]
    out_dir: Option<PathBuf>,
    /// A Hugging Face GPT-2 checkpoint: a directory with config.json and model.safetensors, or a
    /// model.safetensors file (CHECKPOINT takes these too)
    #[arg(long, value_name = "PATH", conflicts_with_all = ["path", "checkpoint"])]
    init_from: Option<PathBuf>,
}

impl CheckpointArgs {
    /// The checkpoint file given to `command`, else the one in `default` (a file or directory); with no
    /// default a checkpoint is required.
    pub fn resolve(&self, command: &str, default: Option<&str>) -> Result<PathBuf> {
        let given = self.given();
        match (given, default) {
            (Some(p), _) => resolve_checkpoint(p),
            (None, Some(d)) => resolve_checkpoint(Path::new(d)),
            (None, None) => bail!(
                "{command} needs a checkpoint: quietgpt {command} CHECKPOINT, a {CKPT_FILE} file or the out_dir \
                 that holds it"
            ),
        }
    }
}

impl CheckpointArgs {
    /// The path given, in whichever form.
    fn given(&self) -> Option<&Path> {
        self.path.as_deref().or(self.checkpoint.as_deref()).or(self.out_dir.as_deref()).or(self.init_from.as_deref())
    }

    /// The model for an inference command: a quietgpt checkpoint (as `resolve`), or a Hugging Face GPT-2
    /// directory or weights file (with the GPT-2 tokenizer); the block size cut to `block_size` if given.
    pub fn open_model(
        &self,
        command: &str,
        default: Option<&str>,
        block_size: Option<usize>,
    ) -> Result<(PathBuf, quietgpt::train::checkpoint::Checkpoint)> {
        let path = match self.given() {
            Some(p) if quietgpt::hf::is_hf(p) => p.to_path_buf(),
            Some(_) if self.init_from.is_some() => bail!(
                "--init_from takes a Hugging Face GPT-2 checkpoint (a directory with config.json and \
                 model.safetensors, or a model.safetensors file); for a quietgpt checkpoint give it as CHECKPOINT"
            ),
            _ => self.resolve(command, default)?,
        };
        let ck = quietgpt::hf::open_model(&path, block_size)
            .with_context(|| format!("cannot load the checkpoint {}", path.display()))?;
        Ok((path, ck))
    }
}

/// A checkpoint file, or a directory holding `ckpt.safetensors`, to the checkpoint file.
/// The data a checkpoint is evaluated on (analyze, quantize-eval): the text file `input` (split at
/// `train_fraction`, or used whole for both splits), else the checkpoint's data — the backcopy task it was
/// trained on, or its `data_dir` (or `data_dir` given here) — with the BOS token the model was trained with.
pub fn eval_data(
    path: &Path,
    ck: &Checkpoint,
    input: Option<&Path>,
    data_dir: Option<&Path>,
    train_fraction: Option<f64>,
) -> Result<Dataset> {
    if let Some(input) = input {
        return Ok(text_dataset(input, &ck.tokenizer, ck.model.vocab_size, train_fraction)
            .with_context(|| format!("cannot use {} as evaluation text", input.display()))?
            .bos_if(ck.config.has_bos()));
    }
    if ck.config.data == DataKind::Backcopy && data_dir.is_none() {
        return Ok(Dataset::for_config(&ck.config, Path::new(""))?);
    }
    let dir = data_dir.unwrap_or(Path::new(&ck.config.data_dir));
    if dir.as_os_str().is_empty() {
        bail!("{} has no data directory: give a text file with --input FILE, or --data_dir DIR", path.display());
    }
    let data = Dataset::open(dir)
        .with_context(|| {
            format!(
                "cannot open the data directory {} (the checkpoint's data_dir; override with --data_dir)",
                dir.display()
            )
        })?
        .bos_if(ck.config.has_bos());
    check_same_vocab(&data, path, &ck.tokenizer)?;
    Ok(data)
}

pub fn resolve_checkpoint(path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        let file = path.join(CKPT_FILE);
        if !file.is_file() {
            bail!(
                "{} holds no {CKPT_FILE}: give a checkpoint file, or the out_dir of a run that saved one",
                path.display()
            );
        }
        return Ok(file);
    }
    if !path.exists() {
        bail!(
            "no checkpoint at {}: give a checkpoint file, or the out_dir of a run that saved {CKPT_FILE}",
            path.display()
        );
    }
    Ok(path.to_path_buf())
}

/// `--threads N`.
#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
pub struct Threads {
    /// Worker threads; 0 = one per core
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
}

impl Threads {
    /// Size the global rayon pool.
    pub fn start(&self) -> Result<()> {
        set_threads(self.threads)
    }
}

/// Size the global rayon pool (0 = one thread per core); the GEMM crate runs on the same pool.
pub fn set_threads(n: usize) -> Result<()> {
    quietgpt::config::check_threads(n)?;
    rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("starting the thread pool")
}

/// The rest of the command line: `--key=value` config overrides, validated by `Config::build`.
#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
pub struct Overrides {
    /// Config overrides: any key of `quietgpt config`, e.g. --max_iters=3000 --attention=quiet --device=cpu
    #[arg(value_name = "--KEY=VALUE", trailing_var_arg = true, allow_hyphen_values = true)]
    pub overrides: Vec<String>,
}

impl Overrides {
    /// The overrides, each checked to be of the form `--key=value`; `options` names the command's other
    /// options for the error message.
    pub fn checked(&self, options: &str) -> Result<&[String]> {
        if let Some(a) = self.overrides.iter().find(|a| !(a.starts_with("--") && a.contains('='))) {
            bail!("unexpected argument '{a}': the options are {options}, or --key=value for any config key");
        }
        Ok(&self.overrides)
    }

    /// The value of the last override of `key`, if any.
    pub fn get(&self, key: &str) -> Option<String> {
        self.overrides.iter().rev().find_map(|o| match quietgpt::config::parse_override(o) {
            Ok((k, v)) if k == key => Some(match v {
                toml::Value::String(s) => s,
                v => v.to_string(),
            }),
            _ => None,
        })
    }
}

/// An output directory (`key` names the option) must be a directory or not exist yet: a file in its
/// place, or in place of a parent, is refused before any work starts.
pub fn check_out_dir(key: &str, dir: &Path) -> Result<()> {
    if let Some(file) = dir.ancestors().find(|p| !p.as_os_str().is_empty() && p.exists() && !p.is_dir()) {
        if file == dir {
            bail!("{key} {} is a file, not a directory: give a directory", dir.display());
        }
        bail!("{key} {}: {} is a file, not a directory: give a directory", dir.display(), file.display());
    }
    Ok(())
}
